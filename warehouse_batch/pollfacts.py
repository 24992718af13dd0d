"""What a poll needs to know about a job, remembered from the job's last full read.

Reading a job file in full (`spec.load_job`) binds its SQL, checks its templates and
parameters: it imports the SQL checker and Jinja, which alone cost about half of a poll's
CPU budget. A poll needs only a few facts from it: the job's name, provider and provider
settings, `max_attempts`, its output table, and its fingerprint (`JobSpec.fingerprint`: has
the job changed since the source was last read?). So every command that reads the job in
full records those facts (`remember`, into `warehouse_batch.meta`, one row per job file),
with a digest of everything they were derived from: the job file's bytes, the template and
schema files it names, `--var` values, the `--max-attempts` override, the operator's scope
(allowed folders and hosts), the current directory and the package version. A later poll
(`pollpath`) uses them only while that digest is unchanged; otherwise it reads the job in
full like any other command.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import duckdb

from . import __version__
from .errors import Location
from .paths import Scope
from .state import SCHEMA

if TYPE_CHECKING:   # annotations only: this module must not import the job parser
    from .spec import JobSpec

FACTS_VERSION = 1
KEY_PREFIX = "poll_facts:"


@dataclass
class JobFacts:
    """The part of a `JobSpec` a poll needs. A provider can be built on it (it reads the
    same attributes: `provider`, `provider_options`, `scope`, `location_of`)."""

    path: str
    name: str
    provider: str
    provider_options: dict[str, Any]
    max_attempts: int
    fingerprint: str
    table_schema: str
    table_name: str
    files: list[str] = field(default_factory=list)   # files the job names, resolved
    digest: str = ""
    scope: Scope | None = None
    job_state_db: str | None = None   # the `state_db` the job file names, resolved
    env_names: list[str] = field(default_factory=list)   # variables its env_var() read

    def location_of(self, key: str) -> Location:
        return Location(self.path, 1, 1)

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("scope")
        d.pop("path")
        return json.dumps(d, sort_keys=True, default=str)


def facts_key(job_path: str) -> str:
    return KEY_PREFIX + str(Path(job_path).resolve())


def inputs_digest(job_path: str, scope: Scope, vars: Mapping[str, Any],
                  max_attempts: int | None, files: list[str],
                  env_values: Mapping[str, str | None] | None = None) -> str | None:
    """A digest of everything the facts of `job_path` are derived from (with the values of
    the variables its `env_var()` read: a changed one changes the job); None when a file
    cannot be read (then there are no facts to use)."""
    said = {"version": FACTS_VERSION, "package": __version__, "cwd": os.getcwd(),
            "job": str(Path(job_path).resolve()), "vars": vars, "max_attempts": max_attempts,
            "scope": [str(scope.job_dir), [str(r) for r in scope.roots], sorted(scope.hosts)],
            "files": files, "env": dict(env_values or {})}
    h = hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode("utf-8"))
    for name in [job_path, *files]:
        try:
            data = Path(name).read_bytes()
        except OSError:
            return None
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def remember(con: duckdb.DuckDBPyConnection, spec: JobSpec, table_key: tuple[str, str],
             vars: Mapping[str, Any], max_attempts: int | None,
             env: Mapping[str, str] | None = None) -> None:
    """Record the facts of `spec` (just read in full, with these `--var` values,
    `--max-attempts` override and environment) for later polls; writes only when they
    changed."""
    files = named_files(spec)
    if spec.scope is None:
        return
    digest = inputs_digest(spec.path, spec.scope, vars, max_attempts, files,
                           _env_values(spec.env_names, env))
    if digest is None:
        return
    facts = JobFacts(path=spec.path, name=spec.name, provider=spec.provider,
                     provider_options=dict(spec.provider_options),
                     max_attempts=spec.max_attempts, fingerprint=spec.fingerprint(),
                     table_schema=table_key[0], table_name=table_key[1], files=files,
                     digest=digest, job_state_db=spec.state_db,
                     env_names=list(spec.env_names))
    key, value = facts_key(spec.path), facts.to_json()
    if con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = ?", [key]).fetchone() \
            != (value,):
        con.execute(f"INSERT OR REPLACE INTO {SCHEMA}.meta VALUES (?, ?)", [key, value])


def recall(con: duckdb.DuckDBPyConnection, job_path: str, scope: Scope,
           vars: Mapping[str, Any], max_attempts: int | None,
           env: Mapping[str, str] | None = None) -> JobFacts | None:
    """The facts recorded for `job_path`, if everything they came from is unchanged."""
    row = con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = ?",
                      [facts_key(job_path)]).fetchone()
    if row is None:
        return None
    try:
        facts = JobFacts(path=job_path, **json.loads(row[0]))
    except (TypeError, ValueError):
        return None   # written by another version
    if inputs_digest(job_path, scope, vars, max_attempts, facts.files,
                     _env_values(facts.env_names, env)) != facts.digest:
        return None
    facts.scope = scope
    return facts


def _env_values(names: list[str], env: Mapping[str, str] | None) -> dict[str, str | None]:
    source = os.environ if env is None else env
    return {name: source.get(name) for name in names}


_STATE_DB = re.compile(r"""\bstate_db\s*=\s*(['"])([^'"\n]+)\1""")


def state_db_named_in(job_path: str, scope: Scope) -> str | None:
    """The `state_db` a job file seems to name in its config, found without parsing the file
    (a poll does not import the parser), resolved as the parser does; None if none is seen or
    it lies outside the job's scope. Only a hint: `recall` uses the facts found there only
    when a full read of these very bytes recorded the same `job_state_db`."""
    try:
        text = Path(job_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = _STATE_DB.search(text)
    if m is None or not scope.allows(m.group(2)):
        return None
    return str(scope.resolve(m.group(2)))


def named_files(spec: JobSpec) -> list[str]:
    """The files `spec` was read from besides the job file (prompt, system prompt, output
    schema), resolved."""
    files = [t.file for t in (spec.prompt, spec.system)
             if t is not None and t.file != spec.path]
    if spec.output_schema_file is not None:
        files.append(spec.output_schema_file)
    files.extend(spec.dbt_files)   # a changed dbt manifest may move what ref() reads
    return files
