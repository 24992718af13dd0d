"""The cheap poll: `status`, and `collect`/`run` while no batch has ended, in a process that
imports neither the job parser, the pipeline stages nor any provider SDK.

A sensor or cron job polls far more often than anything ends, so a poll that finds every
batch still running should cost little more than starting Python and DuckDB. `cli.py` tries
this module first for `status`, `collect` and `run` (without `--wait`): it takes the job's
facts from its last full read (`pollfacts`), reads the ledger read-only, asks the provider
for each batch with a plain GET (`lightpoll`), and, only if every batch is still in
progress, records the polls in one short write and returns the library's own report
(`reports.StatusReport` / `reports.RunReport`). Anything else returns None and the CLI
takes the library's ordinary path (`api`), which decides and does everything: a batch that
ended or is unknown, facts that are missing or stale, an output table missing, rows that
failed (their count depends on the attempt budget), a provider answer it does not expect.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import duckdb

from .budget import held
from .db import DEFAULT_LOCK_TIMEOUT, Target, let_go, reading, write_again
from .errors import BusyError, WarehouseBatchError
from .ledger import BatchProviders, record_poll, submitted_batches, unfinished_batches
from .lightpoll import light_retrieve
from .paths import make_scope
from .pollfacts import JobFacts, recall, state_db_named_in
from .providers.base import LedgerBatch, RemoteBatch, get_provider
from .reports import RowCounts, RunReport, StatusReport, Timed, job_cost, new_run_id
from .sqlutil import quote_ident
from .state import SCHEMA, fetch_dicts


@dataclass
class PollRequest:
    """A poll as the command line asks for it (the subset of `api.Options` it needs)."""

    job: str
    db: str
    command: str                          # 'status', 'collect' or 'run'
    vars: dict[str, Any] = field(default_factory=dict)
    max_attempts: int | None = None
    allowed_paths: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    memory_limit: str | None = None
    env: Mapping[str, str] | None = None
    log: Callable[[str], None] = lambda message: None
    state_db: str | None = None           # the state's own file: the warehouse is not opened
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    clock: Any = None

    def target(self) -> Target:
        return Target(db=self.db, state_db=self.state_db, lock_timeout=self.lock_timeout,
                      clock=self.clock)


# -- the poll ----------------------------------------------------------------------------------

def try_status(req: PollRequest) -> StatusReport | None:
    """`status` when every batch of the job is still running, else None."""
    started = Timed()
    started.start()
    found = _poll(req, may_send=False)
    if found is None:
        return None
    report = StatusReport(found.facts.name, found.batches, found.rows, held=found.held)
    report.started_like(started)
    report.finish(found.cost_usd)
    return report


def try_poll(req: PollRequest) -> RunReport | None:
    """`collect` (or `run`: `may_send`) when it would only poll: every batch of the job is
    still running (and, for `run`, nothing is half-submitted and the job file is unchanged
    since the source was last read); else None."""
    started = Timed()
    started.start()
    found = _poll(req, may_send=req.command == "run")
    if found is None:
        return None
    report = RunReport(run_id=new_run_id(), job=found.facts.name, command=req.command,
                        table=found.facts.name, rows=found.rows, polls=1)
    report.started_like(started)
    report.finish(found.cost_usd)
    c = report.collected
    c.batches_polled = c.batches_in_progress = len(found.remotes)
    c.statuses = {r.provider_batch_id: r.status for r in found.remotes}
    req.log(f"{len(found.remotes)} batch(es) in progress, none ended: nothing else to do")
    return report


@dataclass
class _Found:
    facts: JobFacts
    rows: RowCounts
    remotes: list[RemoteBatch]
    batches: list[dict]          # every batch of the job, as recorded after the polls
    cost_usd: float | None = None
    held: dict | None = None     # rows the latest submit held back for a budget cap


def _poll(req: PollRequest, *, may_send: bool) -> _Found | None:
    """Poll the job's batches if this process can decide alone that nothing else is to be
    done; record the polls and return what was found, else None."""
    scope = make_scope(req.job, req.env, req.allowed_paths, req.allowed_hosts)
    # a state database named only in the job file (the command line and the environment
    # win): found without parsing the file, and trusted only if the facts recorded there
    # came from a full read of these bytes that resolved the same file
    named = None if req.state_db else state_db_named_in(req.job, scope)
    where = req.target() if named is None else replace(req.target(), state_db=named)
    try:
        with reading(where, req.memory_limit) as con:
            if con is None:
                return None
            facts = recall(con, req.job, scope, req.vars, req.max_attempts, req.env)
            if facts is None or (named is not None and facts.job_state_db != named):
                return None
            batches = submitted_batches(con, facts.name)
            if not batches or (may_send and unfinished_batches(con, facts.name)):
                return None
            hold = held(con, facts.name)
            if may_send and hold:
                return None   # rows held back by a budget cap: the library sends them if it can
            if where.state_db:   # the warehouse is not opened: counts from the state
                job_hash = recorded_output(con, (facts.table_schema, facts.table_name))
                if job_hash is None or (may_send and job_hash[1] != facts.fingerprint):
                    return None
                rows = state_row_counts(con, facts.name)
                if rows.failed:
                    return None
            else:
                output = _output(con, facts)
                if output is None or (may_send and output[1] != facts.fingerprint):
                    return None
                rows = _row_counts(con, output[0])
                if rows is None:
                    return None
            cost = job_cost(con, facts.name)
            let_go(con, where)   # no lock on the file while the provider is asked
            providers = BatchProviders(get_provider(facts, req.env))   # type: ignore[arg-type]
            polled: list[tuple[LedgerBatch, RemoteBatch]] = []
            for batch in batches:
                remote = light_retrieve(providers.for_batch(batch), batch)
                if remote is None:
                    return None   # ended, or not a plain answer: the library decides
                polled.append((batch, remote))
            # the read-only look found the state schema current: no migration check here
            write_again(con, where)
            record_polls(con, polled)
            listed = job_batches(con, facts.name) if req.command == "status" else []
    except BusyError:
        raise   # waited the whole --lock-timeout already: the library would wait again
    except (WarehouseBatchError, duckdb.Error):
        return None   # the library path says so properly
    return _Found(facts, rows, [r for _, r in polled], listed, cost, hold)


def _output(con: duckdb.DuckDBPyConnection, facts: JobFacts) -> tuple[str, str | None] | None:
    """The output table (qualified) and the job hash recorded with it, when it exists and
    was built in full (has a shape); else None."""
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    key = [facts.table_schema.lower(), facts.table_name.lower()]
    exists = con.execute("""SELECT count(*) FROM duckdb_tables() WHERE database_name = ?
        AND NOT temporary AND lower(schema_name) = ? AND lower(table_name) = ?""",
                         [catalog, *key]).fetchone()[0]
    row = con.execute(f"SELECT shape, job_hash FROM {SCHEMA}.outputs WHERE table_schema = ? "
                      "AND table_name = ?", key).fetchone()
    if not exists or row is None or row[0] is None:
        return None
    qualified = ".".join(quote_ident(p) for p in (catalog, facts.table_schema,
                                                  facts.table_name))
    return qualified, row[1]


def _row_counts(con: duckdb.DuckDBPyConnection, qualified: str) -> RowCounts | None:
    """The output table's rows by `_status`; None when some show `failed` (whether they
    are final depends on the attempt budget: `output.count_rows` judges them)."""
    counts = dict(con.execute(f"SELECT _status, count(*) FROM {qualified} GROUP BY 1")
                  .fetchall())
    if counts.get("failed"):
        return None
    rows, succeeded = sum(counts.values()), counts.get("succeeded", 0)
    return RowCounts(rows=rows, succeeded=succeeded, pending=rows - succeeded)


def recorded_output(con: duckdb.DuckDBPyConnection, key: tuple[str, str]
                    ) -> tuple[str, str | None] | None:
    """(shape, job hash) recorded for the output table `key` (schema, table) when it was last
    built in full; None before that. Read from the state only (the warehouse may not be open:
    with a state database a poll trusts the state that the table was built)."""
    row = con.execute(f"SELECT shape, job_hash FROM {SCHEMA}.outputs WHERE table_schema = ? "
                      "AND table_name = ?", [key[0].lower(), key[1].lower()]).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def state_row_counts(con: duckdb.DuckDBPyConnection, job_name: str) -> RowCounts:
    """The job's rows by status from the state alone (`job_rows` against the answer cache):
    what a poll reports when it does not open the warehouse (a state database is in use)."""
    row = con.execute(f"""SELECT count(*),
            count(*) FILTER (WHERE r.status = 'succeeded'),
            count(*) FILTER (WHERE r.status = 'failed' AND NOT r.retryable)
        FROM {SCHEMA}.job_rows j LEFT JOIN {SCHEMA}.results r USING (request_hash)
        WHERE j.job_name = ?""", [job_name]).fetchone()
    return RowCounts(rows=row[0], succeeded=row[1], failed=row[2],
                     pending=row[0] - row[1] - row[2])


def record_polls(con: duckdb.DuckDBPyConnection,
                 polled: list[tuple[LedgerBatch, RemoteBatch]]) -> None:
    """Record what the polls found, in one transaction (one commit, not one per batch)."""
    con.execute("BEGIN TRANSACTION")
    try:
        for batch, remote in polled:
            record_poll(con, batch, remote)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def job_batches(con: duckdb.DuckDBPyConnection, job_name: str) -> list[dict]:
    """Every batch of the job as `status` shows it (ledger rows, JSON-ready)."""
    batches = fetch_dicts(con, f"""SELECT batch_id, provider, provider_batch_id, state,
        provider_status, proven, request_count, bytes, counts, created_at, submitted_at,
        collected_at, error FROM {SCHEMA}.batches WHERE job_name = ? ORDER BY batch_id""",
                          [job_name])
    for b in batches:
        b["counts"] = json.loads(b["counts"]) if b["counts"] else None
        b.update(progress(b["counts"], b["request_count"]))
        for k in ("created_at", "submitted_at", "collected_at"):
            b[k] = (b[k].replace(tzinfo=dt.timezone.utc).isoformat() if b[k] else None)
    return batches


def progress(counts: dict | None, request_count: int | None) -> dict:
    """`completed`, `failed` and `total` requests of a batch from the counts its provider last
    reported (OpenAI and Azure: `completed`, `failed`, `total`; Anthropic: `succeeded`,
    `errored`, `canceled`, `expired`, `processing`). `completed + failed` of `total` have been
    processed; None where the provider has not reported yet (`total`: the ledger's count)."""
    if not counts:
        return {"completed": None, "failed": None, "total": request_count}
    if "succeeded" in counts or "processing" in counts:   # Anthropic
        failed = sum(int(counts.get(k) or 0) for k in ("errored", "canceled", "expired"))
        total = sum(int(v or 0) for v in counts.values() if isinstance(v, int))
        return {"completed": int(counts.get("succeeded") or 0), "failed": failed,
                "total": total or request_count}
    return {"completed": int(counts.get("completed") or 0),
            "failed": int(counts.get("failed") or 0),
            "total": int(counts.get("total") or 0) or request_count}
