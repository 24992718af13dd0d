"""A job file becomes a `JobSpec`: the `{{ config(...) }}` block plus exactly one SELECT.

The config block is read as literal values only (strings, numbers, booleans, lists, dicts),
never executed, so a job file cannot run code. Every problem is reported with the file, line
and column it comes from. Checks that need the database (columns, keys) live in `source.py`.
"""
from __future__ import annotations

import ast
import hashlib
import difflib
import io
import json
import math
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import parse_budget, parse_deadline
from .db import check_memory_limit
from .dbtwords import DbtWords
from .errors import JobFileError, Location
from .hooks import EVENTS as HOOK_KEYS, check_job_hook
from .models import output_limit
from .paths import Scope, make_scope
from .schema import check_schema, from_columns
from .sqlguard import check_read_only
from .sqlutil import PLAIN_NAME, RESERVED_QUALIFIERS, reserved_qualifier
from .sqlvars import check_unknown_vars, render_sql_body

_CONFIG_START = re.compile(r"\{\{-?\s*config\s*\(")
ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Keys the config block understands. Request-body parameters beyond these go in `params`.
GENERATION_KEYS = {
    "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_sequences",
    "presence_penalty", "frequency_penalty", "max_completion_tokens", "reasoning_effort",
    "logprobs", "top_logprobs", "logit_bias", "n", "response_format", "service_tier",
    "metadata", "user", "thinking", "tools", "tool_choice", "verbosity", "dimensions",
}
CONTROL_KEYS = {
    "name", "provider", "model", "unique_key", "prompt", "prompt_file", "system",
    "system_file", "params", "endpoint", "max_attempts", "batch_max_requests",
    "batch_max_bytes", "batch_max_tokens", "description", "tags", "enqueued_token_limit",
    # typed answers: the schema is sent (hashed); output_columns only project (not hashed)
    "output_schema", "columns", "output_columns",
    # provider settings (see the README's provider table)
    "base_url", "api_version", "anthropic_version", "cache_system_prompt",
    # answer checking (outcomes.answer_check_sql; not hashed: it judges answers, sends nothing)
    "allow_truncated",
    # how much memory DuckDB may use before spilling to disk (db.memory_settings)
    "memory_limit",
    # other DuckDB files the SELECT reads (attached READ_ONLY); a Parquet copy of the output
    "attach", "export",
    # the DuckDB file holding the warehouse_batch state (db.Target.state_db)
    "state_db",
    # fewer requests than this to send: through the synchronous API (realtime.py)
    "realtime_below",
    # notification hooks: a shell command or an http(s) URL (hooks.py; not hashed)
    "on_complete", "on_failure",
    "budget_usd", "deadline",   # budget.py: the job's cap (billed + reserved); check's deadline
}
KNOWN_KEYS = GENERATION_KEYS | CONTROL_KEYS
REQUIRED_KEYS = ("name", "provider", "model", "unique_key")


@dataclass
class Template:
    """A prompt or system template and where its first line sits in the user's files."""

    text: str
    file: str
    line: int          # file line of the template's first line
    column: int = 1    # file column of the template's first character (inline templates)

    def location(self, template_line: int | None = None) -> Location:
        if template_line is None:
            return Location(self.file, self.line, self.column)
        return Location(self.file, self.line + template_line - 1,
                        self.column if template_line == 1 else None)


@dataclass
class JobSpec:
    """Everything a job file says, validated for shape (not yet against the database)."""

    path: str
    name: str
    provider: str
    model: str
    unique_key: list[str]
    prompt: Template
    sql: str
    system: Template | None = None
    endpoint: str = "chat"
    generation: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 3
    batch_max_requests: int | None = None
    batch_max_bytes: int | None = None
    batch_max_tokens: int | None = None
    enqueued_token_limit: int | None = None   # provider's cap on tokens in unfinished batches
    provider_options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    key_locations: dict[str, Location] = field(default_factory=dict)
    sql_line: int = 1
    output_schema: dict | None = None
    output_schema_file: str | None = None   # the file output_schema was read from, resolved
    output_columns: dict[str, str] | None = None
    allow_truncated: bool = False   # keep plain-text answers cut off by max_tokens
    memory_limit: str | None = None  # DuckDB memory_limit, e.g. '1GB' (db.memory_settings)
    state_db: str | None = None      # the state's own DuckDB file, resolved (db.Target)
    scope: Scope | None = None   # folders and hosts the operator allows this job (paths.py)
    unused_vars: set[str] = field(default_factory=set)   # --vars it does not use (jobset.py)
    attach: dict[str, str] = field(default_factory=dict)  # alias -> DuckDB file (attach.py)
    export: str | None = None   # the Parquet file the output table is copied to (output.py)
    depends_on: list[str] = field(default_factory=list)   # dbt models/sources it reads
    dbt_files: list[str] = field(default_factory=list)    # dbt manifest / project it read
    env_names: list[str] = field(default_factory=list)    # variables its env_var() read
    realtime_below: int | None = None   # send fewer requests than this in real time
    hooks: dict[str, str] = field(default_factory=dict)   # on_complete/on_failure (hooks.py)
    budget_usd: float | None = None   # the job's cap over its life (budget.py)
    deadline: str | None = None       # '06:00' (UTC, daily) or an ISO instant (health.py)

    def location_of(self, key: str) -> Location:
        return self.key_locations.get(key, Location(self.path, 1, 1))

    def fingerprint(self) -> str:
        """A digest of everything the job file (with its vars and files) says that decides
        which rows there are and what is sent for them; a poll skips reading the source
        only while it is unchanged (api._poll_only)."""
        said = {"sql": self.sql, "prompt": self.prompt.text,
                "system": self.system.text if self.system else None,
                "provider": self.provider, "model": self.model, "key": self.unique_key,
                "endpoint": self.endpoint, "generation": self.generation,
                "params": self.params, "schema": self.output_schema,
                "columns": self.output_columns, "vars": self.vars,
                "provider_options": self.provider_options, "max_attempts": self.max_attempts,
                "allow_truncated": self.allow_truncated}
        if self.attach:   # only when set: the fingerprints of existing jobs stay as they were
            said["attach"] = self.attach
        text = json.dumps(said, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _state_db(config: dict, locations: dict[str, Location], scope: Scope | None) -> str:
    """`state_db`: a DuckDB file path, relative to the job's folder, inside the job's scope
    (the job file names a file warehouse-batch will write: it may not point anywhere)."""
    value = _want(config, locations, "state_db", (str,), "a DuckDB file path")
    if scope is None:
        return value
    if not scope.allows(value):
        raise JobFileError(f"state_db {value!r} lies outside the folders this job may use "
                           f"({scope.describe()})", locations["state_db"],
                           hint="put the state file beside the job or in its project, or "
                                "give it on the command line with --state-db")
    return str(scope.resolve(value))


def load_job(path: str | Path, vars: dict[str, Any] | None = None,
             scope: Scope | None = None, words: DbtWords | None = None, *,
             require_all_vars: bool = True) -> JobSpec:
    """Read and validate a job file; `scope` is what the operator allows it to touch
    (default: its folder and project root, plus the environment's allowances); `words`
    resolves dbt's ref/source/env_var (default: dbt's own project and profile defaults)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(f"job file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise JobFileError(f"job file is not UTF-8: {e}", Location(str(p))) from None
    return parse_job(text, str(p), vars=vars or {}, scope=scope, words=words,
                     require_all_vars=require_all_vars)


def parse_job(text: str, path: str = "<job>", vars: dict[str, Any] | None = None,
              scope: Scope | None = None, words: DbtWords | None = None, *,
              require_all_vars: bool = True) -> JobSpec:
    """Parse the text of a job file named `path` (used in messages and to resolve files).

    Every `--var` must be used by the job; with `require_all_vars` off (many jobs sharing
    the command line's vars, `jobset.py`) the unused ones are listed in `unused_vars`."""
    scope = scope or make_scope(path)
    words = words or DbtWords(path)
    config, locations, body = _split_config(text, path)
    _check_keys(config, locations, path)
    spec = _build_spec(config, locations, path, vars or {}, scope)
    spec.sql, spec.sql_line, used_vars = _prepare_sql(body, path, spec.vars, words)
    spec.depends_on, spec.dbt_files = list(words.depends_on), list(words.files)
    spec.env_names = list(words.env_names)
    _check_sql(spec.sql, path, scope)
    templates = [t.text for t in (spec.prompt, spec.system) if t is not None]
    if require_all_vars:
        check_unknown_vars(spec.vars, used_vars, templates, Location(path))
    else:
        for name, value in spec.vars.items():
            try:
                check_unknown_vars({name: value}, used_vars, templates, Location(path))
            except JobFileError:
                spec.unused_vars.add(name)
    return spec


def read_config(path: str | Path) -> dict[str, Any]:
    """The literal values of a job file's config block, without reading its SELECT (to learn
    the names of a project's output tables before any job's `ref()` is resolved)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JobFileError(f"cannot read the job file: {e}", Location(str(p))) from None
    return _split_config(text, str(p))[0]


# --- the config block -------------------------------------------------------------------------

def _split_config(text: str, path: str) -> tuple[dict, dict[str, Location], str]:
    matches = list(_CONFIG_START.finditer(text))
    if not matches:
        raise JobFileError(
            "no {{ config(...) }} block found",
            Location(path, 1, 1),
            hint="start the file with {{ config(name='...', provider='openai', model='...', "
                 "unique_key='id', prompt='...') }}",
        )
    if len(matches) > 1:
        line, col = _line_col(text, matches[1].start())
        raise JobFileError("a job file has one config block; found a second one",
                           Location(path, line, col))
    m = matches[0]
    call_start = text.index("config", m.start())
    start_line, start_col = _line_col(text, call_start)
    call_end = _find_call_end(text, call_start, path)
    close = re.compile(r"\s*-?\}\}").match(text, call_end)
    if not close:
        line, col = _line_col(text, call_end)
        raise JobFileError("expected '}}' to close the config block", Location(path, line, col))
    call_text = text[call_start:call_end]
    config, locations = _literal_kwargs(call_text, path, start_line, start_col)
    block = text[m.start():close.end()]
    body = text[:m.start()] + "\n" * block.count("\n") + text[close.end():]
    return config, locations, body


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _find_call_end(text: str, call_start: int, path: str) -> int:
    """Offset just past the `)` that closes `config(`, honouring strings and nesting."""
    reader = io.StringIO(text[call_start:]).readline
    depth = 0
    base_line, base_col = _line_col(text, call_start)
    line_offsets = [0]
    for ln in text[call_start:].splitlines(keepends=True):
        line_offsets.append(line_offsets[-1] + len(ln))
    try:
        for tok in tokenize.generate_tokens(reader):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    row, col = tok.end
                    return call_start + line_offsets[row - 1] + col
            elif tok.type == tokenize.ENDMARKER:
                break
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        if "EOF" in str(e):
            raise JobFileError("config block is never closed: missing ')' or a closing quote",
                               Location(path, base_line, base_col)) from None
        raise JobFileError(f"config block is not well formed: {e}",
                           Location(path, base_line, base_col),
                           hint="check for an unclosed string or parenthesis") from None
    raise JobFileError("config block is never closed: missing ')'",
                       Location(path, base_line, base_col))


def _literal_kwargs(call_text: str, path: str, line0: int,
                    col0: int) -> tuple[dict, dict[str, Location]]:
    def loc(node: ast.AST) -> Location:
        lineno = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        return Location(path, line0 + lineno - 1, col + (col0 - 1 if lineno == 1 else 0))

    try:
        tree = ast.parse(call_text, mode="eval")
    except SyntaxError as e:
        lineno = e.lineno or 1
        col = (e.offset or 1) + (col0 - 1 if lineno == 1 else 0)
        raise JobFileError(f"config block is not valid: {e.msg}",
                           Location(path, line0 + lineno - 1, col)) from None
    call = tree.body
    if not isinstance(call, ast.Call) or call.args:
        raise JobFileError("config(...) takes keyword arguments only, e.g. name='reviews'",
                           loc(call))
    config: dict[str, Any] = {}
    locations: dict[str, Location] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise JobFileError("config(**...) is not supported; write each key out", loc(kw))
        if kw.arg in config:
            raise JobFileError(f"config key {kw.arg!r} is given twice", loc(kw))
        config[kw.arg] = _literal(kw.value, loc)
        locations[kw.arg] = loc(kw.value)
    return config, locations


_NAMES = {"true": True, "false": False, "none": None, "True": True, "False": False,
          "None": None}


def _literal(node: ast.AST, loc) -> Any:
    """A literal value; Jinja's lower-case true/false/none are accepted too."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, float) and not math.isfinite(value):   # 1e999 is inf
            raise JobFileError("config numbers must be finite", loc(node))
        if isinstance(value, (str, int, float, type(None))):
            return value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, loc) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise JobFileError("dict unpacking is not supported in config", loc(v))
            key = _literal(k, loc)
            if not isinstance(key, str):
                raise JobFileError("dict keys in config must be strings", loc(k))
            out[key] = _literal(v, loc)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand, loc)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, loc), _literal(node.right, loc)
        if isinstance(left, str) and isinstance(right, str):
            return left + right   # implicit concatenation across lines reads naturally
    raise JobFileError("config values must be literals (strings, numbers, true/false, "
                       "lists, dicts)", loc(node))


def _check_keys(config: dict, locations: dict[str, Location], path: str) -> None:
    for key in config:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                "other request-body parameters go in params={...}")
            raise JobFileError(f"unknown config key {key!r}", locations[key], hint=hint)
    for key in REQUIRED_KEYS:
        if key not in config:
            raise JobFileError(f"config is missing the required key {key!r}",
                               Location(path, next(iter(locations.values())).line
                                        if locations else 1))
    if "prompt" not in config and "prompt_file" not in config:
        raise JobFileError("config needs a prompt (inline) or a prompt_file",
                           locations.get("name", Location(path, 1)))
    if "prompt" in config and "prompt_file" in config:
        raise JobFileError("give either prompt or prompt_file, not both",
                           locations["prompt_file"])
    if "system" in config and "system_file" in config:
        raise JobFileError("give either system or system_file, not both",
                           locations["system_file"])


def _want(config: dict, locations: dict, key: str, types: tuple, what: str) -> Any:
    value = config[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise JobFileError(f"config key {key!r} must be {what}, got {value!r}", locations[key])
    return value


def _build_spec(config: dict, locations: dict[str, Location], path: str,
                vars: dict[str, Any], scope: Scope) -> JobSpec:
    name = _want(config, locations, "name", (str,), "a table name")
    if not PLAIN_NAME.fullmatch(name):
        raise JobFileError(f"name={name!r} is not a plain table name (letters, digits, _, "
                           "optionally schema-qualified; no quotes)", locations["name"])
    reserved = reserved_qualifier(name)
    if reserved:
        raise JobFileError(f"name={name!r} is reserved: {reserved} (names are "
                           "case-insensitive)", locations["name"],
                           hint="write the output to your own schema, e.g. name='analytics."
                                + name.rsplit(".", 1)[-1] + "'")
    key = config["unique_key"]
    keys = [key] if isinstance(key, str) else key
    if not keys or not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise JobFileError("unique_key must be a column name or a list of column names",
                           locations["unique_key"])
    if len(set(keys)) != len(keys):
        raise JobFileError("unique_key lists a column twice", locations["unique_key"])

    prompt = _template(config, locations, "prompt", "prompt_file", scope, path)
    system = (_template(config, locations, "system", "system_file", scope, path)
              if "system" in config or "system_file" in config else None)
    params = config.get("params", {})
    if not isinstance(params, dict):
        raise JobFileError("params must be a dict of request-body fields", locations["params"])
    generation = {k: v for k, v in config.items() if k in GENERATION_KEYS}
    clash = set(params) & (set(generation) | {"model", "messages", "system"})
    if clash:
        raise JobFileError(f"params repeats {sorted(clash)}; set each field once",
                           locations["params"])
    ints = {}
    for k in ("max_attempts", "batch_max_requests", "batch_max_bytes", "batch_max_tokens",
              "enqueued_token_limit", "realtime_below"):
        if k in config:
            v = _want(config, locations, k, (int,), "a positive whole number")
            if v < 1:
                raise JobFileError(f"{k} must be at least 1", locations[k])
            ints[k] = v
    for k in ("max_tokens", "max_completion_tokens"):
        if k in config:
            _check_output_tokens(config, locations, k)
    if "temperature" in config:
        _want(config, locations, "temperature", (int, float), "a number")
    memory_limit = None
    if "memory_limit" in config:
        memory_limit = _want(config, locations, "memory_limit", (str,), "a size such as '1GB'")
        try:
            check_memory_limit(memory_limit)
        except ValueError as e:
            raise JobFileError(f"memory_limit: {e}", locations["memory_limit"]) from None
    state_db = _state_db(config, locations, scope) if "state_db" in config else None
    endpoint = config.get("endpoint", "chat")
    if endpoint not in ("chat", "embeddings"):
        raise JobFileError(f"endpoint must be 'chat' or 'embeddings', got {endpoint!r}",
                           locations["endpoint"])
    tags = config.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise JobFileError("tags must be a list of words, e.g. tags=['nightly', 'reviews']",
                           locations["tags"])
    provider_options = {k: config[k] for k in
                        ("base_url", "api_version", "anthropic_version", "cache_system_prompt")
                        if k in config}
    output_schema, output_columns, schema_file = _typed_answer(config, locations, scope,
                                                               endpoint)
    allow_truncated = ("allow_truncated" in config and
                       _want(config, locations, "allow_truncated", (bool,), "true or false"))
    if allow_truncated and (output_schema is not None or endpoint == "embeddings"):
        raise JobFileError("allow_truncated=true keeps cut-off plain-text answers; a typed "
                           "answer cut off is not valid JSON, and embeddings are never cut",
                           locations["allow_truncated"], hint="raise max_tokens instead")
    attach = _attachments(config, locations, scope, name)
    export = _export(config, locations, scope, name)
    hooks = {k: check_job_hook(k, config[k], locations[k], scope)
             for k in HOOK_KEYS if k in config}
    budget = dict(budget_usd=parse_budget(config["budget_usd"], locations["budget_usd"])
                  if "budget_usd" in config else None,
                  deadline=parse_deadline(config["deadline"], locations["deadline"]).text
                  if "deadline" in config else None)
    return JobSpec(
        attach=attach, export=export, hooks=hooks, **budget,
        allow_truncated=allow_truncated, memory_limit=memory_limit, state_db=state_db,
        output_schema=output_schema, output_columns=output_columns,
        output_schema_file=schema_file, path=path, name=name,
        provider=_want(config, locations, "provider", (str,), "a provider name"),
        model=_want(config, locations, "model", (str,), "a model name"),
        unique_key=keys, prompt=prompt, system=system, sql="", endpoint=endpoint,
        generation=generation, params=params, provider_options=provider_options,
        description=config.get("description"), tags=list(tags) if tags else [],
        vars=dict(vars), key_locations=locations, scope=scope, **ints,
    )


def _attachments(config: dict, locations: dict[str, Location], scope: Scope,
                 name: str) -> dict[str, str]:
    """`attach={'crm': 'crm.duckdb'}`: other DuckDB files the SELECT may read, each under an
    alias (a plain identifier, not one DuckDB or warehouse-batch keeps), each a file in the
    job's scope (like every file a job reads). The output table may not name one."""
    if "attach" not in config:
        return {}
    raw, loc = config["attach"], locations["attach"]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, str) and v
                                                      for v in raw.values()):
        raise JobFileError("attach must map a catalog name to a DuckDB file, e.g. "
                           "attach={'crm': 'crm.duckdb'}", loc)
    out: dict[str, str] = {}
    seen: set[str] = set()
    for alias, file in raw.items():
        if not ALIAS.fullmatch(alias):
            raise JobFileError(f"attach: {alias!r} is not a plain catalog name (letters, "
                               "digits and _, not starting with a digit)", loc)
        lowered = alias.lower()
        if lowered in RESERVED_QUALIFIERS or lowered in ("main", "memory"):
            raise JobFileError(f"attach: the catalog name {alias!r} is reserved",
                               loc, hint="pick another name, e.g. " + repr(f"{alias}_src"))
        if lowered in seen:
            raise JobFileError(f"attach: {alias!r} is given twice (names are "
                               "case-insensitive)", loc)
        seen.add(lowered)
        f = _confined(scope, file, f"attach {alias!r}:", loc)
        if not f.is_file():
            raise JobFileError(f"attach {alias!r}: no such file: {f}", loc,
                               hint="attach reads existing DuckDB files; it never creates one")
        with f.open("rb") as handle:
            header = handle.read(12)
        if header[8:12] != b"DUCK":
            raise JobFileError(f"attach {alias!r}: {f} is not a DuckDB database file", loc,
                               hint="read other files with read_csv/read_parquet/read_json")
        out[alias] = str(f)
    first = name.split(".")[0].lower()
    if "." in name and first in seen:
        raise JobFileError(f"name={name!r}: the catalog {name.split('.')[0]!r} is attached "
                           "read-only for the SELECT to read; an output table lives in the "
                           "database file itself", locations["name"],
                           hint="write name='table' or name='schema.table'")
    return out


def _export(config: dict, locations: dict[str, Location], scope: Scope,
            name: str) -> str | None:
    """`export='exports/{name}.parquet'` (or a folder, `exports/`): where a Parquet copy of
    the output table is written after each write. The path lies in the job's scope, ends in
    `.parquet`, and may only replace a Parquet file: it can never overwrite a database, a
    job file or anything else."""
    if "export" not in config:
        return None
    raw, loc = config["export"], locations["export"]
    if not isinstance(raw, str) or not raw.strip():
        raise JobFileError("export must be a path such as 'exports/{name}.parquet' or a "
                           "folder such as 'exports/'", loc)
    table = name.split(".")[-1]
    text = raw.replace("{name}", table)
    if "{" in text or "}" in text:
        raise JobFileError("export: the only placeholder is {name} (the output table)", loc)
    if text.endswith(("/", "\\")) or scope.resolve(text).is_dir():
        text = text.rstrip("/\\") + f"/{table}.parquet"
    if not text.lower().endswith(".parquet"):
        raise JobFileError(f"export: {raw!r} must name a .parquet file or a folder", loc)
    f = _confined(scope, text, "export", loc)
    if f.exists():
        with f.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise JobFileError(f"export: {f} exists and is not a Parquet file; "
                                   "warehouse-batch replaces only a Parquet file", loc)
    return str(f)


def _check_output_tokens(config: dict, locations: dict[str, Location], key: str) -> None:
    """An output-token cap is a positive integer no larger than the model documents."""
    v = _want(config, locations, key, (int,), "a positive whole number")
    if v < 1:
        raise JobFileError(f"{key} must be at least 1", locations[key])
    provider, model = config.get("provider"), config.get("model")
    if not isinstance(provider, str) or not isinstance(model, str):
        return
    limit = output_limit(provider, model)
    if v > limit.tokens:
        why = (f"{model} answers with at most {limit.tokens:,} tokens" if limit.documented
               else f"no model answers with more than {limit.tokens:,} tokens")
        raise JobFileError(f"{key}={v:,} is more than the model can produce: {why}",
                           locations[key], hint=f"set {key} to at most {limit.tokens:,}")


def _typed_answer(config: dict, locations: dict[str, Location], scope: Scope,
                  endpoint: str) -> tuple[dict | None, dict[str, str] | None, str | None]:
    """The answer's JSON Schema (from output_schema or columns), the output projection and
    the file the schema was read from (None when it was written in the job file)."""
    if "output_schema" in config and "columns" in config:
        raise JobFileError("give either output_schema or columns, not both",
                           locations["columns"])
    schema, schema_file = None, None
    if "columns" in config:
        schema = from_columns(config["columns"], locations["columns"])
    elif "output_schema" in config:
        raw, loc = config["output_schema"], locations["output_schema"]
        if isinstance(raw, str):
            f = _confined(scope, raw, "output_schema", loc)
            schema_file = str(f)
            try:
                raw = json.loads(f.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise JobFileError(f"output_schema file not found: {f}", loc) from None
            except json.JSONDecodeError as e:
                raise JobFileError(f"output_schema file is not JSON: {e}",
                                   Location(str(f), e.lineno, e.colno)) from None
        schema = check_schema(raw, loc)
    if schema is not None and endpoint == "embeddings":
        raise JobFileError("an embeddings job returns vectors; it takes no output schema",
                           locations.get("columns") or locations["output_schema"])
    projection = config.get("output_columns")
    if projection is not None:
        loc = locations["output_columns"]
        if schema is None:
            raise JobFileError("output_columns projects a typed answer: set columns or "
                               "output_schema too", loc)
        if not isinstance(projection, dict) or not projection or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in projection.items()):
            raise JobFileError("output_columns must map column names to SQL expressions over "
                               "the answer's fields, e.g. {'mood': 'sentiment'}", loc)
    return schema, projection, schema_file


def _confined(scope: Scope, name: str, key: str, loc: Location) -> Path:
    """The file `name` (relative to the job's folder), refused unless it lies in the job's
    scope once symlinks are resolved: a job file must not read /proc/self/environ or ~/.ssh."""
    f = scope.resolve(name)
    if not scope.allows(f):
        raise JobFileError(
            f"{key} {name!r} is outside the folders this job may read ({scope.describe()})",
            loc, hint="move the file into the job's folder or project, or, if you trust it, "
                      f"run with --allow-path {f.parent} (or set "
                      "$WAREHOUSE_BATCH_ALLOWED_PATHS)")
    return f


def _template(config: dict, locations: dict[str, Location], inline_key: str, file_key: str,
              scope: Scope, path: str) -> Template:
    if inline_key in config:
        text = _want(config, locations, inline_key, (str,), "a string")
        loc = locations[inline_key]
        return Template(text=text, file=path, line=loc.line or 1, column=loc.column or 1)
    rel = _want(config, locations, file_key, (str,), "a path")
    f = _confined(scope, rel, file_key, locations[file_key])
    try:
        return Template(text=f.read_text(encoding="utf-8"), file=str(f), line=1)
    except FileNotFoundError:
        raise JobFileError(f"{file_key} not found: {f}", locations[file_key]) from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise JobFileError(f"{file_key} cannot be read as UTF-8 text: {e}",
                           locations[file_key]) from None


# --- the SELECT -------------------------------------------------------------------------------

def _prepare_sql(body: str, path: str, vars: dict[str, Any],
                 words: DbtWords | None = None) -> tuple[str, int, set[str]]:
    """Bind `{{ var('x') }}` in the SQL body as literals and dbt's words as `words` resolves
    them; keep line numbers as in the file. Returns the SQL, the line of its first statement
    line, and the var names it used."""
    body, used = render_sql_body(body, path, vars, words)
    stripped = body.strip()
    if not stripped:
        raise JobFileError("the job file has no SELECT after the config block",
                           Location(path, body.count("\n") + 1))
    for number, line in enumerate(body.split("\n"), 1):
        if line.strip() and not line.strip().startswith("--"):
            return body, number, used
    return body, 1, used


def _check_sql(sql: str, path: str, scope: Scope | None = None) -> None:
    """One SELECT, proven read-only by DuckDB's own parse tree, reading files in `scope`."""
    check_read_only(sql, path, scope)
