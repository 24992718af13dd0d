"""Prompt templates: a strict, bounded Jinja sandbox, static checks, and compilation to SQL.

Templates see each selected column as a variable (and all of them as `row`, plus `vars`).
Rendering is strict (an unknown name is an error, never an empty string: with per-row data a
silent blank costs real money), sandboxed (no attribute tricks, no mutation, no `**`) and
bounded (`sandbox.py`: every string a template builds is checked against the budget *before*
it is allocated; the output is counted as it streams). NULL prints as an empty string.
A template made only of text and plain column references is compiled to a DuckDB string
expression so a million rows render set-based; anything richer is rendered by Jinja in Python
over Arrow batches. Both paths give byte-identical prompts (tested).

Budgets, per prompt and per job:
* `MAX_PROMPT_CHARS`: no prompt, and no string a template builds on the way, may exceed it.
  The largest context window of the models the providers serve is about 1M tokens (GPT-4.1
  family, Claude with the 1M-token window), roughly 4M characters of text: a longer prompt
  cannot be answered by any model, only paid for and rejected.
* `MAX_WORK_CHARS` / `MAX_LOOP_STEPS`: what one prompt's rendering may build in total (all
  intermediate strings) and iterate (loop iterations), so small steps in loops cannot burn
  minutes of CPU per row.
* the job budget (`DEFAULT_MAX_JOB_CHARS`, or `$WAREHOUSE_BATCH_MAX_JOB_CHARS` set by the
  operator, never by the job file): the characters all prompts of one job may total.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Iterable, Mapping

import duckdb
from jinja2 import TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError

from .errors import (ConfigurationError, DataError, JobFileError,
                     TemplateBudgetError)
from .estimate import MAX_TRUNCATE_TOKENS, truncate_chars
from .identity import sql_literal
from .sandbox import BoundedSandbox, Budget
from .spec import Template
from .sqlutil import quote_ident

MAX_PROMPT_CHARS = 4_000_000
MAX_WORK_CHARS = 25 * MAX_PROMPT_CHARS
MAX_LOOP_STEPS = 1_000_000
DEFAULT_MAX_JOB_CHARS = 4_000_000_000
MAX_JOB_CHARS_ENV = "WAREHOUSE_BATCH_MAX_JOB_CHARS"
_CONST_FOLD_CHARS = 100_000
RESERVED_NAMES = {"row", "vars"}
TRUNCATE_TOKENS = "truncate_tokens"
DEFAULT_CHARS_PER_TOKEN = 4.0     # the documented default (data/tokens.json)

# Column types whose Python text (what Jinja prints) equals DuckDB's CAST(... AS VARCHAR).
_SQL_TEXT_TYPES = {"VARCHAR", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                   "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_BLOB_TYPE = re.compile(r"\bBLOB\b", re.IGNORECASE)


def make_env(budget: Budget | None = None, null_as_empty: bool = False) -> BoundedSandbox:
    """The bounded, strict sandbox; `budget` defaults to one prompt's budget."""
    budget = budget or Budget(MAX_PROMPT_CHARS, MAX_WORK_CHARS, MAX_LOOP_STEPS)
    return BoundedSandbox(budget, null_as_empty=null_as_empty, undefined=StrictUndefined,
                          autoescape=False, keep_trailing_newline=True)


def job_char_budget(env: Mapping[str, str] | None = None) -> int:
    """The characters all prompts of one job may total (the operator may raise it)."""
    env = os.environ if env is None else env
    text = env.get(MAX_JOB_CHARS_ENV)
    if not text:
        return DEFAULT_MAX_JOB_CHARS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"${MAX_JOB_CHARS_ENV} must be a positive number of "
                                 f"characters, not {text!r}")
    return value


@dataclass
class CompiledTemplate:
    """A parsed, checked template, ready to render per row or as SQL."""

    source: Template
    what: str               # "prompt" or "system", for messages
    ast: nodes.Template
    jinja: Any              # jinja2.Template
    budget: Budget          # one prompt's budget, reset for each render
    max_job_chars: int = DEFAULT_MAX_JOB_CHARS
    job_chars: int = field(default=0)   # characters rendered so far by this job
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN   # truncate_tokens' documented ratio

    def variables(self) -> set[str]:
        return meta.find_undeclared_variables(self.ast)


def compile_template(t: Template, what: str,
                     chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> CompiledTemplate:
    """Parse and compile a template in the bounded sandbox. `chars_per_token` is the job's
    documented ratio (`estimate.documented`): `truncate_tokens(N)` keeps N times as many
    characters."""
    # While compiling, Jinja evaluates constant filter calls (`{{ 'x'|center(10) }}`) and
    # writes their results into the code: a small budget keeps those small (a larger one
    # is left to run, and be refused, per row).
    budget = Budget(_CONST_FOLD_CHARS, _CONST_FOLD_CHARS, 0)
    env = make_env(budget, null_as_empty=True)
    env.filters[TRUNCATE_TOKENS] = _truncate_tokens_filter(chars_per_token)
    try:
        tree = env.parse(t.text)
        _check_truncate_tokens(tree, t)
        compiled = env.from_string(t.text)
    except TemplateSyntaxError as e:
        raise JobFileError(f"{what} template: {e.message}", t.location(e.lineno)) from None
    except RecursionError:
        raise JobFileError(f"{what} template is nested too deeply to compile",
                           t.location()) from None
    budget.__init__(MAX_PROMPT_CHARS, MAX_WORK_CHARS, MAX_LOOP_STEPS)
    return CompiledTemplate(t, what, tree, compiled, budget, job_char_budget(),
                            chars_per_token=chars_per_token)


def _truncate_tokens_filter(chars_per_token: float) -> Any:
    """`{{ text | truncate_tokens(N) }}`: the text cut to about N tokens, counted with the
    documented estimate (N * chars_per_token characters, `estimate.truncate_chars`). NULL
    stays NULL (printed empty, as in SQL); other values are cut as their text."""
    def truncate_tokens(value: Any, tokens: Any = None) -> Any:
        n = _token_budget(tokens)
        if n is None:      # reached at run time only (e.g. through map('truncate_tokens', x))
            raise SecurityError(f"{TRUNCATE_TOKENS} takes a whole number of tokens from 1 to "
                                f"{MAX_TRUNCATE_TOKENS:,}, not {tokens!r}")
        if value is None:
            return None
        return str(value)[:truncate_chars(chars_per_token, n)]
    return truncate_tokens


def _token_budget(value: Any) -> int | None:
    """A valid truncate_tokens budget, or None."""
    if isinstance(value, int) and not isinstance(value, bool) \
            and 1 <= value <= MAX_TRUNCATE_TOKENS:
        return value
    return None


def _check_truncate_tokens(tree: nodes.Template, t: Template) -> None:
    """Every `truncate_tokens` takes one literal whole number of tokens, 1 to
    MAX_TRUNCATE_TOKENS: refused at plan with its line otherwise."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        if not isinstance(node, nodes.Filter) or node.name != TRUNCATE_TOKENS:
            continue
        args = node.args
        ok = (len(args) == 1 and not node.kwargs and node.dyn_args is None
              and node.dyn_kwargs is None and isinstance(args[0], nodes.Const)
              and _token_budget(args[0].value) is not None)
        if not ok:
            shown = "nothing"
            if args or node.kwargs:
                try:
                    shown = (repr(args[0].as_const()) if len(args) == 1 and not node.kwargs
                             else "several arguments" if args else "a keyword argument")
                except Exception:   # not a constant (a variable, a call)
                    shown = "an expression"
            raise JobFileError(
                f"{TRUNCATE_TOKENS} takes one literal whole number of tokens from 1 to "
                f"{MAX_TRUNCATE_TOKENS:,}, not {shown}", t.location(node.lineno),
                hint="e.g. {{ body | truncate_tokens(2000) }}")


def check_variables(ct: CompiledTemplate, columns: list[str],
                    types: dict[str, str] | None = None) -> None:
    """Every name the template uses must be an output column of the SELECT (or row/vars).

    With `types`, a BLOB column the template reads is refused too: Jinja would print its
    bytes as `b'\\xff…'`, which is never what a prompt means.
    """
    if types is not None:
        _check_blobs(ct, columns, types)
    known = set(columns) | RESERVED_NAMES
    for node in ct.ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in known and node.name not in _assigned(ct):
            raise JobFileError(
                f"{ct.what} template uses {{{{ {node.name} }}}}, which is not a column of the "
                f"SELECT", ct.source.location(node.lineno),
                hint=_suggest(node.name, columns))
    for node in ct.ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "row":
            attr = node.attr if isinstance(node, nodes.Getattr) else (
                node.arg.value if isinstance(node.arg, nodes.Const) else None)
            if isinstance(attr, str) and attr not in columns and not hasattr(dict, attr):
                raise JobFileError(
                    f"{ct.what} template uses row.{attr}, which is not a column of the SELECT",
                    ct.source.location(node.lineno), hint=_suggest(attr, columns))


def _check_blobs(ct: CompiledTemplate, columns: list[str], types: dict[str, str]) -> None:
    used: list[tuple[str, int]] = []          # (column, template line)
    row_refs = set()
    for node in ct.ast.find_all((nodes.Getattr, nodes.Getitem)):
        col = _column_ref(node)
        if col is not None and col in columns:
            used.append((col, node.lineno))
            row_refs.add(id(node.node))
    for node in ct.ast.find_all(nodes.Name):
        if node.ctx != "load":
            continue
        if node.name == "row" and id(node) not in row_refs:
            used.extend((c, node.lineno) for c in columns)   # the whole row is reachable
        elif node.name in columns:     # even if also assigned: `set data = data` is a BLOB
            used.append((node.name, node.lineno))
    for col, line in sorted(used, key=lambda u: u[1]):
        if _BLOB_TYPE.search(types.get(col, "")):
            raise JobFileError(
                f"the {ct.what} template uses the column {col!r}, which is a "
                f"{types[col]}; binary data cannot go into a prompt",
                ct.source.location(line),
                hint=f"turn it into text in the SELECT, e.g. decode({quote_ident(col)}) AS "
                     f"{quote_ident(col)} (UTF-8) or hex({quote_ident(col)})")


def check_constant(ct: CompiledTemplate) -> None:
    """A system prompt is shared by every row (and cached): it may use `vars`, not columns."""
    extra = ct.variables() - {"vars"} - _assigned(ct)
    if extra:
        name = sorted(extra)[0]
        line = next((n.lineno for n in ct.ast.find_all(nodes.Name) if n.name == name), None)
        raise JobFileError(
            f"the system prompt uses {{{{ {name} }}}}; it is shared by every row, so it may use "
            "vars but not columns", ct.source.location(line),
            hint="move row-specific text into the prompt")


def _assigned(ct: CompiledTemplate) -> set[str]:
    names = set()
    for node in ct.ast.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            names.add(node.name)
    return names


def _suggest(name: str, columns: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, columns, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "columns: " + ", ".join(columns[:20])


def render_constant(ct: CompiledTemplate, vars: dict[str, Any]) -> str:
    try:
        return _render(ct, {"vars": vars})
    except TemplateBudgetError as e:
        raise JobFileError(f"{ct.what} template was refused: {e.message}",
                           ct.source.location(_template_line(e.__traceback__))) from None
    except SecurityError as e:
        raise JobFileError(f"{ct.what} template was stopped by the sandbox: {e}",
                           ct.source.location(_template_line(e.__traceback__))) from None
    except _RENDER_ERRORS as e:
        raise JobFileError(f"{ct.what} template: {_describe(e)}",
                           ct.source.location(_template_line(e.__traceback__))) from None


# What a template can raise while it renders: Jinja's errors, and the Python errors of what it
# calls (`1 / 0`, `'{}'.format()`, `truncate(-5)` asserts, deep macro recursion).
_RENDER_ERRORS = (TemplateError, UndefinedError, TypeError, ValueError, ArithmeticError,
                  LookupError, AssertionError, RecursionError)


def _describe(e: BaseException) -> str:
    """An exception as a user reads it: its message, else its kind."""
    if isinstance(e, RecursionError):
        return "it recurses too deeply"
    return str(e) or type(e).__name__


def render_rows(ct: CompiledTemplate, rows: Iterable[dict], vars: dict[str, Any],
                key_columns: list[str]) -> list[str]:
    """Render one prompt per row dict; errors name the row's key and the template line.

    Each row is rendered within one prompt's budget, and the job's total is counted against
    the job budget as prompts are rendered.
    """
    out = []
    for row in rows:
        try:
            text = _render(ct, {**row, "row": row, "vars": vars})
        except TemplateBudgetError as e:
            key = {k: row.get(k) for k in key_columns}
            raise DataError(f"the {ct.what} for the row with key {key} was refused: "
                            f"{e.message}",
                            location=ct.source.location(_template_line(e.__traceback__)),
                            hint="shorten what the template builds, or filter such rows out "
                                 "in the SELECT") from None
        except SecurityError as e:
            raise JobFileError(f"{ct.what} template was stopped by the sandbox: {e}",
                               ct.source.location(_template_line(e.__traceback__))) from None
        except _RENDER_ERRORS as e:
            key = {k: row.get(k) for k in key_columns}
            raise DataError(f"{ct.what} template failed for the row with key {key}: "
                            f"{_describe(e)}",
                            location=ct.source.location(_template_line(e.__traceback__))
                            ) from None
        ct.job_chars += len(text)
        if ct.job_chars > ct.max_job_chars:
            key = {k: row.get(k) for k in key_columns}
            raise DataError(_job_budget_message(ct, key), location=ct.source.location(),
                            hint=_JOB_BUDGET_HINT)
        out.append(text)
    return out


_JOB_BUDGET_HINT = (f"select fewer rows, shorten the prompt, or (as the operator) raise "
                    f"${MAX_JOB_CHARS_ENV}")


def _job_budget_message(ct: CompiledTemplate, key: Any) -> str:
    return (f"the job's {ct.what}s pass the budget of {ct.max_job_chars:,} characters per "
            f"job at the row with key {key}")


def _render(ct: CompiledTemplate, context: dict[str, Any]) -> str:
    """Render within one prompt's budget, counting the output as it streams."""
    ct.budget.reset()
    parts: list[str] = []
    append, limit, total = parts.append, ct.budget.max_chars, 0
    for chunk in ct.jinja.generate(context):
        total += len(chunk)
        if total > limit:
            raise TemplateBudgetError(f"the rendered {ct.what} passes {limit:,} characters "
                                      "(the limit for one prompt)")
        append(chunk)
    return "".join(parts)


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line an exception was raised on (Jinja rewrites tracebacks to it)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def check_sql_prompts(con: duckdb.DuckDBPyConnection, ct: CompiledTemplate,
                      table: str = "wb_prompts", nbytes_table: str | None = None) -> None:
    """The budgets, for prompts rendered set-based in SQL (`table` has _rid, key_json,
    prompt; `nbytes_table`, if given, has each prompt's byte length as `prompt_bytes`, so
    the common case reads no prompt)."""
    # strlen (bytes) bounds length (characters) from above and needs no UTF-8 decoding:
    # characters are counted only when the bytes come near a budget
    longest, total = con.execute(
        f"SELECT max(prompt_bytes), coalesce(sum(prompt_bytes), 0) FROM {nbytes_table}"
        if nbytes_table else
        f"SELECT max(strlen(prompt)), coalesce(sum(strlen(prompt)), 0) FROM {table}"
    ).fetchone()
    if (longest or 0) > MAX_PROMPT_CHARS or total > ct.max_job_chars:
        longest, total = con.execute(
            f"SELECT max(length(prompt)), coalesce(sum(length(prompt)), 0) FROM {table}"
        ).fetchone()
    if longest is not None and longest > MAX_PROMPT_CHARS:
        key, n = con.execute(f"SELECT key_json, length(prompt) FROM {table} WHERE "
                             f"length(prompt) > {MAX_PROMPT_CHARS} ORDER BY _rid LIMIT 1"
                             ).fetchone()
        raise DataError(f"the rendered {ct.what} for the row with key {json.loads(key)} has "
                        f"{n:,} "
                        f"characters (the limit for one prompt is {MAX_PROMPT_CHARS:,})",
                        location=ct.source.location(),
                        hint="shorten the text in the SELECT, e.g. left(col, N)")
    if total > ct.max_job_chars:
        key = con.execute(
            f"SELECT key_json FROM (SELECT key_json, _rid, sum(length(prompt)) OVER "
            f"(ORDER BY _rid) AS upto FROM {table}) WHERE upto > {ct.max_job_chars} "
            "ORDER BY _rid LIMIT 1").fetchone()[0]
        raise DataError(_job_budget_message(ct, json.loads(key)), location=ct.source.location(),
                        hint=_JOB_BUDGET_HINT)
    ct.job_chars += total


def to_sql(ct: CompiledTemplate, types: dict[str, str]) -> str | None:
    """A DuckDB expression equal to the rendered template, or None if it needs Jinja.

    Compiles text plus `{{ col }}`, `{{ row.col }}` and `{{ row['col'] }}` over columns whose
    text form is the same in Python and DuckDB (strings and integers), each optionally
    `| truncate_tokens(N)` (DuckDB's `left` counts characters as Python slices do). NULL
    renders as an empty string, as the sandbox's `finalize` prints it.
    """
    parts: list[str] = []
    for node in ct.ast.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(sql_literal(child.data))
                continue
            keep = None         # {{ col | truncate_tokens(N) }}: its first characters
            if isinstance(child, nodes.Filter) and child.name == TRUNCATE_TOKENS \
                    and child.node is not None:
                keep = truncate_chars(ct.chars_per_token, child.args[0].value)
                child = child.node
            col = _column_ref(child)
            if col is None or types.get(col, "").upper() not in _SQL_TEXT_TYPES:
                return None
            text = f"coalesce(CAST({quote_ident(col)} AS VARCHAR), '')"
            parts.append(text if keep is None else f"left({text}, {int(keep)})")
    if not parts:
        return "''"
    return "(" + " || ".join(parts) + ")"


def _column_ref(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name) and node.name not in RESERVED_NAMES:
        return node.name
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) \
            and node.node.name == "row":
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) \
            and node.node.name == "row" and isinstance(node.arg, nodes.Const) \
            and isinstance(node.arg.value, str):
        return node.arg.value
    return None

