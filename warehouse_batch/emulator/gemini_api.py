"""Gemini Developer API routes (``/v1beta/…`` and ``/upload/v1beta/files``), as the official
``google-genai`` SDK calls them (reference/batch-apis.md §3.2; the SDK's batches.py, files.py
and _api_client.py for the paths, headers and shapes).

Auth: ``x-goog-api-key`` (403 ``PERMISSION_DENIED`` without one; a key containing ``wrong``
is refused with 400 ``INVALID_ARGUMENT`` "API key not valid", as Google does). Errors are
``{"error": {"code", "message", "status"}}``.

Routes:

* ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable`` and
  ``X-Goog-Upload-Command: start`` (body ``{"file": {displayName, mimeType}}``): answers
  ``x-goog-upload-url`` and ``x-goog-upload-status: active``. Chunks go to that URL with
  ``X-Goog-Upload-Command: upload`` (``upload, finalize`` for the last) and
  ``X-Goog-Upload-Offset``; the final answer is ``{"file": File}`` with status ``final``.
* ``GET /v1beta/files`` (``pageSize``, ``pageToken``), ``GET|DELETE /v1beta/files/{id}``,
  ``GET /v1beta/files/{id}:download?alt=media`` (generated files only).
* ``POST /v1beta/models/{model}:batchGenerateContent`` and ``:asyncBatchEmbedContent``
  (``{"batch": {"displayName", "inputConfig": {"fileName"} | {"requests": {"requests":
  [{"request", "metadata": {"key"}}]}}}}``), ``GET /v1beta/batches`` (``operations``,
  ``nextPageToken``), ``GET|DELETE /v1beta/batches/{id}``, ``POST
  /v1beta/batches/{id}:cancel``. Cancelling an ended job is 400 ``FAILED_PRECONDITION``;
  deleting a running one too.

The emulator's fault knobs apply as for the other protocols: ``failure_rate`` (error lines),
``expire_fraction`` / ``cancel_fraction``, create faults (``drop_after_create``,
``error_after_create``), ``create_429_rate``, scripted faults, the manual clock.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import engine, gemini_batches, gemini_files
from .plan import make_plan, timing
from .wire import BadJSON, Request, Response, json_response

if TYPE_CHECKING:
    from .app import Emulator

PREFIX = f"/{gemini_batches.API_VERSION}/"
UPLOAD_PATH = f"/upload/{gemini_batches.API_VERSION}/files"
EXPIRY = 48 * 3600                 # a job pending or running longer expires (Gemini docs)
MAX_FILE_BYTES = 2 * 1024 ** 3     # Files API: 2 GB per file
MAX_INLINE_BYTES = 20 * 1024 ** 2  # inline requests: 20 MB per create call
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ALREADY_EXISTS", 413: "INVALID_ARGUMENT",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED"}
_UPLOADS: "weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def error(code: int, message: str, status: str | None = None) -> Response:
    """A Google API error answer."""
    return json_response(code, {"error": {"code": code, "message": message,
                                          "status": status or STATUS_NAMES.get(code, "UNKNOWN")}})


def canned(code: int) -> Response:
    """The error a scripted fault or a rate limit answers with."""
    return error(code, {429: "Resource has been exhausted (e.g. check quota).",
                        503: "The model is overloaded. Please try again later."}
                 .get(code, "An internal error has occurred." if code >= 500
                      else f"Emulated error {code}."))


def is_gemini(path: str) -> bool:
    """Whether a path is one of this protocol's."""
    return path.startswith(PREFIX) or path == UPLOAD_PATH


def handle(app: Emulator, req: Request) -> Response:
    """Answer a Gemini call. Upload chunks sent to an upload URL carry no key: the URL's
    `upload_id` is the session's authority."""
    if req.path == UPLOAD_PATH and "upload_id" in req.query:
        return upload(app, req)
    key = req.header("x-goog-api-key") or req.query.get("key")
    if not key:
        return error(403, "Method doesn't allow unregistered callers (callers without established "
                          "identity). Please use API Key or other form of API consumer identity to "
                          "call this API.")
    if "wrong" in key:
        return error(400, "API key not valid. Please pass a valid API key.")
    if req.path == UPLOAD_PATH and req.method == "POST":
        return upload(app, req)
    rest = req.path[len(PREFIX):]
    method = req.method
    if rest.startswith("models/") and method == "POST" and ":" in rest:
        model, _, verb = rest.partition(":")
        if verb == "batchGenerateContent":
            return create(app, req, model, embed=False)
        if verb == "asyncBatchEmbedContent":
            return create(app, req, model, embed=True)
    if rest == "files" and method == "GET":
        return list_files(app, req)
    if rest.startswith("files/"):
        name, _, verb = rest[len("files/"):].partition(":")
        if verb == "download" and method == "GET":
            return download(app, name)
        if not verb and method == "GET":
            return get_file(app, req, name)
        if not verb and method == "DELETE":
            return delete_file(app, name)
    if rest == "batches" and method == "GET":
        return list_batches(app, req)
    if rest.startswith("batches/"):
        name, _, verb = rest[len("batches/"):].partition(":")
        if verb == "cancel" and method == "POST":
            return cancel(app, name)
        if not verb and method == "GET":
            return get_batch(app, name)
        if not verb and method == "DELETE":
            return delete_batch(app, name)
    return error(404, f"Method not found: {req.method} {req.path}")


# -- files --------------------------------------------------------------------------------------
def upload(app: Emulator, req: Request) -> Response:
    """The resumable upload protocol (see the module docstring)."""
    uploads = _UPLOADS.setdefault(app, {})
    upload_id = req.query.get("upload_id")
    command = (req.header("x-goog-upload-command") or "").replace(" ", "").split(",")
    if upload_id is None:
        if (req.header("x-goog-upload-protocol") or "").lower() != "resumable" or "start" not in command:
            return error(400, "Upload requests must use X-Goog-Upload-Protocol: resumable.")
        try:
            body = req.json()
        except BadJSON:
            return error(400, "Invalid JSON payload received.")
        meta = (body.get("file") if isinstance(body, dict) else None) or {}
        size = int(req.header("x-goog-upload-header-content-length") or 0)
        if size > MAX_FILE_BYTES:
            return error(400, f"File size {size} exceeds the maximum allowed size of {MAX_FILE_BYTES} bytes.")
        fd, path = tempfile.mkstemp(prefix="wb-gemini-upload-")
        os.close(fd)
        upload_id = f"wbu{app.store.next_seq()}x{os.getpid()}"
        uploads[upload_id] = {"path": path, "size": size, "offset": 0,
                              "display_name": meta.get("displayName") or meta.get("display_name") or "",
                              "mime_type": meta.get("mimeType") or req.header(
                                  "x-goog-upload-header-content-type") or "application/octet-stream"}
        url = f"{req.origin()}{UPLOAD_PATH}?upload_id={quote(upload_id)}&upload_protocol=resumable"
        return Response(200, b"", {"x-goog-upload-url": url, "x-goog-upload-status": "active",
                                   "x-goog-upload-chunk-granularity": "8388608",
                                   "content-type": "text/plain; charset=utf-8"})
    state = uploads.get(upload_id)
    if state is None:
        return Response(404, b"", {"x-goog-upload-status": "final"})
    offset = int(req.header("x-goog-upload-offset") or 0)
    if offset != state["offset"]:
        return error(400, f"Invalid upload offset {offset}; expected {state['offset']}.")
    with req.raw_body() as raw, open(state["path"], "ab") as out:
        out.write(raw)
        state["offset"] += len(raw)
    if "finalize" not in command:
        return Response(200, b"", {"x-goog-upload-status": "active"})
    uploads.pop(upload_id, None)
    try:
        def write(handle: Any) -> None:
            with open(state["path"], "rb") as src:
                shutil.copyfileobj(src, handle, 1 << 20)

        rec = gemini_files.create(app.store, display_name=state["display_name"],
                                  mime_type=state["mime_type"], created_at=app.now(),
                                  source="UPLOADED", write=write)
    finally:
        os.unlink(state["path"])
    return json_response(200, {"file": gemini_files.render(rec, req.origin())},
                         {"x-goog-upload-status": "final"})


def _page(req: Request, records: list[dict[str, Any]], default: int, top: int) -> tuple[list, str | None]:
    """One page of records, newest first (`pageToken` is the offset)."""
    ordered = sorted(records, key=lambda r: r["seq"], reverse=True)
    try:
        size = max(1, min(int(req.query.get("pageSize") or default), top))
        start = int(req.query.get("pageToken") or 0)
    except ValueError:
        raise ValueError("Invalid page size or page token.") from None
    page = ordered[start:start + size]
    return page, (str(start + size) if start + size < len(ordered) else None)


def list_files(app: Emulator, req: Request) -> Response:
    now = app.now()
    live = [r for r in app.store.files.values() if gemini_files.find(app.store, r["id"], now)]
    try:
        page, token = _page(req, live, 10, 100)
    except ValueError as exc:
        return error(400, str(exc))
    out: dict[str, Any] = {"files": [gemini_files.render(r, req.origin()) for r in page]}
    if token:
        out["nextPageToken"] = token
    return json_response(200, out)


def _no_file(name: str) -> Response:
    return error(403, f"You do not have permission to access the File {name} or it may not exist.",
                 "PERMISSION_DENIED")


def get_file(app: Emulator, req: Request, name: str) -> Response:
    rec = gemini_files.find(app.store, name, app.now())
    return _no_file(name) if rec is None else json_response(200, gemini_files.render(rec, req.origin()))


def delete_file(app: Emulator, name: str) -> Response:
    if gemini_files.find(app.store, name, app.now()) is None:
        return _no_file(name)
    app.store.remove_file(name)
    return json_response(200, {})


def download(app: Emulator, name: str) -> Response:
    rec = gemini_files.find(app.store, name, app.now())
    if rec is None:
        return _no_file(name)
    if rec["source"] != "GENERATED":
        return error(400, "Only generated files can be downloaded.", "FAILED_PRECONDITION")
    handle = app.store.open_file(name)
    if handle is None:  # pragma: no cover - a stored file always has its bytes
        return Response(200, b"", {"content-type": "application/octet-stream"})
    return Response(200, headers={"content-type": "application/octet-stream"}, file=handle)


# -- batches ------------------------------------------------------------------------------------
def _lines(app: Emulator, file_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The request lines of an uploaded file, and what is wrong with them."""
    handle = app.store.open_file(file_id)
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    with handle if handle is not None else open(os.devnull, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                problems.append(f"line {number}: invalid JSON")
                continue
            if not isinstance(item, dict) or "request" not in item:
                problems.append(f"line {number}: each line needs a 'request'")
                continue
            key = item.get("key")
            if not isinstance(key, str) or not key or key in seen:
                problems.append(f"line {number}: each line needs a unique string 'key'")
                continue
            seen.add(key)
            items.append({"key": key, "request": item["request"]})
    if not items and not problems:
        problems.append("the input file holds no requests")
    return items, problems


def create(app: Emulator, req: Request, model: str, embed: bool) -> Response:
    """Handle ``:batchGenerateContent`` / ``:asyncBatchEmbedContent``."""
    limited = app.create_rate_limited("gemini")
    if limited is not None:
        return limited
    if len(req.body) > MAX_INLINE_BYTES:
        return error(400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes.")
    try:
        body = req.json()
    except BadJSON:
        return error(400, "Invalid JSON payload received.")
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, dict):
        return error(400, "* batch: field is required")
    source = batch.get("inputConfig") or batch.get("input_config")
    if not isinstance(source, dict):
        return error(400, "* batch.input_config: field is required")
    now = app.now()
    file_name = source.get("fileName") or source.get("file_name")
    if file_name is not None:
        file_id = str(file_name).removeprefix("files/")
        if gemini_files.find(app.store, file_id, now) is None:
            return _no_file(file_id)
        items, problems = _lines(app, file_id)
        input_config = {"fileName": f"files/{file_id}"}
    else:
        inline = (source.get("requests") or {}).get("requests")
        if not isinstance(inline, list) or not inline:
            return error(400, "* batch.input_config: one of file_name or requests is required")
        items = [{"key": str(((r or {}).get("metadata") or {}).get("key") or i),
                  "request": (r or {}).get("request")} for i, r in enumerate(inline)]
        problems = []
        input_config = {"requests": {"requests": inline}}
    cfg = app.config
    seq = app.store.next_seq()
    batch_id = gemini_batches.hex_id(cfg.seed, seq)
    keys = [] if problems else [i["key"] for i in items]
    kinds = [] if problems else [
        gemini_batches.decide(i["request"], key=i["key"], batch_id=batch_id, seed=cfg.seed,
                              failure_rate=cfg.failure_rate, embed=embed)[0] for i in items]
    plan = make_plan(keys, kinds, cfg.seed, batch_id)
    app.store.put_order(batch_id, plan.pop("order"))
    rec: dict[str, Any] = {
        "id": batch_id, "seq": seq, "protocol": "gemini", "endpoint": "embed" if embed else "generate",
        "model": model, "display_name": batch.get("displayName") or batch.get("display_name"),
        "input_config": input_config, "created_at": now, "expires_at": now + EXPIRY,
        "timing": timing(cfg, openai=True), "seed": cfg.seed, "failure_rate": cfg.failure_rate,
        "errors": problems or None, "cancel_at": None, "final": None, **plan,
    }
    app.store.put_blob(f"requests/{batch_id}", json.dumps([] if problems else items).encode("utf-8"))
    app.store.put_batch(rec)
    view = engine.refresh(app.store, rec, now)
    fault = app.take_create_fault()
    if fault == "drop_after_create":
        return Response(0, drop=True)
    if fault == "error_after_create":
        return error(500, "An internal error has occurred.")
    return json_response(200, gemini_batches.render(rec, view))


def _find(app: Emulator, name: str) -> dict[str, Any] | None:
    rec = app.store.batches.get(name)
    return rec if rec is not None and rec["protocol"] == "gemini" else None


def _no_batch(name: str) -> Response:
    return error(404, f"Requested entity was not found. (batches/{name})")


def get_batch(app: Emulator, name: str) -> Response:
    rec = _find(app, name)
    if rec is None:
        return _no_batch(name)
    return json_response(200, gemini_batches.render(rec, engine.refresh(app.store, rec, app.now())))


def list_batches(app: Emulator, req: Request) -> Response:
    now = app.now()
    mine = [r for r in app.store.batches.values() if r["protocol"] == "gemini"]
    try:
        page, token = _page(req, mine, 10, 1000)
    except ValueError as exc:
        return error(400, str(exc))
    out: dict[str, Any] = {"operations": [gemini_batches.render(r, engine.refresh(app.store, r, now))
                                          for r in page]}
    if token:
        out["nextPageToken"] = token
    return json_response(200, out)


def cancel(app: Emulator, name: str) -> Response:
    rec = _find(app, name)
    if rec is None:
        return _no_batch(name)
    if engine.cancel(app.store, rec, app.now()) is None:
        return error(400, f"Batch batches/{name} has already finished and cannot be cancelled.",
                     "FAILED_PRECONDITION")
    return json_response(200, {})


def delete_batch(app: Emulator, name: str) -> Response:
    rec = _find(app, name)
    if rec is None:
        return _no_batch(name)
    if not engine.refresh(app.store, rec, app.now()).terminal:
        return error(400, f"Batch batches/{name} is still running; cancel it first.",
                     "FAILED_PRECONDITION")
    app.store.remove_batch(name)
    return json_response(200, {})
