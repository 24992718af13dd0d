"""OpenAI/Azure Files API handlers: upload, list, retrieve, delete, content.

Uploads are ``multipart/form-data`` with ``purpose``, ``file`` (with a
filename) and optionally ``expires_after[anchor]=created_at`` and
``expires_after[seconds]`` (3600..2592000). Files with purpose ``batch``
expire after 30 days unless told otherwise. Content is returned byte for byte.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import multipart
from .openai_files import THIRTY_DAYS, create_file, find_file, render_file
from .store import CursorError, paginate
from .wire import Request, Response, int_param, json_response, openai_error

if TYPE_CHECKING:
    from .app import Emulator

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024


def _missing(file_id: str) -> Response:
    return openai_error(404, f"No such File object: {file_id}", "invalid_request_error", "id", None)


def upload(app: Emulator, req: Request, protocol: str) -> Response:
    """Handle ``POST /files``."""
    ctype = req.header("content-type") or ""
    if not ctype.lower().startswith("multipart/form-data"):
        return openai_error(400, "Invalid Content-Type header: expected multipart/form-data.", "invalid_request_error",
                            None, None)
    with req.raw_body() as raw:
        try:
            parts = {p.name: p for p in multipart.parse(raw, ctype)}
        except multipart.MultipartError as exc:
            return openai_error(400, f"Could not parse multipart form: {exc}", "invalid_request_error", None,
                                None)
        return _upload(app, parts, protocol)


def _upload(app: Emulator, parts: dict[str, multipart.Part], protocol: str) -> Response:
    """Check the form fields and store the file (the body stays mapped meanwhile)."""
    upload_part = parts.get("file")
    if upload_part is None or upload_part.filename is None:
        return openai_error(400, "Missing required parameter: 'file'.", "invalid_request_error", "file", None)
    if "purpose" not in parts:
        return openai_error(400, "Missing required parameter: 'purpose'.", "invalid_request_error", "purpose", None)
    purpose = parts["purpose"].text()
    if purpose not in PURPOSES:
        return openai_error(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", "invalid_request_error",
                            "purpose", None)
    if upload_part.size > MAX_UPLOAD_BYTES:
        return openai_error(400, f"File is too large: maximum size is {MAX_UPLOAD_BYTES} bytes.",
                            "invalid_request_error", "file", None)
    now = app.now()
    ttl: int | None = THIRTY_DAYS if purpose == "batch" else None
    anchor, seconds = parts.get("expires_after[anchor]"), parts.get("expires_after[seconds]")
    if anchor is not None or seconds is not None:
        if anchor is None or anchor.text() != "created_at":
            return openai_error(400, "Invalid value for 'expires_after.anchor': expected 'created_at'.",
                                "invalid_request_error", "expires_after.anchor", None)
        try:
            ttl = int(seconds.text()) if seconds is not None else -1
        except ValueError:
            ttl = -1
        if not 3600 <= ttl <= 2_592_000:
            return openai_error(400, "Invalid value for 'expires_after.seconds': must be between 3600 and 2592000.",
                                "invalid_request_error", "expires_after.seconds", None)
    rec = create_file(app.store, protocol=protocol, filename=upload_part.filename, purpose=purpose,
                      write=upload_part.write_to, created_at=now,
                      expires_at=None if ttl is None else int(now) + ttl)
    return json_response(200, render_file(rec))


def azure_ga_listing(req: Request, protocol: str) -> bool:
    """Whether a file listing is Azure's GA shape: ``/openai/files?api-version=<GA date>``."""
    version = req.query.get("api-version") or ""
    return protocol == "azure" and bool(version) and not version.endswith("-preview") \
        and not req.path.startswith("/openai/v1/")


def list_files(app: Emulator, req: Request, protocol: str) -> Response:
    """Handle ``GET /files`` (cursor pagination, newest first unless ``order=asc``).

    Azure at a GA api-version (2024-10-21) takes only ``purpose`` and answers
    ``{data, object}``: every file, oldest first, no ``has_more``/``first_id``/``last_id``;
    ``after``, ``limit`` and ``order`` are ignored (the spec's ``examples/get_files.json``).
    The openai SDK's cursor page then asks again with ``after=<last id>`` and gets the same
    page: a client must stop on the repeated cursor."""
    if azure_ga_listing(req, protocol):
        purpose, now = req.query.get("purpose"), app.now()
        every = sorted((rec for rec in app.store.files.values()
                        if find_file(app.store, rec["id"], protocol, now)
                        and (not purpose or rec["purpose"] == purpose)), key=lambda r: r["seq"])
        return json_response(200, {"data": [render_file(rec) for rec in every], "object": "list"})
    limit = int_param(req.query, "limit", 10_000, 1, 10_000)
    order = req.query.get("order", "desc")
    if order not in ("asc", "desc"):
        return openai_error(400, "Invalid 'order': expected 'asc' or 'desc'.", "invalid_request_error", "order", None)
    now = app.now()
    purpose = req.query.get("purpose")
    visible = [
        rec for rec in app.store.files.values()
        if find_file(app.store, rec["id"], protocol, now) and (not purpose or rec["purpose"] == purpose)
    ]
    try:
        page, more = paginate(visible, order_key=app.store.order_key, limit=limit, after=req.query.get("after"),
                              ascending=order == "asc")
    except CursorError as exc:
        return openai_error(400, f"Invalid 'after': no file with id '{exc}'.", "invalid_request_error", "after", None)
    data = [render_file(rec) for rec in page]
    return json_response(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None, "has_more": more})


def retrieve(app: Emulator, file_id: str, protocol: str) -> Response:
    """Handle ``GET /files/{id}``."""
    rec = find_file(app.store, file_id, protocol, app.now())
    return json_response(200, render_file(rec)) if rec else _missing(file_id)


def delete(app: Emulator, file_id: str, protocol: str) -> Response:
    """Handle ``DELETE /files/{id}``."""
    rec = find_file(app.store, file_id, protocol, app.now())
    if rec is None:
        return _missing(file_id)
    app.store.remove_file(file_id)
    return json_response(200, {"id": file_id, "object": "file", "deleted": True})


def content(app: Emulator, file_id: str, protocol: str) -> Response:
    """Handle ``GET /files/{id}/content``: the exact stored bytes."""
    rec = find_file(app.store, file_id, protocol, app.now())
    if rec is None:
        return _missing(file_id)
    handle = app.store.open_file(file_id)
    if handle is None:  # pragma: no cover - a record without bytes: a state dir edited by hand
        return Response(200, b"", {"content-type": "application/octet-stream"})
    return Response(200, headers={"content-type": "application/octet-stream"}, file=handle)
