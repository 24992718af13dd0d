"""Bringing answers home: poll batches, stream result files into DuckDB, classify every line.

For each submitted batch of the job: ask the provider for its state; when it has ended
(completed, failed, expired, cancelled — all of them may hold paid answers), download its
result files, load their lines into DuckDB, map each line to our result shape with the
provider's SQL, and fold the outcomes into `attempts` and `results` in the same transaction
that marks the batch `collected`. A custom_id found in no file is `missing`: not processed,
sent again. Only then are the provider's files deleted.

Each batch is polled, downloaded and parsed through the provider recorded in its ledger row
(`ledger.BatchProviders`). A batch the provider no longer knows (404, confirmed) is marked
`lost`. An adopted batch not yet proven ours is checked when it ends: its custom_ids must be
exactly ours, or it is released as foreign and nothing is recorded from it.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import duckdb

from . import faults
from .ledger import BatchProviders, release_foreign, retrieve_or_lose
from .providers.base import LedgerBatch, Provider, RemoteBatch
from .state import SCHEMA, fetch_dicts, now_utc, update_batch
from .sqlutil import load_sql
from .identity import canonical_json, sql_literal
from .schema import violation_sql
from .submit import CSV_DELIM

MISSING_MESSAGE = "not processed: the custom_id was in neither the output nor the error file"


@dataclass
class CollectReport:
    batches_polled: int = 0
    batches_collected: int = 0
    batches_in_progress: int = 0
    succeeded: int = 0
    failed: int = 0
    not_processed: int = 0
    batches_released: int = 0    # adopted batches proven foreign (their requests go again)
    lost: list[dict] = field(default_factory=list)   # batches the provider no longer knows
    warnings: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def submitted_batches(con: duckdb.DuckDBPyConnection, job_name: str) -> list[LedgerBatch]:
    """The job's submitted batches that can be polled (a row without a provider batch id is
    damaged: `submit.recover_orphans` looks it up before anything is created)."""
    rows = fetch_dicts(con, f"""SELECT * FROM {SCHEMA}.batches
        WHERE job_name = ? AND state = 'submitted' AND provider_batch_id IS NOT NULL
        ORDER BY batch_id""", [job_name])
    return [LedgerBatch.from_row(r) for r in rows]


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
    those that have ended."""
    report = CollectReport()
    providers = BatchProviders(provider)
    for batch in submitted_batches(con, job_name):
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
        if ingest(con, batch_provider, batch, remote, report):
            report.batches_collected += 1
        else:
            report.batches_released += 1
    return report


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
           remote: RemoteBatch, report: CollectReport) -> bool:
    """Store one ended batch's outcomes and mark it collected, in one transaction; then
    delete its provider files (only after the commit, so a crash never loses an answer).

    An adopted batch not yet proven ours is first checked: its result custom_ids must be
    exactly ours; otherwise it is released as foreign (returns False, nothing recorded)."""
    with tempfile.TemporaryDirectory(prefix="warehouse-batch-") as tmp:
        paths = [p for p in provider.download_results(batch, remote, Path(tmp))
                 if p.stat().st_size > 0]
        faults.checkpoint("during_collect")
        bad = load_lines(con, paths)
        con.execute(f"CREATE OR REPLACE TEMP TABLE wb_norm AS {load_sql(provider.results_sql)}")
        if batch.proven is False:
            reason = foreign_reason(con, batch)
            if reason is not None:
                report.warnings.append(release_foreign(con, batch, provider.name, reason))
                return False
            update_batch(con, batch.batch_id, proven=True)
            batch.proven = True
        if bad:
            report.warnings.append(
                f"batch {remote.provider_batch_id}: {bad} result line(s) were not valid JSON and "
                "were skipped; their requests count as not processed and will be sent again")
        if remote.error and not paths:
            _fail_all(con, batch, f"batch {remote.status}: {remote.error}",
                      outcome="missing" if remote.requeue else "errored")
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(load_sql("batch_outcomes.sql"),
                        {"batch_id": batch.batch_id, "missing_message": MISSING_MESSAGE})
            check_answers(con, provider)
            counts = dict(con.execute("SELECT outcome, count(*) FROM wb_outcomes GROUP BY 1")
                          .fetchall())
            merge_outcomes(con, batch.batch_id, remote.provider_batch_id)
            update_batch(con, batch.batch_id, state="collected", collected_at=now_utc(),
                         error=remote.error)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    faults.checkpoint("after_collect_commit")
    report.succeeded += counts.get("succeeded", 0)
    report.failed += counts.get("errored", 0)
    report.not_processed += sum(counts.get(k, 0) for k in ("expired", "cancelled", "missing"))
    try:
        provider.cleanup(batch, remote)
    except Exception as e:  # files expire on their own; never lose results over a delete
        report.warnings.append(f"could not delete the files of {remote.provider_batch_id}: {e}")
    return True


def foreign_reason(con: duckdb.DuckDBPyConnection, batch: LedgerBatch) -> str | None:
    """Why an ended, adopted batch (results in wb_norm) is not ours, or None if it is: its
    results' custom_ids must be exactly the ones the ledger put in our batch."""
    extra, absent = con.execute(f"""WITH theirs AS (SELECT DISTINCT custom_id FROM wb_norm),
            ours AS (SELECT custom_id FROM {SCHEMA}.batch_requests WHERE batch_id = ?)
        SELECT (SELECT count(*) FROM theirs WHERE custom_id NOT IN (SELECT custom_id FROM ours)),
               (SELECT count(*) FROM ours WHERE custom_id NOT IN (SELECT custom_id FROM theirs))
        """, [batch.batch_id]).fetchone()
    if extra == 0 and absent == 0:
        return None
    return (f"its results hold {extra} custom_id(s) that are not in our batch and lack "
            f"{absent} of ours")


TRUNCATED_REASONS = ("length", "max_tokens", "max_output_tokens")   # OpenAI, Anthropic, Responses


def check_answers(con: duckdb.DuckDBPyConnection, provider: Provider) -> None:
    """Turn paid-for answers that are unusable into failures that say why (in wb_outcomes).

    A chat answer cut off by max_tokens (finish_reason `length` / stop_reason `max_tokens`)
    fails permanently, typed or not: the same request would be cut off again, so the error
    says to raise max_tokens. A plain-text job may keep such answers with
    `allow_truncated=true` (they succeed, `_finish_reason` shows the cut); a typed answer cut
    off is never valid JSON for its schema. Invalid JSON or a schema violation may come out
    right on a retry (retryable).

    Typed checks apply to requests that carry this job's output schema (the schema's
    canonical JSON is a substring of their canonical body); embeddings are checked for a
    vector of the right size.
    """
    spec = provider.spec
    truncated = f"o.finish_reason IN ({', '.join(sql_literal(r) for r in TRUNCATED_REASONS)})"
    cut = sql_literal(f"the answer was cut off by max_tokens "
                      f"({spec.generation.get('max_tokens', 'the default')}); a retry "
                      "cannot help: raise max_tokens"
                      + ("" if spec.output_schema is not None else
                         " (or set allow_truncated=true to keep cut-off answers)"))
    if spec.output_schema is not None:
        marker = canonical_json(provider.sent_schema())   # the form the bodies carry
        problem = (f"CASE WHEN {truncated} THEN {cut} "
                   f"ELSE {violation_sql(spec.output_schema, 'o.response_text')} END")
        applies = f"contains(r.body, {sql_literal(marker)})"
    elif spec.endpoint == "embeddings":
        n = provider.embedding_dimensions()
        truncated = "false"
        problem = (f"CASE WHEN o.embedding IS NULL THEN 'the answer has no embedding' "
                   f"WHEN len(o.embedding) <> {n} THEN 'the embedding has ' || "
                   f"len(o.embedding) || ' dimensions, expected {n}' END")
        applies = "true"
    elif not spec.allow_truncated:
        problem = f"CASE WHEN {truncated} THEN {cut} END"
        applies = "true"
    else:
        return
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_outcomes AS
        SELECT * EXCLUDE (problem, is_truncated) REPLACE (
            CASE WHEN problem IS NULL THEN outcome ELSE 'errored' END AS outcome,
            CASE WHEN problem IS NULL THEN retryable ELSE NOT is_truncated END AS retryable,
            CASE WHEN problem IS NULL THEN error_type
                 WHEN is_truncated THEN 'truncated' ELSE 'invalid_answer' END AS error_type,
            coalesce(problem, error_message) AS error_message)
        FROM (SELECT o.*, coalesce({truncated}, false) AS is_truncated,
                     CASE WHEN o.outcome = 'succeeded' AND {applies} THEN {problem} END
                         AS problem
              FROM wb_outcomes o LEFT JOIN {SCHEMA}.requests r USING (request_hash))""")


def load_lines(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> int:
    """Load raw JSONL lines into temp table `wb_lines`; returns how many were not JSON."""
    con.execute("CREATE OR REPLACE TEMP TABLE wb_lines (line VARCHAR)")
    if not paths:
        return 0
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    con.execute(f"""INSERT INTO wb_lines
        SELECT rtrim(line, chr(13)) FROM read_csv({files}, columns={{'line': 'VARCHAR'}},
            header=false, delim='{CSV_DELIM}', quote='', escape='', auto_detect=false)
        WHERE line IS NOT NULL AND trim(line) <> ''""")
    bad = con.execute("SELECT count(*) FROM wb_lines WHERE NOT json_valid(line)").fetchone()[0]
    if bad:
        con.execute("DELETE FROM wb_lines WHERE NOT json_valid(line)")
    return bad


def _fail_all(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, message: str,
              outcome: str = "errored") -> None:
    """A batch that failed as a whole: every request gets the batch's reason, as a retryable
    error (counted against max_attempts) or, for capacity failures, as not processed."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_norm AS
        SELECT custom_id, '{outcome}' AS outcome, true AS retryable,
               CAST(NULL AS INTEGER) AS status_code, 'batch_failed' AS error_type,
               CAST(NULL AS VARCHAR) AS error_code, ? AS error_message,
               CAST(NULL AS VARCHAR) AS response_text, CAST(NULL AS VARCHAR) AS response_body,
               CAST(NULL AS VARCHAR) AS finish_reason, CAST(NULL AS BIGINT) AS input_tokens,
               CAST(NULL AS BIGINT) AS output_tokens, CAST(NULL AS BIGINT) AS cached_tokens,
               CAST(NULL AS BIGINT) AS cache_creation_tokens,
               CAST(NULL AS FLOAT[]) AS embedding
        FROM {SCHEMA}.batch_requests WHERE batch_id = ?""", [message, batch.batch_id])


def record_batch_failure(con: duckdb.DuckDBPyConnection, batch: LedgerBatch,
                         message: str) -> None:
    """Record a batch-level failure for every request in it (no provider batch exists)."""
    _fail_all(con, batch, message)
    con.execute(load_sql("batch_outcomes.sql"),
                {"batch_id": batch.batch_id, "missing_message": MISSING_MESSAGE})
    merge_outcomes(con, batch.batch_id, None)


def merge_outcomes(con: duckdb.DuckDBPyConnection, batch_id: str,
                   provider_batch_id: str | None) -> None:
    """wb_outcomes -> attempts (history) and results (the cache)."""
    now = now_utc()
    con.execute(load_sql("record_attempts.sql"), {"batch_id": batch_id, "now": now})
    con.execute(load_sql("merge_results.sql"),
                {"batch_id": batch_id, "provider_batch_id": provider_batch_id, "now": now})
