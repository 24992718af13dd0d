"""Many jobs in one command: which job files the paths, folders and globs on a command line
name, which of them `--select` / `--exclude` keep, and which sets are refused before anything
runs (two jobs writing the same output table, a `--var` no job uses).

* A **file** named on the command line (or matched by a glob) is a job file, whatever it
  holds: a file that is not one is an error, as it is for a single job.
* A **folder** stands for every `*.sql` file directly inside it, sorted by name, that is a job
  file: its `{{ config(...) }}` block names a `provider`. Other `.sql` files (dbt models,
  plain SQL, prompt files) are skipped and listed as skipped; nested folders and hidden files
  are not looked into.
* A **glob** (`'enrich/*.sql'`, quoted so the shell leaves it alone) is expanded here, sorted;
  a glob matching nothing is an error.

The same file named twice runs once. Selection matches a job by `tag:<tag>` (the job's
`tags=[...]`) or by a name pattern (`fnmatch`, case-insensitive) against the job file's stem
and its output table's `name`.
"""
from __future__ import annotations

import difflib
import fnmatch
import glob as globmod
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .db import attach_alias
from .errors import EXIT_FAILED_ROWS, EXIT_INTERNAL, EXIT_OK, EXIT_PENDING, EXIT_PROVIDER, \
    EXIT_USER, JobFileError, UserError, WarehouseBatchError

if TYPE_CHECKING:   # the CLI imports this module on the cheap poll's path: no job parser
    from .spec import JobSpec

_GLOB = re.compile(r"[*?\[]")
_CONFIG = re.compile(r"\{\{-?\s*config\s*\(")
_PROVIDER_KEY = re.compile(r"\bprovider\s*=")

# The exit code of a command over many jobs is the most severe of theirs, in this order:
# a bug, then what a person must fix (job/data/command, then the provider), then work still
# pending (come back later: a set that is pending is not finished, even if rows failed
# elsewhere), then rows that failed for good, then done.
SEVERITY = (EXIT_INTERNAL, EXIT_USER, EXIT_PROVIDER, EXIT_PENDING, EXIT_FAILED_ROWS, EXIT_OK)


def most_severe(codes: Iterable[int]) -> int:
    """The exit code of a set of jobs: the most severe of `codes` (0 for none)."""
    rank = {code: i for i, code in enumerate(SEVERITY)}
    return min(codes, key=lambda c: rank.get(c, 0), default=EXIT_OK)


@dataclass
class Skipped:
    """A `.sql` file in a folder that is not a job file."""

    file: str
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


@dataclass
class Member:
    """One job file of the set: its spec when it loaded, else the error it gave."""

    file: str
    spec: JobSpec | None = None
    error: WarehouseBatchError | None = None
    vars: dict[str, Any] = field(default_factory=dict)   # the --vars this job uses

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else Path(self.file).stem


@dataclass
class JobSet:
    members: list[Member]
    skipped: list[Skipped]


def is_set(paths: Iterable[str]) -> bool:
    """Whether the command line names more than one plain job file (a folder, a glob, or
    several paths): the command then reports per job (`--json`: a list of reports)."""
    paths = list(paths)
    return len(paths) != 1 or Path(paths[0]).is_dir() or (
        bool(_GLOB.search(paths[0])) and not Path(paths[0]).exists())


def expand(paths: Iterable[str]) -> tuple[list[str], list[Skipped]]:
    """The job files `paths` name, in order, each once; and the folder files skipped."""
    files: list[str] = []
    skipped: list[Skipped] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found, passed = _folder(p)
            files += found
            skipped += passed
        elif p.exists() or p.is_symlink():
            files.append(raw)
        elif _GLOB.search(raw):
            matches = sorted(globmod.glob(raw))
            if not matches:
                raise UserError(f"no file matches {raw!r}")
            for m in matches:
                if Path(m).is_dir():
                    found, passed = _folder(Path(m))
                    files += found
                    skipped += passed
                else:
                    files.append(m)
        else:
            raise UserError(f"no such job file or folder: {raw}")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = Path(f).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, skipped


def _folder(folder: Path) -> tuple[list[str], list[Skipped]]:
    jobs, skipped = [], []
    for f in sorted(folder.iterdir(), key=lambda p: p.name):
        if f.name.startswith(".") or f.suffix.lower() != ".sql" or not f.is_file():
            continue
        why = _not_a_job(f)
        if why is None:
            jobs.append(str(f))
        else:
            skipped.append(Skipped(str(f), why))
    return jobs, skipped


def _not_a_job(f: Path) -> str | None:
    """Why a `.sql` file in a folder is not taken as a job file, or None if it is one."""
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return f"cannot be read as UTF-8 text: {e}"
    m = _CONFIG.search(text)
    if m is None:
        return "no {{ config(...) }} block: not a job file"
    if not _PROVIDER_KEY.search(text, m.end()):
        return "its config block names no provider: not a job file (a dbt model?)"
    return None


def load_set(files: list[str], load: Callable[[str, dict[str, Any]], JobSpec],
             vars: dict[str, Any]) -> list[Member]:
    """Load every job file with `load(path, vars)`; a file that fails is kept with its error.

    `--var`s are shared: each job gets the ones it uses (`spec.parse_job`'s
    `unused_vars`), and a var no job uses is refused (as it is for one job)."""
    members = []
    for f in files:
        member = Member(f)
        try:
            member.spec = load(f, vars)
            member.vars = {k: v for k, v in vars.items()
                           if k not in member.spec.unused_vars}
        except WarehouseBatchError as e:
            member.error = e
        members.append(member)
    loaded = [m.spec for m in members if m.spec is not None]
    if loaded:
        for name in sorted(vars):
            if all(name in s.unused_vars for s in loaded):
                raise UserError(f"--var {name} is not used by any of the jobs",
                                hint="each --var must be used by at least one job "
                                     "(var('…') in its SQL, vars.… in its prompt or system)")
    return members


def select(members: list[Member], selects: Iterable[str],
           excludes: Iterable[str]) -> list[Member]:
    """The members `selects` keep (all when none) minus those `excludes` match. A selector
    that matches no job at all is an error (a typo would otherwise select nothing)."""
    selects, excludes = list(selects), list(excludes)
    for sel in selects + excludes:
        if not any(_matches(sel, m) for m in members):
            raise UserError(f"--select/--exclude {sel!r} matches no job",
                            hint=_suggest(sel, members))
    kept = [m for m in members if not selects or any(_matches(s, m) for s in selects)]
    return [m for m in kept if not any(_matches(e, m) for e in excludes)]


def _matches(selector: str, m: Member) -> bool:
    if selector.startswith("tag:"):
        tag = selector[4:].lower()
        return m.spec is not None and any(str(t).lower() == tag for t in m.spec.tags)
    pattern = selector.lower()
    names = {Path(m.file).stem.lower(), m.name.lower()}
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def _suggest(selector: str, members: list[Member]) -> str:
    if selector.startswith("tag:"):
        known = sorted({f"tag:{t}" for m in members if m.spec for t in m.spec.tags})
    else:
        known = sorted({n for m in members for n in (Path(m.file).stem, m.name)})
    close = difflib.get_close_matches(selector, known, n=1)
    listed = ", ".join(known[:20]) or "none"
    return (f"did you mean {close[0]!r}? " if close else "") + f"known: {listed}"


def output_key(spec: JobSpec, db: str) -> tuple[str, str]:
    """(schema, table) of the job's output table, lower case, as `ownership.resolve_output`
    would place it in the database file `db` (without opening it): the file's own catalog
    part is dropped."""
    parts = [p.lower() for p in spec.name.split(".")]
    own = attach_alias(db).lower()
    if len(parts) == 3:
        return parts[1], parts[2]
    if len(parts) == 2:
        return ("main", parts[1]) if parts[0] == own else (parts[0], parts[1])
    return "main", parts[0]


def refuse_clashes(members: list[Member], db: str) -> None:
    """Refuse the set (before anything runs) when two of its jobs write the same output
    table: each would replace the other's rows on every run."""
    seen: dict[tuple[str, str], Member] = {}
    for m in members:
        if m.spec is None:
            continue
        key = output_key(m.spec, db)
        if key in seen:
            first = seen[key]
            raise JobFileError(
                f"this job and {first.file} both write the output table {'.'.join(key)}; "
                "nothing was run", m.spec.location_of("name"),
                hint="give each job its own name=..., or run them separately")
        seen[key] = m
