"""The project file: defaults for every command run in a project, so a pipeline step can be
`warehouse-batch run` with no flags.

It is `warehouse-batch.toml` (the whole file), or the `[tool.warehouse-batch]` table of
`pyproject.toml`, in the current folder or the nearest parent that has one; the search stops
at the repository root (a folder holding `.git`) or the filesystem root. In one folder
`warehouse-batch.toml` wins over `pyproject.toml`.

Precedence, for every setting: command-line flag > environment variable > project file >
built-in default. The CLI applies a project file by filling in the environment variables it
sets (`apply`) where the environment does not already set them, so flags and the
environment keep their meaning and the library reads one place. API keys never go in the
file: `api_key_env` names the variable to read the key from.

The project file is operator configuration, like CI settings: it may widen what jobs read
(`allow_paths`) and where their requests go (`allow_hosts`, `base_url`). A job file cannot.
"""
from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from .budget import DAILY_ENV, check_usd
from .db import DB_ENV, MEMORY_ENV, STATE_DB_ENV, check_memory_limit
from .errors import Location, UserError
from .paths import ALLOW_HOOKS_ENV

FILE_NAME = "warehouse-batch.toml"
PYPROJECT_TABLE = ("tool", "warehouse-batch")

# key -> what it is; paths are relative to the project file's folder
TOP_KEYS = {
    "db": "the DuckDB file (--db, $WAREHOUSE_BATCH_DB)",
    "state_db": "the DuckDB file of the state schema (--state-db, $WAREHOUSE_BATCH_STATE_DB)",
    "memory_limit": "DuckDB's memory limit (--memory-limit, $WAREHOUSE_BATCH_MEMORY_LIMIT)",
    "allow_paths": "folders jobs may read (--allow-path, $WAREHOUSE_BATCH_ALLOWED_PATHS)",
    "allow_hosts": "hosts a job's base_url may name (--allow-host, "
                   "$WAREHOUSE_BATCH_ALLOWED_HOSTS)",
    "jobs": "the job folder(s) or file(s) a command runs when given no path",
    "providers": "per-provider settings: [providers.openai] base_url, api_key_env",
    "on_complete": "a shell command or URL told when a job completes "
                   "($WAREHOUSE_BATCH_ON_COMPLETE)",
    "on_failure": "a shell command or URL told when a command on a job fails "
                  "($WAREHOUSE_BATCH_ON_FAILURE)",
    "allow_hooks": "true: job files may name shell commands as hooks (--allow-hooks, "
                   "$WAREHOUSE_BATCH_ALLOW_HOOKS)",
    "daily_budget_usd": "what every job of the state database may spend per UTC day "
                        "(--daily-budget-usd, $WAREHOUSE_BATCH_DAILY_BUDGET_USD)",
}
PROVIDER_KEYS = {"base_url", "api_key_env"}
# provider -> (environment variable of its base URL, of its API key)
PROVIDER_ENV = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    "azure_openai": ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"),
    "openai_compatible": ("OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY"),
}
PATHS_ENV = "WAREHOUSE_BATCH_ALLOWED_PATHS"
HOSTS_ENV = "WAREHOUSE_BATCH_ALLOWED_HOSTS"
# notification hooks (hooks.py): the project's are the operator's; shell hooks run in its folder
HOOK_ENV = {"on_complete": "WAREHOUSE_BATCH_ON_COMPLETE",
            "on_failure": "WAREHOUSE_BATCH_ON_FAILURE"}
HOOK_DIR_ENV = "WAREHOUSE_BATCH_HOOK_DIR"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Project:
    """A project file, read and checked; paths made absolute."""

    file: Path
    db: str | None = None
    state_db: str | None = None
    memory_limit: str | None = None
    allow_paths: list[str] = field(default_factory=list)
    allow_hosts: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)   # on_complete / on_failure
    allow_hooks: bool = False
    daily_budget_usd: float | None = None

    @property
    def folder(self) -> Path:
        return self.file.parent


def find(start: str | Path | None = None) -> Path | None:
    """The project file for a command run in `start` (default: the current folder): the
    nearest `warehouse-batch.toml`, or `pyproject.toml` with a `[tool.warehouse-batch]`
    table, up to the repository root or the filesystem root; None if there is none."""
    folder = Path(start or os.getcwd()).resolve()
    for candidate in (folder, *folder.parents):
        own = candidate / FILE_NAME
        if own.is_file():
            return own
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and _has_table(pyproject):
            return pyproject
        if (candidate / ".git").exists():
            return None
    return None


def _has_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False   # not ours to judge; a broken pyproject.toml is the build's problem
    return isinstance(data.get("tool"), dict) and PYPROJECT_TABLE[1] in data["tool"]


def load(file: str | Path) -> Project:
    """Read and check a project file; every problem names the file and line."""
    file = Path(file).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the project file: {e}", Location(str(file))) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+), column (\d+)", str(e))
        loc = Location(str(file), int(m.group(1)), int(m.group(2))) if m else Location(str(file))
        raise UserError(f"the project file is not valid TOML: {e}", loc) from None
    prefix: tuple[str, ...] = ()
    if file.name == "pyproject.toml":
        prefix = PYPROJECT_TABLE
        data = data.get("tool", {}).get(PYPROJECT_TABLE[1], {})
    return _check(data, _Where(file, text, prefix))


class _Where:
    """Finds the line of a key in the file (tomllib gives values, not positions)."""

    def __init__(self, file: Path, text: str, prefix: tuple[str, ...]) -> None:
        self.file, self.lines, self.prefix = file, text.splitlines(), prefix

    def of(self, *key: str) -> Location:
        """The line where `key` (a path of table names and a key) is set: `k = ` inside
        table `[a.b]`, or a dotted `b.k = ` inside `[a]`, or the header `[a.b.k]`."""
        full = (*self.prefix, *key)
        table: tuple[str, ...] = ()
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
            if header:
                table = tuple(_split_dotted(header.group(1)))
                if table == full:
                    return Location(str(self.file), number, 1)
                continue
            m = re.match(r"^([A-Za-z0-9_\-\"'. ]+?)\s*=", stripped)
            if m and (*table, *_split_dotted(m.group(1))) == full:
                return Location(str(self.file), number, line.index(stripped[0]) + 1)
        return Location(str(self.file))


def _split_dotted(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in text.split(".")]


def _unknown(key: str, known: Any, where: Location, what: str) -> UserError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return UserError(f"unknown {what} {key!r} in the project file", where,
                     hint=hint + "known: " + ", ".join(sorted(known)))


def _check(data: dict, where: _Where) -> Project:
    project = Project(where.file)
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, where.of(key), "key")
        if key in ("db", "state_db", "memory_limit"):
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"{key} must be a string", where.of(key))
            if key == "memory_limit":
                try:
                    check_memory_limit(value)
                except ValueError as e:
                    raise UserError(f"memory_limit: {e}", where.of(key)) from None
                project.memory_limit = value
            else:
                setattr(project, key, value if value == ":memory:"
                        else str(_absolute(where.file, value)))
        elif key in ("allow_paths", "allow_hosts", "jobs"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                raise UserError(f"{key} must be a string or a list of strings", where.of(key))
            if key == "allow_hosts":
                project.allow_hosts = items
            else:
                setattr(project, key, [str(_absolute(where.file, i)) for i in items])
        elif key in HOOK_ENV:
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"{key} must be a shell command or an http(s) URL (a string)",
                                where.of(key))
            project.hooks[key] = value.strip()
        elif key == "allow_hooks":
            if not isinstance(value, bool):
                raise UserError("allow_hooks must be true or false", where.of(key))
            project.allow_hooks = value
        elif key == "daily_budget_usd":
            try:
                project.daily_budget_usd = check_usd(value)
            except ValueError as e:
                raise UserError(f"daily_budget_usd: {e}", where.of(key)) from None
        else:
            project.providers = _providers(value, where)
    return project


def _providers(value: Any, where: _Where) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise UserError("providers must be a table: [providers.openai] ...",
                        where.of("providers"))
    out: dict[str, dict[str, str]] = {}
    for name, settings in value.items():
        if _provider_env(name) is None:
            raise _unknown(name, PROVIDER_ENV, where.of("providers", name), "provider")
        if not isinstance(settings, dict):
            raise UserError(f"providers.{name} must be a table", where.of("providers", name))
        for key, v in settings.items():
            loc = where.of("providers", name, key)
            if key in ("api_key", "key", "secret", "token"):
                raise UserError("API keys never go in the project file (it is shared and "
                                "committed)", loc,
                                hint="set api_key_env = \"NAME\": the key is read from the "
                                     "environment variable NAME")
            if key not in PROVIDER_KEYS:
                raise _unknown(key, PROVIDER_KEYS, loc, f"setting of provider {name}:")
            if not isinstance(v, str) or not v:
                raise UserError(f"providers.{name}.{key} must be a string", loc)
            if key == "api_key_env" and not _ENV_NAME.fullmatch(v):
                raise UserError(f"api_key_env must name an environment variable, got {v!r}",
                                loc)
        out[name] = dict(settings)
    return out


def _absolute(file: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else file.parent / p


def apply(project: Project, env: MutableMapping[str, str]) -> None:
    """Fill in the environment variables the project file sets, where `env` does not set
    them already (the environment wins; flags win over both). Lists of allowances add up."""
    if project.db:
        env.setdefault(DB_ENV, project.db)
    if project.state_db:
        env.setdefault(STATE_DB_ENV, project.state_db)
    if project.memory_limit:
        env.setdefault(MEMORY_ENV, project.memory_limit)
    if project.daily_budget_usd is not None:
        env.setdefault(DAILY_ENV, repr(project.daily_budget_usd))
    if project.allow_paths:
        env[PATHS_ENV] = os.pathsep.join(filter(None, [env.get(PATHS_ENV),
                                                       *project.allow_paths]))
    if project.allow_hosts:
        env[HOSTS_ENV] = ",".join(filter(None, [env.get(HOSTS_ENV), *project.allow_hosts]))
    for key, value in project.hooks.items():
        if HOOK_ENV[key] not in env:
            env[HOOK_ENV[key]] = value
            env.setdefault(HOOK_DIR_ENV, str(project.folder))
    if project.allow_hooks:
        env.setdefault(ALLOW_HOOKS_ENV, "1")
    for name, settings in project.providers.items():
        url_var, key_var = _provider_env(name) or ("", "")
        if "base_url" in settings:
            env.setdefault(url_var, settings["base_url"])
        source = settings.get("api_key_env")
        if source and source in env:
            env.setdefault(key_var, env[source])


def _provider_env(name: str) -> tuple[str, str] | None:
    """(base URL variable, API key variable) of a provider: the table above, else what a
    registered provider declares (the registry is imported only for such a name)."""
    if name in PROVIDER_ENV:
        return PROVIDER_ENV[name]
    from .providers.base import provider_env

    return provider_env(name)


def defaults(env: MutableMapping[str, str], start: str | Path | None = None) -> Project | None:
    """Find the project file for a command run in `start`, apply it to `env`, return it."""
    file = find(start)
    if file is None:
        return None
    project = load(file)
    apply(project, env)
    return project


def describe(project: Project | None, env: Mapping[str, str]) -> str:
    """One line for logs: which project file is in use."""
    return f"project file {project.file}" if project else "no project file"
