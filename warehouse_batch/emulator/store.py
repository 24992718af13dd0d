"""The emulator's state: files, batches, logs and bookkeeping, over a backend.

The store keeps every record in memory for fast access and writes each change
through to the backend (see :mod:`.persist`), so that a new store built over
the same directory continues where the last one stopped. Records stay small: the
per-request data of a batch (its requests, processing order, results and the outcome of
each request) lives in blobs on disk and is read only while a batch is created or ends.

The processed log (every request of every ended batch, with its outcome) is kept as one
blob per batch, ``processed/<batch_id>``, one ``<outcome>\t<custom_id as JSON>`` line per
request in processing order, plus one small log entry per batch naming it; it is expanded
into ``{protocol, batch_id, custom_id, outcome, billed}`` entries only when asked for.

Records are plain dicts. Every file and batch gets a ``seq`` number from one
monotonic counter; "newest first" means "highest seq first", which stays
correct when the emulated clock is moved backwards. Deleted ids keep their
``seq`` as a tombstone so that a pagination cursor naming a deleted object
still works.
"""
from __future__ import annotations

import json
from array import array
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from .ids import object_id
from .persist import Backend

SETTINGS_DOCS = {"config", "clock"}
REQUEST_LOG = "requests"
PROCESSED_LOG = "processed"


class Store:
    """In-memory indexes over a persistence backend (one instance per emulator)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.meta: dict[str, Any] = backend.read_doc("meta") or {"counter": 0, "tombstones": {}, "cache": []}
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        for key in backend.list_docs("files"):
            rec = backend.read_doc(key)
            if rec:
                self.files[rec["id"]] = rec
        for key in backend.list_docs("batches"):
            rec = backend.read_doc(key)
            if rec:
                self.batches[rec["id"]] = rec
        self._cache = set(self.meta.get("cache", []))
        self._processed_log = backend.read_log(PROCESSED_LOG)
        self.id_seed = 0  # set by the emulator from config.seed

    def new_id(self, kind: str) -> tuple[str, int]:
        """Return a fresh (id, seq) pair for a 'file', 'batch' or 'msgbatch'."""
        seq = self.next_seq()
        return object_id(kind, self.id_seed, seq), seq

    # -- bookkeeping -------------------------------------------------------
    def next_seq(self) -> int:
        """Return the next creation number (also used to derive ids)."""
        self.meta["counter"] = int(self.meta.get("counter", 0)) + 1
        self._save_meta()
        return self.meta["counter"]

    def _save_meta(self) -> None:
        self.meta["cache"] = sorted(self._cache)
        self.backend.write_doc("meta", self.meta)

    def order_key(self, object_id: str) -> int | None:
        """Return the seq of a live or deleted object, or None if it never existed."""
        rec = self.files.get(object_id) or self.batches.get(object_id)
        if rec is not None:
            return int(rec["seq"])
        tomb = self.meta.get("tombstones", {}).get(object_id)
        return None if tomb is None else int(tomb)

    def cache_seen(self, key: str) -> bool:
        """Return whether a prompt-cache prefix was seen before, and mark it as seen."""
        if key in self._cache:
            return True
        self._cache.add(key)
        self._save_meta()
        return False

    # -- settings ----------------------------------------------------------
    def load_setting(self, name: str) -> Any | None:
        """Return a persisted settings document ('config' or 'clock')."""
        return self.backend.read_doc(name)

    def save_setting(self, name: str, value: Any) -> None:
        """Persist a settings document ('config' or 'clock')."""
        self.backend.write_doc(name, value)

    # -- files -------------------------------------------------------------
    def put_file(self, rec: dict[str, Any], data: bytes | None = None) -> None:
        """Save a file record and, when given, its bytes."""
        if data is not None:
            self.backend.write_blob(f"files/{rec['id']}", data)
        self.files[rec["id"]] = rec
        self.backend.write_doc(f"files/{rec['id']}", rec)

    def file_data(self, file_id: str) -> bytes:
        """Return the stored bytes of a file (small files only; large ones are opened)."""
        return self.backend.read_blob(f"files/{file_id}") or b""

    def open_file(self, file_id: str) -> BinaryIO | None:
        """Open a file's bytes for reading (the caller closes the handle), or None."""
        return self.backend.open_blob(f"files/{file_id}")

    def file_writer(self, file_id: str) -> AbstractContextManager[BinaryIO]:
        """Write a file's bytes through a handle (they appear when the block ends cleanly)."""
        return self.backend.blob_writer(f"files/{file_id}")

    def remove_file(self, file_id: str) -> None:
        """Delete a file and its bytes, keeping a tombstone for cursors."""
        rec = self.files.pop(file_id, None)
        if rec is None:
            return
        self.meta.setdefault("tombstones", {})[file_id] = rec["seq"]
        self._save_meta()
        self.backend.delete_doc(f"files/{file_id}")
        self.backend.delete_blob(f"files/{file_id}")

    # -- batches -----------------------------------------------------------
    def put_batch(self, rec: dict[str, Any]) -> None:
        """Save a batch record."""
        self.batches[rec["id"]] = rec
        self.backend.write_doc(f"batches/{rec['id']}", rec)

    def put_blob(self, key: str, data: bytes) -> None:
        """Save an auxiliary blob (batch requests, Anthropic results)."""
        self.backend.write_blob(key, data)

    def blob(self, key: str) -> bytes:
        """Return an auxiliary blob (empty if missing)."""
        return self.backend.read_blob(key) or b""

    def open_blob(self, key: str) -> BinaryIO | None:
        """Open an auxiliary blob for reading (the caller closes it), or None."""
        return self.backend.open_blob(key)

    def blob_writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Write an auxiliary blob through a handle."""
        return self.backend.blob_writer(key)

    def copy_file_to_blob(self, file_id: str, key: str) -> None:
        """Keep a file's current bytes as an auxiliary blob (a batch's requests), cheaply."""
        self.backend.link_blob(f"files/{file_id}", key)

    def put_order(self, batch_id: str, order: list[int]) -> None:
        """Save a batch's processing order (request indexes) as a compact blob."""
        self.backend.write_blob(f"plans/{batch_id}", array("I", order).tobytes())

    def order(self, rec: dict[str, Any]) -> array:
        """Return a batch's processing order (request indexes)."""
        if "order" in rec:  # a record written before orders moved to blobs
            return array("I", rec["order"])
        out = array("I")
        out.frombytes(self.backend.read_blob(f"plans/{rec['id']}") or b"")
        return out

    def remove_batch(self, batch_id: str) -> None:
        """Delete a batch and its blobs, keeping a tombstone for cursors."""
        rec = self.batches.pop(batch_id, None)
        if rec is None:
            return
        self.meta.setdefault("tombstones", {})[batch_id] = rec["seq"]
        self._save_meta()
        self.backend.delete_doc(f"batches/{batch_id}")
        self.backend.delete_blob(f"requests/{batch_id}")
        self.backend.delete_blob(f"results/{batch_id}")
        self.backend.delete_blob(f"plans/{batch_id}")

    # -- logs --------------------------------------------------------------
    def log_request(self, entry: dict[str, Any]) -> None:
        """Record one received provider call."""
        self.backend.append_log(REQUEST_LOG, [entry])

    def log_processed(self, protocol: str, batch_id: str, outcomes: Iterable[tuple[str, str]]) -> None:
        """Record the per-request (custom_id, outcome) pairs of a batch that just ended,
        in processing order (see the module docstring for the format)."""
        dumps = json.dumps
        with self.backend.blob_writer(f"processed/{batch_id}") as handle:
            chunk: list[str] = []
            for custom_id, outcome in outcomes:
                chunk.append(f"{outcome}\t{dumps(custom_id)}\n")
                if len(chunk) >= 4096:
                    handle.write("".join(chunk).encode("utf-8"))
                    chunk.clear()
            handle.write("".join(chunk).encode("utf-8"))
        segment = {"protocol": protocol, "batch_id": batch_id, "segment": True}
        self._processed_log.append(segment)
        self.backend.append_log(PROCESSED_LOG, [segment])

    def request_log(self) -> list[dict[str, Any]]:
        """Return all received provider calls, oldest first."""
        return self.backend.read_log(REQUEST_LOG)

    def processed_log(self) -> list[dict[str, Any]]:
        """Return all per-request outcomes of ended batches, oldest first."""
        return list(self.iter_processed())

    def iter_processed(self) -> Iterator[dict[str, Any]]:
        """Yield the per-request outcomes of ended batches, oldest first, one batch in memory
        at a time."""
        for entry in list(self._processed_log):
            if not entry.get("segment"):  # an entry written before the log became per batch
                yield entry
                continue
            protocol, batch_id = entry["protocol"], entry["batch_id"]
            handle = self.backend.open_blob(f"processed/{batch_id}")
            if handle is None:
                continue
            with handle:
                for raw in handle:
                    outcome, _, custom_id = raw.decode("utf-8").rstrip("\n").partition("\t")
                    yield {"protocol": protocol, "batch_id": batch_id, "custom_id": json.loads(custom_id),
                           "outcome": outcome, "billed": outcome == "succeeded"}

    # -- reset -------------------------------------------------------------
    def reset(self) -> None:
        """Forget files, batches, logs and caches; keep the settings documents and the id counter."""
        counter = self.meta.get("counter", 0)
        self.backend.wipe(SETTINGS_DOCS)
        self.files.clear()
        self.batches.clear()
        self._cache.clear()
        self._processed_log.clear()
        self.meta = {"counter": counter, "tombstones": {}, "cache": []}
        self._save_meta()


class CursorError(ValueError):
    """A pagination cursor names an object that never existed."""


def paginate(
    records: list[dict[str, Any]],
    *,
    order_key: Callable[[str], int | None],
    limit: int,
    after: str | None = None,
    before: str | None = None,
    ascending: bool = False,
) -> tuple[list[dict[str, Any]], bool]:
    """Return one page of records and whether more exist in the direction of travel.

    ``records`` may be in any order; they are sorted by seq (newest first unless
    ``ascending``). ``after`` returns the items that follow the cursor in that
    order; ``before`` the ones that precede it (the closest ``limit`` of them).
    """
    ordered = sorted(records, key=lambda r: r["seq"], reverse=not ascending)
    if after is not None:
        seq = order_key(after)
        if seq is None:
            raise CursorError(after)
        rest = [r for r in ordered if (r["seq"] > seq if ascending else r["seq"] < seq)]
        return rest[:limit], len(rest) > limit
    if before is not None:
        seq = order_key(before)
        if seq is None:
            raise CursorError(before)
        ahead = [r for r in ordered if (r["seq"] < seq if ascending else r["seq"] > seq)]
        return ahead[-limit:], len(ahead) > limit
    return ordered[:limit], len(ordered) > limit
