"""Bringing answers home: poll batches, stream result files into DuckDB, classify every line.

For each submitted batch of the job: ask the provider for its state; when it has ended
(completed, failed, expired, cancelled — all of them may hold paid answers), download its
result files (streamed to disk), read their lines in place (`jsonl.load_lines`), map each
line to our result shape with the provider's SQL (one parse per line), and fold the outcomes
into `attempts` and `results` in the same transaction that marks the batch `collected`
(several batches share a transaction: `CommitGroup`). A custom_id found in no file is
`missing`: not processed, sent again. Only after the commit are the provider's files
deleted.

Each batch is polled, downloaded and parsed through the provider recorded in its ledger row
(`ledger.BatchProviders`). A batch the provider no longer knows (404, confirmed) is marked
`lost`. An adopted batch not yet proven ours is checked when it ends: its custom_ids must be
exactly ours, or it is released as foreign and nothing is recorded from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import duckdb

from .reports import CollectReport
from . import faults
from .budget import settle
from .jsonl import load_lines
from .ledger import (BatchProviders, release_foreign, retrieve_or_lose, submitted_batches,
                     update_batch)
from .outcomes import build_outcomes, fail_all, merge_outcomes
from .providers.base import LedgerBatch, Provider, RemoteBatch
from .scratch import scratch_dir
from .sqlutil import load_sql
from .state import SCHEMA, now_utc
from .tuning import collect_tuning

COMMIT_ROWS = 1_000_000   # requests recorded per transaction (see CommitGroup)


def poll(con: duckdb.DuckDBPyConnection, provider: Provider,
         batch: LedgerBatch) -> RemoteBatch | None:
    """The batch's state, recorded in the ledger; None when the provider no longer knows it
    (then it is marked `lost`)."""
    remote = retrieve_or_lose(con, provider, batch)
    if remote is None:
        return None
    update_batch(con, batch.batch_id, provider_status=remote.status, counts=remote.counts,
                 last_polled_at=now_utc(), output_file_id=remote.output_file_id,
                 error_file_id=remote.error_file_id,
                 **({"ended_at": now_utc()} if remote.ended else {}))
    return remote


def collect_ready(con: duckdb.DuckDBPyConnection, provider: Provider, job_name: str,
                  log: Callable[[str], None] = lambda m: None) -> CollectReport:
    """Poll every submitted batch of the job (each through its own provider) and ingest
    those that have ended, recording them in transactions of about COMMIT_ROWS requests."""
    report = CollectReport()
    providers = BatchProviders(provider)
    with collect_tuning(con), CommitGroup(con, report) as group:
        batches = submitted_batches(con, job_name)
        for batch in batches:
            batch_provider = providers.for_batch(batch)
            remote = poll(con, batch_provider, batch)
            report.batches_polled += 1
            if remote is None:
                note_lost(con, batch, report)
                continue
            report.statuses[remote.provider_batch_id] = remote.status
            if not remote.ended:
                report.batches_in_progress += 1
                continue
            log(f"collecting batch {remote.provider_batch_id} ({remote.status})")
            if group.maybe_cached is None:   # once per pass, and only if something ended
                con.execute(load_sql("maybe_cached.sql"), {"job_name": job_name})
                group.maybe_cached = "wb_maybe_cached"
            if ingest(con, batch_provider, batch, remote, report, group):
                report.batches_collected += 1
            else:
                report.batches_released += 1
    return report


class CommitGroup:
    """Ended batches recorded in one open transaction and committed together once they hold
    COMMIT_ROWS requests (and at the end). Each batch's outcomes go into `attempts` and
    `results` in the transaction that marks it `collected`; its provider files are deleted
    only after the commit.

    Why: DuckDB writes a transaction smaller than a row group to its WAL and then again at the
    checkpoint; with one 50,000-request batch per transaction the commits cost more than
    everything else in a large collect. Larger transactions keep paying less: measured at a
    million answers, 250,000 requests per transaction still cost ~2 CPU s more (commits and
    the checkpoint rewriting what they appended) than 500,000 or more. Memory does not grow
    with the transaction: DuckDB writes full row groups of a large insert to the file as it
    goes.

    A failure while a batch is being recorded rolls the whole transaction back (the batches in
    it stay `submitted`, their files kept: the next collect records them). A failure between
    batches (polling, downloading) first commits the batches already recorded.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, report: CollectReport):
        self.con, self.report = con, report
        self.rows = 0
        self.batches: list[tuple[Provider, LedgerBatch, RemoteBatch]] = []
        self.open = False
        self.consistent = True              # False while a batch is half recorded
        # a temp table of the hashes that may be cached already (maybe_cached.sql), computed
        # by the pass before it records its first ended batch; None: check the whole cache
        self.maybe_cached: str | None = None

    def __enter__(self) -> "CommitGroup":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self.consistent:
            self.commit()
        else:
            self.rollback()

    def begin(self) -> None:
        if not self.open:
            self.con.execute("BEGIN TRANSACTION")
            self.open = True

    def add(self, provider: Provider, batch: LedgerBatch, remote: RemoteBatch,
            rows: int) -> None:
        self.batches.append((provider, batch, remote))
        self.rows += rows
        if self.rows >= COMMIT_ROWS:
            self.commit()

    def commit(self) -> None:
        if not self.open:
            return
        if self.batches:   # their reservations become what they were billed (budget.py)
            settle(self.con, [batch.batch_id for _, batch, _ in self.batches])
        self.con.execute("COMMIT")
        self.open, self.rows = False, 0
        faults.checkpoint("after_collect_commit")
        done, self.batches = self.batches, []
        for provider, batch, remote in done:
            try:
                provider.cleanup(batch, remote)
            except Exception as e:  # files expire on their own; never lose results over it
                self.report.warnings.append(
                    f"could not delete the files of {remote.provider_batch_id}: {e}")

    def rollback(self) -> None:
        if self.open:
            self.con.execute("ROLLBACK")
        self.open, self.rows, self.batches = False, 0, []


def note_lost(con: duckdb.DuckDBPyConnection, batch: LedgerBatch,
              report: CollectReport) -> None:
    """Put a batch just marked lost into the report (listed, and warned about)."""
    reason = con.execute(f"SELECT error FROM {SCHEMA}.batches WHERE batch_id = ?",
                         [batch.batch_id]).fetchone()[0]
    report.lost.append({"batch_id": batch.batch_id, "provider_batch_id": batch.provider_batch_id,
                        "provider": batch.provider, "request_count": batch.request_count,
                        "reason": reason})
    report.warnings.append(reason)


def ingest(con: duckdb.DuckDBPyConnection, provider: Provider, batch: LedgerBatch,
           remote: RemoteBatch, report: CollectReport,
           group: CommitGroup | None = None) -> bool:
    """Record one ended batch's outcomes and mark it collected, in `group`'s transaction (or,
    without a group, in a transaction of its own); its provider files are deleted after the
    commit, so a crash never loses an answer.

    An adopted batch not yet proven ours is first checked: its result custom_ids must be
    exactly ours; otherwise it is released as foreign (returns False, nothing recorded)."""
    if group is None:
        with CommitGroup(con, report) as own:
            return ingest(con, provider, batch, remote, report, own)
    with scratch_dir() as tmp:
        paths = [p for p in provider.download_results(batch, remote, Path(tmp))
                 if p.stat().st_size > 0]
        faults.checkpoint("during_collect")
        load_lines(con, paths, provider.result_records)
        # a view: the lines are parsed once, by the statement that builds wb_outcomes
        con.execute(f"CREATE OR REPLACE TEMP VIEW wb_norm AS {load_sql(provider.results_sql)}")
        group.begin()
        if batch.proven is False:
            reason = foreign_reason(con, batch)
            if reason is not None:
                report.warnings.append(release_foreign(con, batch, provider.name, reason))
                return False
            update_batch(con, batch.batch_id, proven=True)
            batch.proven = True
        if remote.error and not paths:
            fail_all(con, batch, f"batch {remote.status}: {remote.error}",
                     outcome="missing" if remote.requeue else "errored")
        group.consistent = False
        counts = build_outcomes(con, batch.batch_id, provider)
        bad = invalid_lines(con) if counts.get("missing") else 0
        if bad:
            report.warnings.append(
                f"batch {remote.provider_batch_id}: {bad} result line(s) were not valid JSON and "
                "were skipped; their requests count as not processed and will be sent again")
        merge_outcomes(con, batch.batch_id, remote.provider_batch_id, group.maybe_cached)
        update_batch(con, batch.batch_id, state="collected", collected_at=now_utc(),
                     error=remote.error)
        group.consistent = True
    report.succeeded += counts.get("succeeded", 0)
    report.failed += counts.get("errored", 0)
    report.not_processed += sum(counts.get(k, 0) for k in ("expired", "cancelled", "missing"))
    group.add(provider, batch, remote, sum(counts.values()))
    return True


def foreign_reason(con: duckdb.DuckDBPyConnection, batch: LedgerBatch) -> str | None:
    """Why an ended, adopted batch (results in wb_norm) is not ours, or None if it is: its
    results' custom_ids must be exactly the ones the ledger put in our batch."""
    extra, absent = con.execute(f"""WITH theirs AS (
            SELECT DISTINCT custom_id FROM wb_norm WHERE custom_id IS NOT NULL),
            ours AS (SELECT custom_id FROM {SCHEMA}.batch_requests WHERE batch_id = ?)
        SELECT (SELECT count(*) FROM theirs WHERE custom_id NOT IN (SELECT custom_id FROM ours)),
               (SELECT count(*) FROM ours WHERE custom_id NOT IN (SELECT custom_id FROM theirs))
        """, [batch.batch_id]).fetchone()
    if extra == 0 and absent == 0:
        return None
    return (f"its results hold {extra} custom_id(s) that are not in our batch and lack "
            f"{absent} of ours")


def invalid_lines(con: duckdb.DuckDBPyConnection) -> int:
    """How many lines of `wb_lines` are not valid JSON: a second parse of every line, so
    asked only when some request of the batch found no line (a line that is not JSON is
    otherwise left out silently by the results SQL)."""
    return con.execute("SELECT count(*) FROM wb_lines WHERE NOT json_valid(line)").fetchone()[0]
