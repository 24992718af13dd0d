"""Enqueued-token budgets: how much work a provider takes at once, learned and respected.

OpenAI (and Azure, and OpenAI-compatible services) cap, per organisation and model, the input
tokens of all batches not yet finished. A batch that would pass the cap is refused with
`token_limit_exceeded`: asynchronously (the batch ends `failed`, its message stating
`Limit: N enqueued tokens`) or, on Azure, synchronously (HTTP 400 on create). Either is
capacity, not an error: nothing ran, no attempt is spent.

This module keeps what is known about that cap (`warehouse_batch.capacity`, per provider and
model, shared by every job in the file) and answers three questions for `submit` and `plan`:
how large a chunk may be (`token_limit`), whether a batch may be created now (`wait_reason`:
the estimated tokens of the batches in flight plus its own must fit), and how many waves a
job will take (`waves`). A single request larger than the limit can never be sent; it fails
permanently (`fail_oversized`) until the limit or the request changes.

Every estimate is the same one, `estimate.py`'s: input tokens from the characters of each
request's message text (system prompt + prompt, not the JSON framing), with the documented
per-model ratio until the job's own billed usage teaches a better one. Each batch's sum is
`batches.est_tokens`. An estimate is not a count (a learned one is right on average, so a
chunk packed to the limit would pass it half the time, and be refused again on every pass):
chunks, and the batches in flight together, are kept under `HEADROOM` of the limit
(`usable`); a batch goes alone, whatever its estimate under the limit, when nothing else is
in flight.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable

import duckdb

from .errors import ProviderError
from .providers.base import LedgerBatch, Limits, Provider
from .state import SCHEMA, now_utc

CAPACITY_CODE = "token_limit_exceeded"
OVERSIZED_CODE = "enqueued_token_limit"   # results.error_code of a request too large to send
SETTING_HINT = ("set enqueued_token_limit=N in the config block or pass "
                "--enqueued-token-limit N")
_LIMIT_RE = re.compile(r"Limit:\s*([0-9][0-9,._ ]*)", re.IGNORECASE)
IN_FLIGHT_STATES = ("creating", "submitted")
HEADROOM = 0.9     # the share of a limit estimated tokens may fill (see the module docstring)


def usable(limit: int) -> int:
    """The estimated tokens chunks and in-flight batches may fill under `limit`."""
    return int(limit * HEADROOM)


def parse_limit(message: str | None) -> int | None:
    """The limit a `token_limit_exceeded` message states (`Limit: 2,000,000 ...`), if any."""
    if not message:
        return None
    m = _LIMIT_RE.search(message)
    if not m:
        return None
    digits = re.sub(r"[^0-9]", "", m.group(1))
    return int(digits) if digits else None


def is_capacity_refusal(error: ProviderError) -> bool:
    """Whether a refused call is the provider saying "too many enqueued tokens" (Azure's
    synchronous 400 on create): capacity, to wait for, not a bad request."""
    return error.info.code == CAPACITY_CODE or CAPACITY_CODE in str(error)


def learn(con: duckdb.DuckDBPyConnection, provider: str, model: str, limit: int,
          message: str | None) -> None:
    """Remember the limit the provider stated for `provider` and `model`."""
    con.execute(f"""INSERT OR REPLACE INTO {SCHEMA}.capacity
        (provider, model, enqueued_token_limit, message, learned_at) VALUES (?, ?, ?, ?, ?)""",
                [provider, model, limit, message, now_utc()])


def learn_from_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """Learn the limits stated by batches that failed for capacity since the last lesson
    (`collect` stores the failed batch's message in `batches.error`)."""
    rows = con.execute(f"""SELECT b.provider, b.model, b.error
        FROM {SCHEMA}.batches b LEFT JOIN {SCHEMA}.capacity c USING (provider, model)
        WHERE b.provider_status = 'failed' AND contains(b.error, '{CAPACITY_CODE}')
          AND b.ended_at IS NOT NULL AND (c.learned_at IS NULL OR b.ended_at > c.learned_at)
        ORDER BY b.ended_at""").fetchall()
    for provider, model, error in rows:
        limit = parse_limit(error)
        if limit is not None:
            learn(con, provider, model, limit, error)


def token_limit(con: duckdb.DuckDBPyConnection, provider: str, model: str,
                configured: int | None) -> int | None:
    """The enqueued-token limit to respect: the smaller of the setting
    (`enqueued_token_limit` / `--enqueued-token-limit`) and the one the provider stated."""
    row = con.execute(f"""SELECT enqueued_token_limit FROM {SCHEMA}.capacity
        WHERE provider = ? AND model = ?""", [provider, model]).fetchone()
    known = [v for v in (configured, row[0] if row else None) if v is not None]
    return min(known) if known else None


def in_flight_tokens(con: duckdb.DuckDBPyConnection, provider: str, model: str) -> int:
    """Estimated tokens of the batches the provider may still hold for `model`: created (or
    being created) and not seen ended, across every job in the file."""
    states = ", ".join(f"'{s}'" for s in IN_FLIGHT_STATES)
    return con.execute(f"""SELECT coalesce(sum(est_tokens), 0) FROM {SCHEMA}.batches
        WHERE provider = ? AND model = ? AND state IN ({states}) AND ended_at IS NULL""",
                       [provider, model]).fetchone()[0]


def wait_reason(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, provider: str,
                limit: int | None) -> str | None:
    """Why `batch` must not be created yet (None: it may go now)."""
    if limit is None or batch.est_tokens is None:
        return None
    in_flight = in_flight_tokens(con, provider, batch.model)
    if batch.est_tokens <= limit and (in_flight == 0
                                      or in_flight + batch.est_tokens <= usable(limit)):
        return None
    if batch.est_tokens > limit:
        return (f"batch {batch.batch_id} ({batch.est_tokens:,} estimated tokens) passes the "
                f"enqueued-token limit of {limit:,} for {batch.model} at {provider}: its "
                "requests are cut again into smaller batches on the next pass")
    return (f"batch {batch.batch_id} ({batch.est_tokens:,} estimated tokens) waits: "
            f"{in_flight:,} tokens are enqueued at {provider} for {batch.model} and the "
            f"enqueued-token limit is {limit:,} (estimates fill {HEADROOM:.0%} of it); it is "
            "created once running batches finish (run --wait, or run again later)")


def waves(chunk_tokens: Iterable[int], limit: int | None) -> int:
    """How many rounds of batches the chunks take under `limit`, packed in order (each
    round starts when the previous one has finished)."""
    count, used = 0, None
    for tok in chunk_tokens:
        if used is None or limit is None or used + tok > limit:
            count, used = count + 1, 0
        used += tok
    return count


def oversized_message(tokens_sql: str, limit: int, provider: str, model: str) -> str:
    """SQL for the error of a request that alone passes the limit."""
    return (f"'request of about ' || format('{{:,}}', {tokens_sql}) || ' estimated tokens is "
            f"larger than the enqueued-token limit of {limit:,} for {provider} {model}: it can "
            f"never be sent in a batch. Shorten the prompt, or if the provider allows more, "
            f"{SETTING_HINT} (a limit learned from the provider is kept in "
            f"warehouse_batch.capacity)'")


def fail_oversized(con: duckdb.DuckDBPyConnection, todo: str, limit: int | None, provider: str,
                   model: str) -> int:
    """Requests of temp table `todo` (request_hash, ntok) that alone pass `limit`
    end failed, permanently (not retryable), and leave `todo`. Returns how many."""
    if limit is None:
        return 0
    n = con.execute(f"SELECT count(*) FROM {todo} WHERE ntok > ?", [limit]).fetchone()[0]
    if not n:
        return 0
    con.execute(f"""DELETE FROM {SCHEMA}.results WHERE status <> 'succeeded'
        AND request_hash IN (SELECT request_hash FROM {todo} WHERE ntok > ?)""", [limit])
    con.execute(f"""INSERT INTO {SCHEMA}.results (request_hash, status, retryable,
            error_type, error_code, error_message, attempts, failures, updated_at)
        SELECT request_hash, 'failed', false, 'capacity',
               '{OVERSIZED_CODE}',
               {oversized_message('ntok', limit, provider, model)}, 0, 0, ?
        FROM {todo} WHERE ntok > ?""", [now_utc(), limit])
    con.execute(f"DELETE FROM {todo} WHERE ntok > ?", [limit])
    return n


def release_oversized(con: duckdb.DuckDBPyConnection) -> None:
    """Forget the 'too large for the limit' failures of the current rows (temp table
    `wb_current`): they are judged again against today's limit before anything is sent."""
    con.execute(f"""DELETE FROM {SCHEMA}.results WHERE status = 'failed'
        AND error_code = '{OVERSIZED_CODE}'
        AND request_hash IN (SELECT request_hash FROM wb_current)""")


def configured_limit(provider: Provider, provider_name: str, model: str) -> int | None:
    """The job's `enqueued_token_limit` (or `--enqueued-token-limit`), for its own provider
    and model only: a batch sent elsewhere earlier is judged by what was learned there."""
    spec = provider.spec
    if spec.provider == provider_name and spec.model == model:
        return spec.enqueued_token_limit
    return None


def limit_for_batch(con: duckdb.DuckDBPyConnection, provider: Provider,
                    batch: LedgerBatch) -> int | None:
    """The enqueued-token limit that applies to one ledger batch."""
    name = batch.provider or provider.name
    return token_limit(con, name, batch.model, configured_limit(provider, name, batch.model))


def budget_limits(con: duckdb.DuckDBPyConnection,
                  provider: Provider) -> tuple[Limits, int | None]:
    """The job's chunk limits with the enqueued-token limit's usable share folded into
    `max_tokens`, and that limit (None when unknown)."""
    limits = provider.effective_limits()
    limit = token_limit(con, provider.name, provider.spec.model,
                        configured_limit(provider, provider.name, provider.spec.model))
    if limit is not None and (limits.max_tokens is None or usable(limit) < limits.max_tokens):
        limits = dataclasses.replace(limits, max_tokens=usable(limit))
    return limits, limit
