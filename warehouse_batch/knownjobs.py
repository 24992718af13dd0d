"""Every job a state database knows, so one scheduled command (`collect --all`, `run --all`)
serves them all.

A job is known once a command has claimed its output table: `warehouse_batch.outputs` records
the table, the job's name and its job file (absolute, symlinks resolved; `ownership.py`), so
each job can be read again from its file. A file that is no longer there (moved, renamed,
deleted) is reported as such, with what to do, rather than skipped in silence: its batches may
still be running, and only its job file can collect them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .db import Target, reading, require_exists, session
from .errors import UserError
from .identity import sql_literal
from .state import SCHEMA


@dataclass
class KnownJob:
    """A job file the state knows, with the output table(s) it claimed."""

    job_file: str                       # as recorded (resolved when it was claimed)
    job_names: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)   # schema.table, lower case

    @property
    def exists(self) -> bool:
        return Path(self.job_file).is_file()

    def moved(self) -> UserError:
        """The error reported for a job whose file is gone."""
        tables = ", ".join(self.tables)
        schema, table = self.tables[0].split(".", 1)
        return UserError(
            f"the job file {self.job_file} of job {', '.join(self.job_names)} (output table "
            f"{tables}) no longer exists: it was moved, renamed or deleted; its batches can "
            "be collected only through its job file",
            hint="run the job once from its new place, after handing the table over: UPDATE "
                 f"{SCHEMA}.outputs SET job_file = '/new/path/job.sql' WHERE table_schema = "
                 f"{sql_literal(schema)} AND table_name = {sql_literal(table)}; or, to forget "
                 f"a job that is gone for good, DELETE FROM {SCHEMA}.outputs WHERE "
                 f"table_schema = {sql_literal(schema)} AND table_name = {sql_literal(table)}")


def known_jobs(db: str, state_db: str | None = None, lock_timeout: float | None = None
               ) -> list[KnownJob]:
    """The job files the state of `db` (or the state database `state_db`) knows, sorted by
    path, each once. A missing database (or state database) is an error naming it; a state
    written by an older version is upgraded first (as any command on a job would)."""
    kw = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
    where = Target(db=db, state_db=state_db, **kw)
    if state_db and not os.path.exists(state_db):
        raise UserError(f"the state database {os.path.abspath(state_db)} does not exist",
                        hint="check --state-db (or $WAREHOUSE_BATCH_STATE_DB)")
    if not state_db:
        require_exists(where)
    with reading(where) as con:
        rows = _rows(con) if con is not None else None
    if rows is None and _has_state(where):   # an older version's state: bring it up first,
        with session(where, create=False, warehouse="none") as con:   # as any command would
            rows = _rows(con)
    jobs: dict[str, KnownJob] = {}
    for schema, table, job_file, job_name in rows or []:
        path = str((Path.cwd() / job_file).resolve()) if not os.path.isabs(job_file) \
            else job_file   # a row backfilled at upgrade may hold the path as typed
        job = jobs.setdefault(path, KnownJob(path))
        if job_name not in job.job_names:
            job.job_names.append(job_name)
        job.tables.append(f"{schema}.{table}")
    return [jobs[k] for k in sorted(jobs)]


def _has_state(where: Target) -> bool:
    """Whether the file holds a warehouse-batch state at all (of any version): a file with
    none knows no job, and is not given one by looking."""
    path = where.state_db or where.db
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error:
        return True   # held by another process: the session waits for it and decides
    try:
        return bool(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = 'schema_migrations'",
            ["main" if where.state_db else SCHEMA]).fetchone()[0])
    finally:
        con.close()


def _rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"""SELECT table_schema, table_name, job_file, job_name
        FROM {SCHEMA}.outputs ORDER BY job_file, table_schema, table_name""").fetchall()
