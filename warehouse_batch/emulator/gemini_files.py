"""Gemini File objects: creation, lookup and rendering (the Files API's ``File`` resource).

A file is ``files/<id>`` (lowercase letters and digits). Uploaded files are ``UPLOADED``
and cannot be downloaded; a batch's responses file is ``GENERATED`` and carries a
``downloadUri`` (``files/<id>:download?alt=media``). Files live 48 hours (``expirationTime``)
and are kept in the shared store under the protocol name ``gemini``.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Callable

from .ids import hex_token
from .store import Store

TTL = 48 * 3600
PROTOCOL = "gemini"


def create(store: Store, *, display_name: str, mime_type: str, created_at: float, source: str,
           write: Callable[[BinaryIO], Any]) -> dict[str, Any]:
    """Store a new file whose bytes `write` writes to the handle it is given."""
    seq = store.next_seq()
    file_id = hex_token(12, store.id_seed, "gemini-file", seq)
    with store.file_writer(file_id) as handle:
        write(handle)
        size = handle.tell()
    rec = {"id": file_id, "seq": seq, "protocol": PROTOCOL, "display_name": display_name,
           "mime_type": mime_type, "bytes": size, "created_at": created_at,
           "expires_at": created_at + TTL, "source": source}
    store.put_file(rec)
    return rec


def find(store: Store, file_id: str, now: float) -> dict[str, Any] | None:
    """A live Gemini file, or None (missing, another protocol's, or expired)."""
    rec = store.files.get(file_id)
    if rec is None or rec.get("protocol") != PROTOCOL or now >= rec["expires_at"]:
        return None
    return rec


def render(rec: dict[str, Any], origin: str) -> dict[str, Any]:
    """The public File resource."""
    from .gemini_batches import API_VERSION, rfc3339

    out = {"name": f"files/{rec['id']}", "displayName": rec["display_name"],
           "mimeType": rec["mime_type"], "sizeBytes": str(rec["bytes"]),
           "createTime": rfc3339(rec["created_at"]), "updateTime": rfc3339(rec["created_at"]),
           "expirationTime": rfc3339(rec["expires_at"]),
           "sha256Hash": "", "uri": f"{origin}/{API_VERSION}/files/{rec['id']}",
           "state": "ACTIVE", "source": rec["source"]}
    if rec["source"] == "GENERATED":
        out["downloadUri"] = f"{origin}/{API_VERSION}/files/{rec['id']}:download?alt=media"
    return out
