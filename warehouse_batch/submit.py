"""Putting work on the provider, through the ledger, so a crash anywhere costs nothing.

Every provider side effect is preceded by a committed ledger row saying what is about to
happen, and followed by one saying what happened:

    intent ──upload──▶ uploaded ──(creating)──create──▶ submitted ──collect──▶ collected
                                                            └──404, twice──▶ lost (ledger.py)

A batch found in `intent` may have an uploaded file we never heard about: look it up by
name before uploading again. A batch found in `creating` may exist on the provider: look it up
by its tag before creating again. An ambiguous create (timeout, 5xx, dropped connection) is
looked up at once and, if not found, left in `creating` for the next pass, so two lookups
separated in time precede any second create. Before any create, requests recorded under a
batch whose ledger row is missing or damaged are looked up too (`recover_orphans`,
`recover_tagged`), so a damaged ledger cannot pay twice.

A batch in `intent` or `uploaded` is created only while the provider's enqueued-token limit
has room for it (`capacity.py`); otherwise it waits where it is, and a refusal for capacity
(Azure's synchronous 400) puts it back in `uploaded` without spending an attempt.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb

from . import budget, capacity, estimate, faults
from .errors import AmbiguousCreateError, LookupUndecidedError, ProviderError
from .identity import custom_id_sql, sql_literal
from .chunking import assign_chunks
from .classify import build_send_table, classify
from .jsonl import line_nbytes_sql, line_sql, write_payload
from .ledger import (BatchProviders, known_batch_ids, unfinished_batches, update_batch)
from .outcomes import record_batch_failure
from .providers.base import (LedgerBatch, Provider, RemoteBatch)
from .prepared import Prepared
from .reports import SubmitReport
from .request_store import (SeqRange, batch_ranges, chunk_ranges, next_seq,
                            store_new)
from .scratch import scratch_dir
from .settings import realtime_concurrency
from .state import SCHEMA, fetch_dicts, now_utc





@dataclass
class Intents:
    """Batches `create_intents` recorded, in order, with the `requests.seq` range of each
    (what its payload reads)."""

    batch_ids: list[str] = field(default_factory=list)
    ranges: dict[str, SeqRange] = field(default_factory=dict)
    exact: set[str] = field(default_factory=set)   # batches whose requests are their range
    hold: budget.Hold | None = None   # batches not recorded: they would cross a budget cap


def create_intents(con: duckdb.DuckDBPyConnection, prepared: Prepared, run_id: str,
                   mode: str = "batch", caps: budget.Caps | None = None) -> Intents:
    """Write requests, intents and the job's row mapping in one transaction (`mode`
    'realtime': batches `realtime.py` sends through the synchronous API instead), with
    each new batch's budget reservation (`caps`, budget.py).

    Works from temp table `wb_send` (built by the caller from the current classification)
    and stores nothing per request but what `request_store` keeps: the bodies are spliced
    again when each batch's payload is written. Each intent's worst-case cost is reserved in
    the same transaction, and intents that would cross a cap of `caps` are not recorded
    (`budget.reserve`)."""
    spec, provider = prepared.spec, prepared.provider
    nbytes = line_nbytes_sql(provider, custom_id_sql("s.request_hash"), "s.body_bytes")
    now = now_utc()
    # a run submits once per pass of `run --wait`, perhaps hundreds of times: 64 random bits
    # keep ids unique (49 characters; metadata values may hold 512, file names more)
    stem = f"wbb_{run_id}_{secrets.token_hex(8)}"
    limits, token_limit = capacity.budget_limits(con, provider)
    sending = con.execute("SELECT count(*) FROM wb_send").fetchone()[0] > 0
    estimator = estimate.for_job(con, prepared, learn=sending)
    con.execute("BEGIN TRANSACTION")
    try:
        # input tokens are estimated from the message text (estimate.py, the one estimate
        # used everywhere: plan, enqueued-token limits, batches.est_tokens); each request's
        # text characters are recorded with it (batch_requests.text_chars) to learn from.
        # `sid` is the request's row in wb_send, `old_seq` its stored number.
        con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_todo AS
            SELECT s.rowid AS sid, s.request_hash, {nbytes} + 1 AS nbytes,
                   {estimator.tokens_sql('s.prompt_chars')} AS ntok,
                   CAST({estimator.chars_sql('s.prompt_chars')} AS INTEGER) AS text_chars,
                   r.seq AS old_seq
            FROM wb_send s LEFT JOIN (SELECT request_hash, seq FROM {SCHEMA}.request_rows) r
                USING (request_hash)""")
        # the classification is not read again in this pass (a later pass classifies anew):
        # at a million rows its ~100 MB are better left to the inserts below
        con.execute("DROP TABLE IF EXISTS wb_plan")
        capacity.fail_oversized(con, "wb_todo", token_limit, provider.name, spec.model)
        assign_chunks(con, "SELECT * FROM wb_todo", limits, position="sid")
        con.execute("DROP TABLE wb_todo")   # 10M rows: hold one narrow copy, not two
        base = next_seq(con)
        store_new(con, prepared, "wb_chunked", "wb_send", base, run_id, now)
        ranges, exact = chunk_ranges(con, "wb_chunked", base)
        batch_id = f"{sql_literal(stem + '_')} || printf('%04d', chunk)"
        con.execute(f"""INSERT INTO {SCHEMA}.batch_requests (batch_id, request_hash,
                text_chars)
            SELECT {batch_id}, request_hash, text_chars FROM wb_chunked""")
        con.execute(f"""INSERT INTO {SCHEMA}.batches
            (batch_id, run_id, job_name, provider, endpoint, model, chunk, state,
             request_count, bytes, est_tokens, created_at, mode)
            SELECT {batch_id}, ?, ?, ?, ?, ?, chunk, 'intent', count(*), sum(nbytes),
                   sum(ntok), ?, ?
            FROM wb_chunked GROUP BY chunk""",
                    [run_id, spec.name, provider.name, provider.endpoint_path(), spec.model,
                     now, mode])
        intents = Intents([f"{stem}_{c:04d}" for c in sorted(ranges)],
                          {f"{stem}_{c:04d}": r for c, r in ranges.items()},
                          {f"{stem}_{c:04d}" for c in exact})
        caps = caps or budget.Caps(None, None, now.date())
        intents.hold = budget.reserve(con, spec, provider.name, intents.batch_ids, caps, base,
                                      estimator.cache_write_tokens(provider))
        if intents.hold is not None:
            kept = intents.batch_ids[:len(intents.batch_ids) - intents.hold.batches_held]
            intents.batch_ids, intents.exact = kept, intents.exact & set(kept)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    con.execute("DROP TABLE IF EXISTS wb_chunked")
    con.execute("DROP TABLE IF EXISTS wb_send")
    faults.checkpoint("after_intent")
    return intents


def can_advance(con: duckdb.DuckDBPyConnection, job_provider: Provider,
                job_name: str) -> bool:
    """Whether any unfinished batch of the job could move now: one being created, one the
    enqueued-token limit does not hold back, or one to cut again (a pass for waiting
    batches alone would only re-read the source)."""
    providers = BatchProviders(job_provider)
    for batch in unfinished_batches(con, job_name):
        if batch.state not in ("intent", "uploaded") or batch.mode == "realtime":
            return True
        provider = providers.for_batch(batch)
        limit = capacity.limit_for_batch(con, provider, batch)
        if (capacity.wait_reason(con, batch, provider.name, limit) is None
                or batch.est_tokens > limit):
            return True
    return False



def advance(con: duckdb.DuckDBPyConnection, provider: Provider, batch: LedgerBatch,
            payload: Path, resuming: bool) -> str:
    """Move one batch from its recorded state to `submitted`; returns the state reached
    ("waiting": not created, the enqueued-token limit is full; its reason is in
    `batches.error`)."""
    if batch.state in ("intent", "uploaded"):
        reason = capacity.wait_reason(con, batch, provider.name,
                                      capacity.limit_for_batch(con, provider, batch))
        if reason is not None:
            update_batch(con, batch.batch_id, error=reason)
            return "waiting"
    if batch.state == "intent":
        fid = provider.find_upload(batch) if resuming and provider.uploads_files else None
        if fid is None:
            fid = provider.upload(batch, payload)
            faults.checkpoint("after_upload_unrecorded")
        update_batch(con, batch.batch_id, state="uploaded", input_file_id=fid)
        batch.state, batch.input_file_id = "uploaded", fid
        faults.checkpoint("after_upload")
    if batch.state == "creating":
        try:
            found = provider.find_batch(batch, payload, known_batch_ids(con))
        except LookupUndecidedError as e:
            update_batch(con, batch.batch_id, error=str(e))
            return "creating"
        if found is not None:
            return _record_submitted(con, batch, found, adopted=True)
    update_batch(con, batch.batch_id, state="creating")
    con.execute(f"UPDATE {SCHEMA}.batches SET create_attempts = create_attempts + 1 "
                "WHERE batch_id = ?", [batch.batch_id])
    batch.state = "creating"
    try:
        remote = provider.create(batch, payload)
    except AmbiguousCreateError as e:
        reason = str(e)
        try:
            found = provider.find_batch(batch, payload, known_batch_ids(con))
        except LookupUndecidedError as undecided:
            found, reason = None, str(undecided)
        if found is not None:
            return _record_submitted(con, batch, found, adopted=True)
        update_batch(con, batch.batch_id, error=reason)
        return "creating"   # looked up again on the next pass before any new create
    except ProviderError as e:
        if capacity.is_capacity_refusal(e):
            # Azure's fail-fast: refused at once for enqueued tokens. Nothing was created and
            # no attempt is spent; the uploaded file is kept and the batch waits for room.
            limit = capacity.parse_limit(str(e))
            if limit is not None:
                capacity.learn(con, provider.name, batch.model, limit, str(e))
            update_batch(con, batch.batch_id, state="uploaded", error=str(e))
            batch.state = "uploaded"
            return "waiting"
        if e.retryable:
            update_batch(con, batch.batch_id, state="uploaded", error=str(e))
            raise
        _abandon(con, batch, str(e))
        discard_input(provider, batch)
        raise
    faults.checkpoint("after_create")
    return _record_submitted(con, batch, remote, adopted=False)


def _record_submitted(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, remote: RemoteBatch,
                      adopted: bool) -> str:
    proven = None if not adopted else remote.proven
    update_batch(con, batch.batch_id, state="submitted",
                 provider_batch_id=remote.provider_batch_id, provider_status=remote.status,
                 submitted_at=now_utc(), proven=proven,
                 error=None if proven is not False else
                 "adopted by shape while running: not proven ours until it ends")
    batch.state, batch.provider_batch_id = "submitted", remote.provider_batch_id
    batch.proven = proven
    return "submitted"


def _abandon(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, message: str) -> None:
    """A create the provider refused for good: its requests fail (retryable within attempts)."""
    con.execute("BEGIN TRANSACTION")
    try:
        record_batch_failure(con, batch, f"the provider refused the batch: {message}")
        update_batch(con, batch.batch_id, state="abandoned", error=message)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def discard_input(provider: Provider, batch: LedgerBatch) -> str | None:
    """Delete an abandoned batch's uploaded input file on the provider (an Azure resource
    holds only a few hundred batch files; OpenAI keeps them 30 days). Returns a warning
    instead of raising: the file expires or can be deleted later, the rows go again anyway."""
    if not batch.input_file_id:
        return None
    try:
        provider.cleanup(batch, None)
    except Exception as e:  # a delete is housekeeping: never fail the command over it
        return (f"could not delete the input file {batch.input_file_id} of abandoned batch "
                f"{batch.batch_id}: {e}")
    return None


def resume_unfinished(con: duckdb.DuckDBPyConnection, prepared: Prepared, workdir: Path,
                      report: SubmitReport, log: Callable[[str], None] = lambda m: None) -> None:
    """Carry every half-submitted batch of the job (a crash, an ambiguous create) forward,
    each through the provider recorded for it."""
    providers = BatchProviders(prepared.provider)
    batches = [b for b in unfinished_batches(con, prepared.spec.name)
               if b.mode != "realtime"]   # resumed by realtime.send_unfinished
    ranges = batch_ranges(con, [b.batch_id for b in batches])
    for batch in batches:
        provider = providers.for_batch(batch)
        payload = write_payload(con, line_sql(provider, "r.custom_id", "r.body"),
                                batch.batch_id, workdir, ranges.get(batch.batch_id))
        was = batch.state
        try:
            state = advance(con, provider, batch, payload, resuming=True)
        finally:
            payload.unlink(missing_ok=True)
        if state != "waiting":
            log(f"resumed batch {batch.batch_id} (was {was})")
            report.batches_resumed += 1
        _count(con, report, batch, state)


_BATCH_ID_RE = re.compile(r"wbb_(?P<run>r(?P<ts>\d{8}T\d{6})_[0-9a-f]+)_[0-9a-f]+_(?P<chunk>\d+)")


def recut_oversized(con: duckdb.DuckDBPyConnection, prepared: Prepared,
                    report: SubmitReport) -> None:
    """Batches of the job not yet created whose estimated tokens pass the enqueued-token
    limit (learned after they were cut) can never be created: they are dropped (an uploaded
    file is deleted) and their requests, never sent, are cut again under the limit."""
    providers = BatchProviders(prepared.provider)
    for batch in unfinished_batches(con, prepared.spec.name):
        if batch.state not in ("intent", "uploaded") or batch.est_tokens is None \
                or batch.mode == "realtime":
            continue
        provider = providers.for_batch(batch)
        limit = capacity.limit_for_batch(con, provider, batch)
        if limit is None or batch.est_tokens <= limit:
            continue
        if batch.input_file_id:
            try:
                provider.cleanup(batch, None)
            except ProviderError as e:   # a stray file costs nothing; the cut matters
                report.warnings.append(f"batch {batch.batch_id}: its input file could not "
                                       f"be deleted ({e})")
        update_batch(con, batch.batch_id, state="abandoned", ended_at=now_utc(), error=(
            f"re-cut: {batch.est_tokens:,} estimated tokens pass the enqueued-token limit of "
            f"{limit:,}; its {batch.request_count:,} request(s) go in smaller batches"))


def recover_orphans(con: duckdb.DuckDBPyConnection, prepared: Prepared, workdir: Path,
                    report: SubmitReport) -> bool:
    """Before any create: find requests still recorded in a batch whose ledger row is missing
    (deleted) or damaged (submitted without a provider id), so they cannot be paid twice.

    The row is rebuilt from `batch_requests`, `requests` and the batch id (which holds the
    run, its start time and the chunk) and looked up like a lost create: OpenAI by its tag
    (proof), Anthropic by shape (an ended candidate is proven by its custom_ids; a running one
    is adopted unproven; several leave the row in `creating`, its requests held, until they
    end). Found nowhere, the row is `lost` and its requests are sent again. Returns whether
    any row was rebuilt or looked up (the ledger changed).
    """
    con.execute(f"""UPDATE {SCHEMA}.batches SET state = 'creating',
            error = 'damaged ledger row (submitted without a provider batch id): looked up again'
        WHERE job_name = ? AND state = 'submitted' AND provider_batch_id IS NULL""",
                [prepared.spec.name])
    damaged = [r["batch_id"] for r in fetch_dicts(con, f"""SELECT batch_id FROM {SCHEMA}.batches
        WHERE job_name = ? AND state = 'creating' AND starts_with(error, 'damaged ledger row')""",
                                                  [prepared.spec.name])]
    # batches recorded in batch_requests but not in batches: almost always none, found from
    # the batch ids alone (a dictionary-compressed column) before any request is looked at
    missing = [r[0] for r in con.execute(
        f"""SELECT DISTINCT batch_id FROM {SCHEMA}.batch_requests
            WHERE batch_id NOT IN (SELECT batch_id FROM {SCHEMA}.batches)""").fetchall()]
    orphans = [] if not missing else fetch_dicts(con, f"""SELECT br.batch_id,
            count(*) AS request_count,
            any_value(r.provider) AS provider, any_value(r.endpoint) AS endpoint,
            any_value(r.model) AS model, coalesce(sum(strlen(r.body)), 0) AS bytes,
            max(r.created_at) AS created_at
        FROM {SCHEMA}.batch_requests br LEFT JOIN {SCHEMA}.requests r USING (request_hash)
        WHERE br.batch_id IN (SELECT batch_id FROM {SCHEMA}.batch_requests
                              WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))
                                AND request_hash IN (SELECT request_hash FROM wb_current)
                                AND request_hash NOT IN (SELECT request_hash
                                    FROM {SCHEMA}.results WHERE status = 'succeeded'))
          AND br.batch_id IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY br.batch_id ORDER BY br.batch_id""", [missing, missing])
    for o in orphans:
        m = _BATCH_ID_RE.fullmatch(o["batch_id"])
        created = o["created_at"] or now_utc()
        if m:
            created = min(created, dt.datetime.strptime(m["ts"], "%Y%m%dT%H%M%S"))
        con.execute(f"""INSERT INTO {SCHEMA}.batches (batch_id, run_id, job_name, provider,
                endpoint, model, chunk, state, request_count, bytes, created_at, error)
            VALUES (?, ?, ?, ?, ?, ?, ?, 'creating', ?, ?, ?, ?)""",
                    [o["batch_id"], m["run"] if m else "unknown", prepared.spec.name,
                     o["provider"] or prepared.provider.name,
                     o["endpoint"] or prepared.provider.endpoint_path(),
                     o["model"] or prepared.spec.model, int(m["chunk"]) if m else 0,
                     o["request_count"], o["bytes"], created,
                     "ledger row rebuilt: it was missing while its requests were recorded"])
        damaged.append(o["batch_id"])
    if not damaged:
        return False
    providers = BatchProviders(prepared.provider)
    rows = fetch_dicts(con, f"SELECT * FROM {SCHEMA}.batches WHERE batch_id IN "
                            f"(SELECT unnest(?::VARCHAR[])) ORDER BY batch_id", [damaged])
    ranges = batch_ranges(con, damaged)
    for batch in (LedgerBatch.from_row(r) for r in rows):
        provider = providers.for_batch(batch)
        payload = write_payload(con, line_sql(provider, "r.custom_id", "r.body"),
                                batch.batch_id, workdir, ranges.get(batch.batch_id))
        try:
            found = provider.find_batch(batch, payload, known_batch_ids(con))
        except LookupUndecidedError as e:
            update_batch(con, batch.batch_id, error=str(e))
            report.warnings.append(f"batch {batch.batch_id} (ledger row rebuilt): {e}")
            continue
        finally:
            payload.unlink(missing_ok=True)
        if found is not None:
            _record_submitted(con, batch, found, adopted=True)
            if con.execute(f"SELECT count(*) FROM {SCHEMA}.attempts WHERE batch_id = ?",
                           [batch.batch_id]).fetchone()[0]:
                # collected before its row was lost: its outcomes are stored, files deleted
                update_batch(con, batch.batch_id, state="collected", collected_at=now_utc())
            report.warnings.append(
                f"batch {batch.batch_id}: its ledger row was missing or damaged; rebuilt and "
                f"found at the provider as {found.provider_batch_id}"
                + ("" if found.proven else " (unproven until it ends)"))
            continue
        message = (f"batch {batch.batch_id}: its ledger row was missing or damaged and "
                   f"{provider.name} has no batch for it; marked lost, its "
                   f"{batch.request_count:,} request(s) will be sent again")
        update_batch(con, batch.batch_id, state="lost", error=message, ended_at=now_utc())
        report.warnings.append(message)
    return True


def recover_tagged(con: duckdb.DuckDBPyConnection, prepared: Prepared,
                   report: SubmitReport) -> bool:
    """Before a create: live provider batches tagged as this job's whose ledger rows (and
    `batch_requests`) are gone are rebuilt from their tags and input file, so their requests
    count as in flight rather than being paid for again. Returns whether any was rebuilt."""
    provider = prepared.provider
    owned = frozenset(r[0] for r in con.execute(f"SELECT batch_id FROM {SCHEMA}.batches")
                      .fetchall())
    found = provider.tagged_batches(prepared.spec.name, known_batch_ids(con), owned)
    for tagged in found:
        m = _BATCH_ID_RE.fullmatch(tagged.batch_id)
        created = dt.datetime.strptime(m["ts"], "%Y%m%dT%H%M%S") if m else now_utc()
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"""INSERT INTO {SCHEMA}.batch_requests (batch_id, request_hash)
                SELECT DISTINCT ON (request_hash) ?, request_hash
                FROM {SCHEMA}.requests
                WHERE custom_id IN (SELECT unnest(?::VARCHAR[]))
                  AND request_hash NOT IN (SELECT request_hash FROM {SCHEMA}.batch_requests
                                           WHERE batch_id = ?)""",
                        [tagged.batch_id, tagged.custom_ids, tagged.batch_id])
            con.execute(f"""INSERT INTO {SCHEMA}.batches (batch_id, run_id, job_name, provider,
                    endpoint, model, chunk, state, request_count, bytes, input_file_id,
                    provider_batch_id, provider_status, created_at, submitted_at, error)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'submitted', ?, 0, ?, ?, ?, ?, ?, ?)""",
                        [tagged.batch_id, tagged.run_id, prepared.spec.name, provider.name,
                         provider.endpoint_path(), prepared.spec.model, tagged.chunk,
                         len(tagged.custom_ids), tagged.remote.raw.get("input_file_id"),
                         tagged.remote.provider_batch_id, tagged.remote.status, created,
                         now_utc(), "ledger row rebuilt from the provider's tags"])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        report.warnings.append(
            f"batch {tagged.batch_id}: its ledger row was missing; rebuilt from the tags of "
            f"{tagged.remote.provider_batch_id} ({len(tagged.custom_ids):,} requests in flight)")
    return bool(found)


def submit_work(con: duckdb.DuckDBPyConnection, prepared: Prepared, run_id: str,
                log: Callable[[str], None] = lambda m: None,
                caps: budget.Caps | None = None) -> SubmitReport:
    """Resume unfinished batches of this job, then submit everything that needs sending.
    Fewer requests than the job's `realtime_below` are recorded as intents of mode
    'realtime' and left for `realtime.send_unfinished` (the synchronous API).

    New batches go as a pipeline: once every intent is committed, each batch's payload is
    written, uploaded and created before the next one is written (and deleted after), so the
    first upload does not wait for the last payload and the disk holds one at a time."""
    provider = prepared.provider
    report = SubmitReport()
    capacity.learn_from_ledger(con)
    capacity.release_oversized(con)
    recut_oversized(con, prepared, report)
    unfinished = bool(unfinished_batches(con, prepared.spec.name))
    # whether wb_plan / wb_send reflect the ledger as it is now (classifying 10M rows is
    # not free: it is done again only when resuming or recovering changed the ledger)
    classified = not unfinished
    if unfinished or _has_work(con, prepared):
        provider.preflight()
    with scratch_dir() as tmp:
        if recover_orphans(con, prepared, Path(tmp), report):
            classified = False
        resume_unfinished(con, prepared, Path(tmp), report, log)
        if not classified:   # in-flight requests changed: classify again
            classify(con, prepared)
            build_send_table(con, in_row_order=True)
        if con.execute("SELECT count(*) FROM wb_send").fetchone()[0] \
                and recover_tagged(con, prepared, report):
            classify(con, prepared)
            build_send_table(con, in_row_order=True)
        to_send = con.execute("SELECT count(*) FROM wb_send").fetchone()[0]
        below = prepared.spec.realtime_below
        mode = "realtime" if below is not None and 0 < to_send < below else "batch"
        if mode == "realtime":
            realtime_concurrency(provider.env)   # a bad setting: refused before any intent
        intents = create_intents(con, prepared, run_id, mode, caps)
        if intents.hold is not None:
            report.held = intents.hold.to_dict()
            log(intents.hold.message)
        batches = [LedgerBatch.from_row(r) for r in fetch_dicts(
            con, f"SELECT * FROM {SCHEMA}.batches WHERE batch_id IN "
                 f"(SELECT unnest(?::VARCHAR[])) AND mode = 'batch' ORDER BY batch_id",
            [intents.batch_ids])]
        line = line_sql(prepared.provider, "r.custom_id", "r.body")
        for i, batch in enumerate(batches, 1):
            payload = write_payload(con, line, batch.batch_id, Path(tmp),
                                    intents.ranges.get(batch.batch_id),
                                    batch.batch_id in intents.exact)
            try:
                state = advance(con, provider, batch, payload, resuming=False)
            finally:
                payload.unlink(missing_ok=True)
            if state != "waiting":
                log(f"submitted batch {i}/{len(batches)}: {batch.request_count:,} requests, "
                    f"{batch.bytes / 1e6:,.1f} MB")
                report.batches_created += 1
            _count(con, report, batch, state)
    return report


def _has_work(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> bool:
    classify(con, prepared)
    return build_send_table(con, in_row_order=True) > 0


def _count(con: duckdb.DuckDBPyConnection, report: SubmitReport, batch: LedgerBatch,
           state: str) -> None:
    if state == "waiting":
        report.batches_waiting += 1
        report.waiting.append(con.execute(f"SELECT error FROM {SCHEMA}.batches WHERE batch_id = ?",
                                          [batch.batch_id]).fetchone()[0])
        return
    if state == "submitted":
        report.requests_submitted += batch.request_count
        report.bytes_submitted += batch.bytes
        report.batch_ids.append(batch.provider_batch_id or batch.batch_id)
    else:
        report.batches_pending_create += 1
        report.warnings.append(
            f"batch {batch.batch_id}: the create may or may not have reached the provider; "
            "it will be looked up by its tag before any new create (run again or `reconcile`)")

