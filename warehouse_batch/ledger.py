"""The ledger: every batch's state transitions (`update_batch`, the lists of unfinished and
submitted batches) and its safety rules: batches the provider forgot, batches that are not ours, and the
provider each batch belongs to.

* **Each batch is reached through the provider recorded in its row** (`batches.provider`),
  whatever the job file says now: switching `provider` while batches run must not poll them
  through the new one. That provider is built from the job's spec without the job file's
  provider settings (they belong to the new provider); its environment settings apply.
* **Lost.** A batch the provider answers 404 for, twice, is marked `lost` with the reason:
  nothing is recorded from it, its requests are no longer in flight (so the next submit
  sends them again, without spending an attempt), and the user is warned. A key or project
  rotation, or a deleted batch, then costs a re-send instead of stranding the job for ever.
* **Foreign.** An adopted candidate that turns out to hold other requests is recorded in
  `foreign_batches` (never adopted again, nothing recorded from it) and our batch goes back to
  `creating`: looked up again, then created.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import duckdb

from .errors import ProviderError
from .providers.base import LedgerBatch, Provider, RemoteBatch, get_provider
from .keys import redact
from .state import SCHEMA, fetch_dicts, now_utc

NOT_FOUND = 404


class BatchProviders:
    """The provider each ledger batch was sent to, built once per provider name."""

    def __init__(self, job_provider: Provider):
        self.job = job_provider
        self._built: dict[str, Provider] = {job_provider.name: job_provider}

    def for_batch(self, batch: LedgerBatch) -> Provider:
        """The provider recorded for `batch` (the job's own when the row names none)."""
        name = batch.provider or self.job.name
        if name not in self._built:
            spec = dataclasses.replace(self.job.spec, provider=name, provider_options={})
            self._built[name] = get_provider(spec, self.job.env)
        return self._built[name]


def is_not_found(error: ProviderError) -> bool:
    """Whether the provider said it does not know the thing asked about (HTTP 404)."""
    return error.info.status == NOT_FOUND


def retrieve_or_lose(con: duckdb.DuckDBPyConnection, provider: Provider,
                     batch: LedgerBatch) -> RemoteBatch | None:
    """The batch's state, or None after marking it lost (404, confirmed by a second call).

    Any other error propagates: only "not found" is evidence the batch is gone.
    """
    try:
        return provider.retrieve(batch)
    except ProviderError as e:
        if not is_not_found(e):
            raise
    try:   # one confirming call: a 404 from a flaky proxy must not lose a paid batch
        return provider.retrieve(batch)
    except ProviderError as e:
        if not is_not_found(e):
            raise
        mark_lost(con, batch, provider.name, str(e))
        return None


def mark_lost(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, provider_name: str,
              reason: str) -> str:
    """Record that the provider no longer knows `batch`; returns the warning to show."""
    message = (f"batch {batch.batch_id} ({batch.provider_batch_id or 'no provider id'}) is "
               f"unknown to {provider_name}: {reason}. Marked lost; its "
               f"{batch.request_count:,} request(s) will be sent again by the next run")
    update_batch(con, batch.batch_id, state="lost", error=message, ended_at=now_utc())
    batch.state = "lost"
    return message


def release_foreign(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, provider_name: str,
                    reason: str) -> str:
    """An adopted batch proved not ours: remember it as foreign, and send our batch back to
    `creating` (looked up, then created). Returns the warning to show."""
    message = (f"batch {batch.batch_id}: the adopted provider batch {batch.provider_batch_id} "
               f"is not ours ({reason}); released, nothing recorded from it, and our batch "
               "will be looked up or created again")
    con.execute(f"INSERT INTO {SCHEMA}.foreign_batches VALUES (?, ?, ?, ?, ?)",
                [provider_name, batch.provider_batch_id, batch.batch_id, reason, now_utc()])
    update_batch(con, batch.batch_id, state="creating", provider_batch_id=None,
                 provider_status=None, output_file_id=None, error_file_id=None, counts=None,
                 submitted_at=None, ended_at=None, proven=None, error=message)
    batch.state, batch.provider_batch_id, batch.proven = "creating", None, None
    return message


def known_batch_ids(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Provider batch ids a lookup must never adopt: owned by the ledger, or proven foreign."""
    return frozenset(r[0] for r in con.execute(
        f"""SELECT provider_batch_id FROM {SCHEMA}.batches WHERE provider_batch_id IS NOT NULL
            UNION SELECT provider_batch_id FROM {SCHEMA}.foreign_batches""").fetchall())


def lost_batches(con: duckdb.DuckDBPyConnection, job_name: str) -> list[dict]:
    """The job's lost batches, for reports: ids, provider and why."""
    rows = fetch_dicts(con, f"""SELECT batch_id, provider_batch_id, provider, request_count,
            error AS reason FROM {SCHEMA}.batches
        WHERE job_name = ? AND state = 'lost' ORDER BY batch_id""", [job_name])
    return rows


def update_batch(con: duckdb.DuckDBPyConnection, batch_id: str, **fields: Any) -> None:
    """Record a ledger step for one batch; committed immediately (autocommit)."""
    if not fields:
        return
    cols = ", ".join(f"{k} = ?" for k in fields)
    if isinstance(fields.get("error"), str):
        fields["error"] = redact(fields["error"])   # provider messages may quote a key
    values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
    if "provider_status" in fields:   # since when (health.py); SET reads the row before
        cols += (", status_since = CASE WHEN provider_status IS DISTINCT FROM ? THEN ? "
                 "ELSE coalesce(status_since, ?) END")
        now = now_utc()
        values += [fields["provider_status"], now, now]
    con.execute(f"UPDATE {SCHEMA}.batches SET {cols} WHERE batch_id = ?", [*values, batch_id])


UNFINISHED_SUBMIT = ("intent", "uploaded", "creating")


def unfinished_batches(con: duckdb.DuckDBPyConnection, job_name: str) -> list[LedgerBatch]:
    rows = fetch_dicts(con, f"""SELECT * FROM {SCHEMA}.batches
        WHERE job_name = ? AND state IN ('intent', 'uploaded', 'creating')
        ORDER BY created_at, batch_id""", [job_name])
    return [LedgerBatch.from_row(r) for r in rows]


def submitted_batches(con: duckdb.DuckDBPyConnection, job_name: str) -> list[LedgerBatch]:
    """The job's submitted batches that can be polled (a row without a provider batch id is
    damaged: `submit.recover_orphans` looks it up before anything is created)."""
    rows = fetch_dicts(con, f"""SELECT * FROM {SCHEMA}.batches
        WHERE job_name = ? AND state = 'submitted' AND provider_batch_id IS NOT NULL
        ORDER BY batch_id""", [job_name])
    return [LedgerBatch.from_row(r) for r in rows]


def record_poll(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, remote: RemoteBatch) -> None:
    """Record what polling a batch found (its status, counts and files; when it ended)."""
    update_batch(con, batch.batch_id, provider_status=remote.status, counts=remote.counts,
                 last_polled_at=now_utc(), output_file_id=remote.output_file_id,
                 error_file_id=remote.error_file_id,
                 **({"ended_at": now_utc()} if remote.ended else {}))
