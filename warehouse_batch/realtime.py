"""The real-time path: a few requests sent through the provider's synchronous API, recorded
exactly as a batch is.

`realtime_below=N` in a job file (and the `try` command) make `submit.create_intents` record
the requests to send as ledger batches of mode 'realtime': the requests, the batch rows and
`batch_requests` are committed before any send, like every intent. This module then sends
each request of such a batch through `Provider.call_sync` (the official SDK, retries off),
several at once (`settings.realtime_concurrency()` threads), and keeps each answer, as it
arrives, as the line a batch result file would hold for it (`Provider.sync_line`) in
`warehouse_batch.realtime_lines`. When every request of the batch has its line, the lines
are ingested by collect's own set-based path (`collect.ingest`, reading them as a downloaded
result file), which records attempts and results under the same request hashes, judges
typed answers and embeddings, counts failures against `max_attempts`, and marks the batch
collected; then the lines are deleted.

So a crash mid-way never pays twice for what was answered (the answered requests have their
line; only the others are sent when the batch is resumed by the next pass) and never loses
the rest (the batch stays in `intent`, its requests in flight, until every one has a line).

Rate limits: a 429 (or 408/409/5xx) answer is retried after the provider's `retry-after`
(else a doubling backoff), and every sender pauses until then (`Gate`), on the command's
injected clock (`Options.clock`): tests never sleep. A request still refused for its rate
after `MAX_TRIES_RATE_LIMITED` sends ends the pass as transient provider trouble (exit 75;
its answer-less requests go with the next pass). A request still failing with a 5xx after
`MAX_TRIES_SERVER_ERROR` sends is recorded as that failure (retryable), as a batch line
with that status would be.
"""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb

from . import faults
from .classify import build_send_table
from .clock import Clock
from .collect import ingest
from .errors import ProviderError, ProviderErrorInfo
from .ledger import BatchProviders, unfinished_batches, update_batch
from .providers.base import LedgerBatch, Provider, RemoteBatch
from .reports import CollectReport, SubmitReport
from .settings import realtime_concurrency
from .state import SCHEMA, now_utc

MAX_TRIES_RATE_LIMITED = 6   # sends of one request answered 429 before the pass stops
MAX_TRIES_SERVER_ERROR = 3   # sends of one request answered 5xx/408/409 (the SDKs' 1 + 2)
FIRST_BACKOFF = 1.0          # seconds, doubling, when no retry-after was given
RETRY_STATUS = frozenset({408, 409, 429})


class Gate:
    """A pause shared by every sender: after a 429 (or a 5xx) all wait until the provider's
    `retry-after` has passed on the injected clock. One sender sleeps at a time (the others
    queue on the lock and find the time passed), so a manual clock moves once per pause."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.until = 0.0
        self.pauses = 0

    def wait(self) -> None:
        with self.lock:
            delay = self.until - self.clock.now()
            if delay > 0:
                self.clock.sleep(delay)

    def hold(self, seconds: float) -> None:
        with self.lock:
            until = self.clock.now() + max(seconds, 0.0)
            if until > self.until:
                self.until = until
                self.pauses += 1


def send_one(provider: Provider, custom_id: str, body: str, gate: Gate,
             stop: threading.Event) -> dict | None:
    """Send one request (retrying as the module docstring says) and return its result line,
    or None when the command is stopping and it was not sent."""
    backoff = FIRST_BACKOFF
    tries = 0
    while True:
        if stop.is_set():
            return None
        gate.wait()
        tries += 1
        try:
            answer = provider.call_sync(body)
        except ProviderError as e:
            if not e.retryable or tries >= MAX_TRIES_SERVER_ERROR:
                raise
            gate.hold(e.info.retry_after if e.info.retry_after is not None else backoff)
            backoff *= 2
            continue
        status = answer.status
        if status in RETRY_STATUS or status >= 500:
            limit = MAX_TRIES_RATE_LIMITED if status == 429 else MAX_TRIES_SERVER_ERROR
            if tries < limit:
                gate.hold(answer.retry_after if answer.retry_after is not None else backoff)
                backoff *= 2
                continue
            if status == 429:
                raise ProviderError(
                    f"the real-time API kept refusing requests for their rate (HTTP 429, "
                    f"{tries} tries); the rest are sent by the next run", retryable=True,
                    info=ProviderErrorInfo(status=429, request_id=answer.request_id,
                                           retry_after=answer.retry_after))
        return provider.sync_line(custom_id, answer)


def _unanswered(con: duckdb.DuckDBPyConnection, batch_id: str) -> list[tuple[str, str]]:
    """(custom_id, exact body) of the batch's requests that have no line yet."""
    return con.execute(f"""SELECT custom_id, body FROM (
            SELECT DISTINCT ON (r.request_hash) r.request_hash, r.custom_id, r.body
            FROM {SCHEMA}.batch_requests br JOIN {SCHEMA}.requests r USING (request_hash)
            WHERE br.batch_id = ? ORDER BY r.request_hash)
        WHERE custom_id NOT IN (SELECT custom_id FROM {SCHEMA}.realtime_lines
                                WHERE batch_id = ?)
        ORDER BY request_hash""", [batch_id, batch_id]).fetchall()


def send_batch(con: duckdb.DuckDBPyConnection, provider: Provider, batch: LedgerBatch,
               clock: Clock, report: SubmitReport,
               log: Callable[[str], None] = lambda m: None) -> None:
    """Send every request of a realtime batch that has no answer line yet,
    `realtime_concurrency()` at a time, storing each line as it arrives (one short transaction each). A sender takes
    its next request only once its last answer is stored, so a crash loses at most the
    answers in flight at that moment (one per sender). Raises the first error that stopped
    it, after storing every answer that came back."""
    todo = _unanswered(con, batch.batch_id)
    if not todo:
        return
    if batch.state == "intent":
        update_batch(con, batch.batch_id, provider_status="sending",
                     submitted_at=now_utc(), error=None)
    senders = min(realtime_concurrency(provider.env), len(todo))
    log(f"sending {len(todo):,} request(s) through the real-time API "
        f"({provider.name}, {senders:,} at a time)")
    gate, stop = Gate(clock), threading.Event()
    pending: queue.Queue = queue.Queue()
    for item in todo:
        pending.put(item)
    arrived: queue.Queue = queue.Queue()

    def sender() -> None:
        stored = threading.Event()
        try:
            while not stop.is_set():
                try:
                    custom_id, body = pending.get_nowait()
                except queue.Empty:
                    return
                line = send_one(provider, custom_id, body, gate, stop)
                if line is None:
                    return
                stored.clear()
                arrived.put((custom_id, line, stored))
                stored.wait()
        except BaseException as e:   # reported to the main thread, which stops the others
            arrived.put((None, e, None))
        finally:
            arrived.put(None)

    threads = [threading.Thread(target=sender, name=f"wb-realtime-{i}", daemon=True)
               for i in range(senders)]
    for t in threads:
        t.start()
    failure: BaseException | None = None
    sent, running = 0, len(threads)
    while running:
        item = arrived.get()
        if item is None:
            running -= 1
            continue
        custom_id, line, stored = item
        if custom_id is None:
            stop.set()
            failure = failure or line
            continue
        try:
            con.execute(f"INSERT INTO {SCHEMA}.realtime_lines VALUES (?, ?, ?, ?)",
                        [batch.batch_id, custom_id, json.dumps(line), now_utc()])
            sent += 1
            faults.checkpoint("realtime_after_line")
        except BaseException as e:
            stop.set()
            failure = failure or e
        finally:
            stored.set()
    for t in threads:
        t.join()
    report.requests_submitted += sent
    report.requests_realtime += sent
    if failure is not None:
        if isinstance(failure, Exception):
            update_batch(con, batch.batch_id, error=f"real-time send stopped: {failure}")
        raise failure


class _Answered:
    """The batch's provider as collect's ingestion sees it: its "result file" is the
    answer lines stored for the batch, and cleaning up deletes them."""

    def __init__(self, provider: Provider, con: duckdb.DuckDBPyConnection) -> None:
        self._provider, self._con = provider, con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    def download_results(self, batch: LedgerBatch, remote: RemoteBatch,
                         dest: Path) -> list[Path]:
        path = dest / f"{batch.batch_id}.realtime.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for (line,) in self._con.execute(
                    f"SELECT line FROM {SCHEMA}.realtime_lines WHERE batch_id = ?",
                    [batch.batch_id]).fetchall():
                fh.write(line + "\n")
        return [path]

    def cleanup(self, batch: LedgerBatch, remote: RemoteBatch | None) -> None:
        self._con.execute(f"DELETE FROM {SCHEMA}.realtime_lines WHERE batch_id = ?",
                          [batch.batch_id])


def close_batch(con: duckdb.DuckDBPyConnection, provider: Provider, batch: LedgerBatch,
                report: CollectReport) -> None:
    """Ingest a realtime batch as it stands (`cancel`): the answers stored so far are
    recorded; requests without one count as not processed and go with the next run."""
    update_batch(con, batch.batch_id, provider_status="cancelled", ended_at=now_utc())
    remote = RemoteBatch(provider_batch_id=batch.batch_id, status="cancelled", ended=True)
    if ingest(con, _Answered(provider, con), batch, remote, report):
        report.batches_collected += 1


def send_unfinished(con: duckdb.DuckDBPyConnection, job_provider: Provider, job_name: str,
                    clock: Clock, sent: SubmitReport, collected: CollectReport,
                    log: Callable[[str], None] = lambda m: None) -> int:
    """Send and ingest every realtime batch of the job not yet collected (those just
    recorded, and any a crash or a stopped pass left), each through its own provider.
    Adds what it sent and collected into `sent` and `collected` (the command's running
    reports: their snapshot fields, such as batches waiting, are left alone). Returns how
    many batches it collected."""
    providers = BatchProviders(job_provider)
    done = 0
    for batch in unfinished_batches(con, job_name):
        if batch.mode != "realtime":
            continue
        provider = providers.for_batch(batch)
        send_batch(con, provider, batch, clock, sent, log)
        update_batch(con, batch.batch_id, provider_status="completed", ended_at=now_utc())
        remote = RemoteBatch(provider_batch_id=batch.batch_id, status="completed", ended=True)
        if ingest(con, _Answered(provider, con), batch, remote, collected):
            collected.batches_collected += 1
            done += 1
        sent.batch_ids.append(batch.batch_id)
    return done


# -- plan and `try` ----------------------------------------------------------------------------

PLAN_COST_FIELDS = ("est_input_cost_usd", "max_output_cost_usd", "est_output_cost_usd",
                    "est_cost_usd", "worst_case_cost_usd")


def realtime_factor(con: duckdb.DuckDBPyConnection, provider: str, model: str) -> float | None:
    """The real-time price as a multiple of the batch price (`prices.realtime`), or None
    for a model without a price."""
    row = con.execute(f"""SELECT arg_max(p.realtime, length(p.model))
        FROM {SCHEMA}.prices p WHERE p.provider = ? AND starts_with(?, p.model)""",
                      [provider, model]).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def price_plan(con: duckdb.DuckDBPyConnection, prepared: Any, report: Any) -> None:
    """Mark a plan whose requests would go through the real-time API (fewer than the job's
    `realtime_below`): no provider batch, and its cost estimates at real-time prices."""
    below = prepared.spec.realtime_below
    report.realtime_below = below
    if below is None or not 0 < report.requests_to_send < below:
        return
    report.send_mode = "realtime"
    report.batches = 0
    factor = realtime_factor(con, prepared.provider.name, prepared.spec.model)
    for name in PLAN_COST_FIELDS:
        value = getattr(report, name, None)
        if value is not None:
            setattr(report, name, None if factor is None else round(value * factor, 6))


@dataclass
class TryReport:
    """What `try` sent and got: each row tried, with its answer (sent now or cached)."""

    job: str
    provider: str
    model: str
    run_id: str
    rows: list[dict] = field(default_factory=list)
    requests_sent: int = 0
    cost_usd: float | None = None

    @property
    def exit_code(self) -> int:
        if any(r["status"] is None for r in self.rows):
            return 75        # in flight in a batch: its answer comes with the batch
        return 4 if any(r["status"] == "failed" for r in self.rows) else 0

    def to_dict(self) -> dict:
        return asdict(self)


def pick_rows(con: duckdb.DuckDBPyConnection, rows: int, sample: bool) -> int:
    """Temp table `wb_try(_rid, pos)`: the first `rows` rows of the SELECT (in its order),
    or a random sample of them. Returns how many were picked."""
    order = "random()" if sample else "row_number"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_try AS
        SELECT _rid, row_number() OVER (ORDER BY o) AS pos
        FROM (SELECT _rid, {order} AS o FROM wb_current ORDER BY o LIMIT {int(rows)})""")
    return con.execute("SELECT count(*) FROM wb_try").fetchone()[0]


def build_try_send(con: duckdb.DuckDBPyConnection, categories: tuple[str, ...]) -> int:
    """Temp table `wb_send` (as `classify.build_send_table`) for the tried rows only:
    those whose request has no answer cached and is not in flight."""
    return build_send_table(con, categories, only_rows_in="wb_try")


def tried_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    """Each tried row: its key, prompt, and the cached answer of its request (`source`:
    `sent` by this command, `cached` before, or `in_flight` in a batch not yet ended)."""
    # a row answered before is not rendered again (wb_prompt lacks it): its stored prompt
    rows = con.execute(f"""SELECT c.key_json, coalesce(p.prompt, q.prompt), c.request_hash,
            r.status, r.response_text, len(r.embedding), r.error_message, r.finish_reason,
            r.input_tokens, r.output_tokens, r.run_id = ? AS sent_now
        FROM wb_try t JOIN wb_current c USING (_rid) LEFT JOIN wb_prompt p USING (_rid)
        LEFT JOIN {SCHEMA}.results r USING (request_hash)
        LEFT JOIN (SELECT request_hash, any_value(prompt) AS prompt FROM {SCHEMA}.requests
                   WHERE request_hash IN (SELECT c2.request_hash FROM wb_try t2
                                          JOIN wb_current c2 USING (_rid))
                   GROUP BY request_hash) q USING (request_hash)
        ORDER BY t.pos""", [run_id]).fetchall()
    out = []
    for (key, prompt, rhash, status, text, dims, error, finish, tin, tout, now) in rows:
        out.append({
            "key": json.loads(key), "prompt": prompt, "request_hash": rhash,
            "status": status, "answer": text,
            "embedding_dimensions": dims, "error": error, "finish_reason": finish,
            "input_tokens": tin, "output_tokens": tout,
            "source": "in_flight" if status is None else "sent" if now else "cached"})
    return out
