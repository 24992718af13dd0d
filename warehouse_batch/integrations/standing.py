"""Where a job stands, judged without doing any of its work: what a Dagster sensor and an
Airflow trigger decide on between two passes of the library (`api.run`).

Both wait for hours while batches run and ask often, so a look must cost little and must not
get in the way of anything else using the DuckDB file: it tries the CLI's cheap poll first
(`pollpath`: the ledger read read-only, one plain GET per batch, the polls recorded in one
short write), and when that cannot decide alone it reads the job file and the ledger
read-only and asks the provider for each batch (`lightpoll.retrieve`), writing nothing. It
never reads the source, never builds the output table, never holds a lock while it waits.

A lock conflict or any other "come back later" (`WarehouseBatchError.exit_code == 75`)
propagates: the caller waits and looks again (`later`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import api
from ..attempts import set_command
from ..db import reading
from ..errors import EXIT_PENDING, ProviderError, WarehouseBatchError
from ..ledger import BatchProviders, is_not_found, submitted_batches, unfinished_batches
from ..lightpoll import retrieve
from ..output import count_rows
from ..ownership import resolve_output, stored_shape
from ..pollpath import PollRequest, try_poll
from ..providers.base import get_provider
from ..reports import RowCounts, RunReport
from ..state import SCHEMA

RUNNING = "running"          # batches in flight, none ended: nothing to do yet
READY = "ready"              # a pass would move something: collect, resume or send
DONE = "done"                # nothing in flight, no row pending (answered, or failed)
NOT_STARTED = "not_started"  # never submitted: start it by running the job (the asset/task)


@dataclass
class Standing:
    """Where a job stands: one of RUNNING, READY, DONE, NOT_STARTED, and why."""

    state: str
    reason: str
    batches_in_flight: int = 0
    rows: RowCounts | None = None    # the output table's rows by status, when there is one
    statuses: dict[str, str] = field(default_factory=dict)   # provider batch id -> status


def later(error: BaseException) -> bool:
    """Whether an error means "try again later" (exit 75): a lock held by another process,
    transient provider trouble. Decided by the exit code, never by the message text."""
    return isinstance(error, WarehouseBatchError) and error.exit_code == EXIT_PENDING


def look(job: str, options: api.Options) -> Standing:
    """Where `job` stands now (see the module docstring). Raises what the library raises;
    `later(error)` tells which errors are worth waiting out."""
    quick = try_poll(PollRequest(
        job=job, db=options.db, command="collect", vars=options.vars,
        max_attempts=options.max_attempts, allowed_paths=options.allowed_paths,
        allowed_hosts=options.allowed_hosts, memory_limit=options.memory_limit,
        env=options.env))
    if quick is not None:
        c = quick.collected
        return Standing(RUNNING, f"{c.batches_in_progress} batch(es) in progress, none ended",
                        c.batches_in_progress, quick.rows, dict(c.statuses))
    return _look_in_full(job, options)


def _look_in_full(job: str, options: api.Options) -> Standing:
    """`look` when the cheap poll cannot decide alone: the job file read, the ledger read
    read-only, each batch asked through its provider. Writes nothing."""
    spec = api.load(job, options)
    if options.db != ":memory:" and not os.path.exists(options.db):
        return Standing(NOT_STARTED, f"{options.db} does not exist yet")
    with reading(options.db, spec.memory_limit) as con:
        if con is None:   # no state yet, or a state schema a pass has to upgrade first
            return Standing(NOT_STARTED, f"{options.db} has no current warehouse_batch "
                                         "state (never run, or older than this version)")
        batches = submitted_batches(con, spec.name)
        unfinished = unfinished_batches(con, spec.name)
        rows, unsent = None, 0
        if stored_shape(con, spec) is not None:
            table = resolve_output(con, spec)
            set_command(con, None, False)
            rows = count_rows(con, table, spec.max_attempts)
            # rows the table shows `pending` (not those shown `failed` with a command's
            # attempts spent: sending them again is the next scheduled run's call, else a
            # request that keeps failing would be sent at every tick)
            unsent = con.execute(f"SELECT count(*) FROM {table.qualified} "
                                 "WHERE _status = 'pending'").fetchone()[0]
    if unfinished:
        return Standing(READY, f"{len(unfinished)} batch(es) not yet created", len(batches),
                        rows)
    providers = BatchProviders(get_provider(spec, options.env))
    statuses: dict[str, str] = {}
    for batch in batches:
        try:
            remote = retrieve(providers.for_batch(batch), batch)
        except ProviderError as e:
            if is_not_found(e):
                return Standing(READY, f"the provider no longer knows batch "
                                       f"{batch.provider_batch_id}", len(batches), rows)
            if e.retryable:   # a blip while batches run (even "unreachable"): ask again later
                return Standing(RUNNING, f"provider trouble, looking again later: {e}",
                                len(batches), rows, statuses)
            raise
        statuses[remote.provider_batch_id] = remote.status
        if remote.ended:
            return Standing(READY, f"batch {remote.provider_batch_id} ended ({remote.status})",
                            len(batches), rows, statuses)
    if batches:
        return Standing(RUNNING, f"{len(batches)} batch(es) in progress, none ended",
                        len(batches), rows, statuses)
    if rows is None:
        return Standing(NOT_STARTED, "the job has no output table yet")
    if unsent:
        return Standing(READY, f"{unsent:,} row(s) pending and no batch in flight", 0, rows)
    return Standing(DONE, "no batch in flight and no row pending", 0, rows)


def cost_so_far(options: api.Options, job_name: str) -> float | None:
    """What the job's answers cost so far at batch prices (`warehouse_batch.costs`), read
    read-only; None when nothing is priced yet or the file cannot be read now."""
    try:
        with reading(options.db, options.memory_limit) as con:
            if con is None:
                return None
            row = con.execute(f"SELECT sum(cost_usd) FROM {SCHEMA}.costs WHERE job_name = ?",
                              [job_name]).fetchone()
    except WarehouseBatchError:
        return None
    return None if row is None or row[0] is None else float(row[0])


def summary(report: RunReport, cost: float | None) -> dict[str, int | float | str | None]:
    """A pass's report flattened for an orchestrator's metadata: rows by status, what was
    sent, what is in flight, the cost so far, why it stopped early (if it did)."""
    rows = report.rows
    return {
        "rows": rows.rows, "succeeded": rows.succeeded, "failed": rows.failed,
        "pending": rows.pending,
        "requests_sent": report.submitted.requests_submitted,
        "batches_created": report.submitted.batches_created,
        "batches_collected": report.collected.batches_collected,
        "batches_in_progress": report.collected.batches_in_progress,
        "cost_usd": cost,
        "stopped": report.stopped,
        "run_id": report.run_id,
        "table": report.table,
    }
