"""OpenAI/Azure File objects: creation, lookup with expiry, and rendering.

Files belong to one protocol namespace ("openai" or "azure"): a file uploaded
through ``/openai/files`` is not visible under ``/v1/files`` and vice versa.
A file whose ``expires_at`` has passed behaves as if it were deleted.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Callable

from .store import Store

THIRTY_DAYS = 30 * 24 * 3600
PUBLIC_KEYS = ("id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status", "status_details")


def create_file(
    store: Store,
    *,
    protocol: str,
    filename: str,
    purpose: str,
    data: bytes | None = None,
    write: Callable[[BinaryIO], Any] | None = None,
    created_at: float,
    expires_at: int | None,
) -> dict[str, Any]:
    """Store a new File and return its record. Its bytes are ``data``, or whatever ``write``
    writes to the handle it is given (for large contents, which are never held in memory)."""
    file_id, seq = store.new_id("file")
    with store.file_writer(file_id) as handle:
        if write is not None:
            write(handle)
        else:
            handle.write(data or b"")
        size = handle.tell()
    rec = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(created_at),
        "expires_at": expires_at,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "seq": seq,
        "protocol": protocol,
    }
    store.put_file(rec)
    return rec


def find_file(store: Store, file_id: str, protocol: str, now: float) -> dict[str, Any] | None:
    """Return a live file of this protocol namespace, or None (missing, foreign or expired)."""
    rec = store.files.get(file_id)
    if rec is None or rec.get("protocol") != protocol:
        return None
    if rec.get("expires_at") is not None and now >= rec["expires_at"]:
        return None
    return rec


def render_file(rec: dict[str, Any]) -> dict[str, Any]:
    """Return the public File object."""
    return {key: rec.get(key) for key in PUBLIC_KEYS}
