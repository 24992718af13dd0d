"""Enrichment as a node of `dbt build`: a dbt-duckdb Python model that calls the library.

dbt-duckdb runs a Python model in its own process, on its own DuckDB connection, as
`model(dbt, session)` (`session` is a cursor of that connection), and materialises what it
returns. So the model a user writes is

    # models/enriched_reviews.py
    import warehouse_batch.dbt

    def model(dbt, session):
        dbt.ref("stg_reviews")      # lineage: dbt builds this model after stg_reviews
        return warehouse_batch.dbt.model(dbt, session, "enrich/reviews.sql")

and each build runs the job once on dbt's connection (`api.Options.connection`): it collects
the batches that have ended, submits rows that are new or changed, brings the job's output
table up to date and returns it; dbt then materialises it as the model, rows still in flight
with `_status = 'pending'`. It never waits for a batch: a later build picks up the answers.
Nothing opens the warehouse file a second time, so there is no lock to fight over.

The job writes its own output table (its `name`, owned by the job file as always); the model
is a copy dbt replaces on every build, so the two need different names. Every model or source
the job's SQL reads must be declared in the Python model with `dbt.ref(...)` /
`dbt.source(...)` (dbt finds a Python model's parents only in its code); an undeclared one
is refused with the line to add.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import duckdb

from .. import api
from ..dbtproject import DbtSettings, find_project_dir
from ..errors import EXIT_PENDING, UserError, WarehouseBatchError
from ..keys import redact
from ..sqlutil import quote_ident

try:   # dbt's own flags, when the model runs inside dbt (always, except in unit tests)
    from dbt.flags import get_flags
except ImportError:   # pragma: no cover - the [dbt] extra is not installed
    get_flags = None


class InBuildError(UserError):
    """The Python model and its job file do not fit together (names, lineage)."""


def _settings() -> DbtSettings:
    """dbt's project, profiles and target of the running invocation."""
    flags = get_flags() if get_flags is not None else None

    def flag(name: str) -> str | None:
        value = getattr(flags, name, None) if flags is not None else None
        return str(value) if value else None
    return DbtSettings(flag("PROJECT_DIR"), flag("PROFILES_DIR"), flag("TARGET"))


def _log(message: str) -> None:
    print(f"warehouse-batch: {redact(message)}", file=sys.stderr, flush=True)


def model(dbt: Any, session: duckdb.DuckDBPyConnection, job: str, *,
          state_db: str | None = None, max_attempts: int | None = None,
          env: dict[str, str] | None = None) -> duckdb.DuckDBPyRelation:
    """Run the job file `job` (relative to the dbt project) once on dbt's connection and
    return its output table for dbt to materialise (see the module docstring). `state_db`
    (relative to the project) keeps warehouse-batch's state in a file of its own."""
    settings = _settings()
    root, searched = find_project_dir(settings, None, env)
    if root is None:
        raise InBuildError(f"no dbt project found (looked in {'; '.join(searched)})")
    path = Path(job) if Path(job).is_absolute() else root / job
    this = getattr(dbt, "this", None)
    database = getattr(this, "database", None) or "dbt"
    options = api.Options(db=str(database), connection=session, dbt=settings,
                          env=env if env is not None else dict(os.environ), log=_log,
                          max_attempts=max_attempts,
                          **({"state_db": str(root / state_db)} if state_db else {}))
    spec = api.load(str(path), options)
    _check_names(spec.name, this, path)
    _check_lineage(dbt, spec.depends_on, path)
    try:
        report = api.run(str(path), options)
    except WarehouseBatchError as e:
        if e.exit_code != EXIT_PENDING:
            raise
        # transient provider trouble: nothing to fix; the table is as the last pass left it
        _log(f"{path.name}: the provider had transient trouble ({e}); the next build "
             "carries on")
    else:
        rows = report.rows
        _log(f"{path.name}: {rows.rows:,} rows, {rows.succeeded:,} answered, "
             f"{rows.failed:,} failed, {rows.pending:,} pending"
             + (f" (stopped: {report.stopped})" if report.stopped else ""))
    return session.sql(f"SELECT * FROM {_relation(spec.name)}")


def _relation(name: str) -> str:
    return ".".join(quote_ident(p) for p in name.split("."))


def _check_names(name: str, this: Any, path: Path) -> None:
    identifier = getattr(this, "identifier", None)
    schema = getattr(this, "schema", None)
    own_schema, _, table = name.rpartition(".")
    if identifier and table.lower() == str(identifier).lower() \
            and (own_schema or "main").lower() == str(schema or "main").lower():
        raise InBuildError(
            f"the job {path.name} writes the table {name!r}, which is this dbt model's own "
            "name: dbt replaces the model's table on every build, so the job needs a table of "
            "its own", hint=f"set name='{table}_answers' (or another name) in the job's "
                            "config")


def _check_lineage(dbt: Any, depends_on: list[str], path: Path) -> None:
    """Every model/source the job reads is declared in the Python model (dbt's lineage)."""
    for uid in depends_on:
        kind, _, rest = uid.partition(".")
        parts = rest.split(".")
        if kind == "source":
            call, args = dbt.source, parts[-2:]
        elif kind in ("model", "seed", "snapshot"):
            call, args = dbt.ref, parts[-1:]
        else:
            continue
        try:
            call(*args)
        except KeyError:
            what = "source" if kind == "source" else "ref"
            line = f"dbt.{what}({', '.join(repr(a) for a in args)})"
            raise InBuildError(
                f"the job {path.name} reads {uid}, which this Python model does not declare: "
                "dbt would not know to build it first",
                hint=f"add `{line}` to the model function, before the call to "
                     "warehouse_batch.dbt.model") from None
