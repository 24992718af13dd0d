"""OpenAI/Azure Batch API handlers: create, list, retrieve, cancel.

Create checks synchronously what the real API checks synchronously
(``completion_window == "24h"``, a supported ``endpoint``, metadata limits,
``output_expires_after``, an existing ``input_file_id`` with purpose
``batch``), then validates the file contents asynchronously: the batch is
returned ``validating`` and becomes ``failed`` with ``errors`` after the
validation delay. With ``sync_validation`` those errors are a 400 instead.
The per-model enqueued-token budget (``enqueued_token_limit``, or a model's
entry in ``enqueued_token_limits``) counts the estimated prompt tokens of the
protocol's non-terminal batches for the same model; a batch that would pass it
fails with ``token_limit_exceeded`` and OpenAI's message (``Limit: N enqueued
tokens``), or, with ``token_limit_fail_fast`` (Azure's behaviour in many
regions), its create is refused with that HTTP 400. Azure batches have no 24 h expiry, always get an error file, and
accept up to 100,000 requests.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import engine, openai_batches, openai_bodies
from .ids import digester
from .openai_files import find_file
from .openai_validate import parse_input
from .plan import make_plan, timing
from .store import CursorError, paginate
from .wire import BadJSON, Request, Response, int_param, json_response, openai_error

if TYPE_CHECKING:
    from .app import Emulator

DAY = 24 * 3600
AZURE_MAX_REQUESTS = 100_000


def _bad(message: str, param: str | None = None, code: str | None = None) -> Response:
    return openai_error(400, message, "invalid_request_error", param, code)


def _missing(batch_id: str) -> Response:
    return openai_error(404, f"No batch found with id '{batch_id}'.", "invalid_request_error", None, None)


def _check_envelope(body: dict[str, Any], protocol: str) -> Response | None:
    """Return a 400 for a create body the API rejects synchronously, else None."""
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str) or not body[name]:
            return _bad(f"Missing required parameter: '{name}'.", name)
    endpoint = body["endpoint"]
    allowed = set(openai_bodies.SUPPORTED_ENDPOINTS)
    if protocol == "azure":
        allowed |= {openai_bodies.normalise_endpoint(e) for e in allowed}
    if endpoint not in allowed:
        return _bad(f"Invalid value: '{endpoint}'. Supported values are: "
                    f"{', '.join(repr(e) for e in openai_bodies.SUPPORTED_ENDPOINTS)}.", "endpoint", "invalid_value")
    if body["completion_window"] != "24h":
        return _bad(f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                    "completion_window", "invalid_value")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 16:
            return _bad("Invalid 'metadata': expected an object with at most 16 keys.", "metadata")
        for key, value in metadata.items():
            if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
                return _bad("Invalid 'metadata': keys must be at most 64 characters and values strings of at most "
                            "512 characters.", "metadata")
    expiry = body.get("output_expires_after")
    if expiry is not None:
        if (not isinstance(expiry, dict) or expiry.get("anchor") != "created_at"
                or not isinstance(expiry.get("seconds"), int) or not 3600 <= expiry["seconds"] <= 2_592_000):
            return _bad("Invalid 'output_expires_after': anchor must be 'created_at' and seconds between 3600 and "
                        "2592000.", "output_expires_after")
    return None


def _enqueued(app: Emulator, protocol: str, model: str | None, now: float) -> int:
    """Return the estimated tokens of this protocol's running batches for a model."""
    total = 0
    for rec in list(app.store.batches.values()):
        if rec["protocol"] != protocol or rec.get("model") != model or rec.get("errors"):
            continue
        if not engine.refresh(app.store, rec, now).terminal:
            total += int(rec.get("tokens", 0))
    return total


def create(app: Emulator, req: Request, protocol: str) -> Response:
    """Handle ``POST /batches``."""
    limited = app.create_rate_limited(protocol)
    if limited is not None:
        return limited
    try:
        body = req.json()
    except BadJSON:
        return _bad("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                    "HTTP library correctly.)")
    if not isinstance(body, dict):
        return _bad("The request body must be a JSON object.")
    problem = _check_envelope(body, protocol)
    if problem:
        return problem
    now = app.now()
    cfg = app.config
    file_id = body["input_file_id"]
    file_rec = find_file(app.store, file_id, protocol, now)
    if file_rec is None:
        return _bad(f"Cannot find file {file_id}, or project proj_emulator does not have access to it.",
                    "input_file_id")
    if file_rec["purpose"] != "batch":
        return _bad(f"The file {file_id} has purpose '{file_rec['purpose']}', but a batch input file must have "
                    f"purpose 'batch'.", "input_file_id")
    handle = app.store.open_file(file_id)
    with handle if handle is not None else open(os.devnull, "rb") as lines:
        parsed = parse_input(
            lines, int(file_rec["bytes"]), body["endpoint"],
            max_requests=AZURE_MAX_REQUESTS if protocol == "azure" else cfg.openai_max_requests,
            max_bytes=cfg.openai_max_file_bytes,
        )
    limit = cfg.token_limit(parsed.model)
    if limit is not None and not parsed.errors:
        if _enqueued(app, protocol, parsed.model, now) + parsed.tokens > limit:
            message = (f"Enqueued token limit reached for {parsed.model} in organization org-emulator. Limit: "
                       f"{limit:,} enqueued tokens. Please try again once some in_progress batches have been "
                       f"completed.")
            if cfg.token_limit_fail_fast:
                return _bad(message, None, "token_limit_exceeded")
            parsed.add("token_limit_exceeded", message)
    if parsed.errors and cfg.sync_validation:
        first = parsed.errors[0]
        return _bad(first["message"], first.get("param"), first["code"])
    batch_id, seq = app.store.new_id("batch")
    custom_ids = [] if parsed.errors else parsed.custom_ids
    kinds = [] if parsed.errors else parsed.kinds
    if cfg.failure_rate > 0:  # the seeded draw decide() leaves to us: it needs the batch id
        draw = digester(cfg.seed, batch_id)
        for i, kind in enumerate(kinds):
            if kind == "s" and int.from_bytes(draw(f"{custom_ids[i]}\x1ffailure")[:8], "big") / 2**64 \
                    < cfg.failure_rate:
                kinds[i] = "f"
    plan = make_plan(custom_ids, kinds, cfg.seed, batch_id)
    app.store.put_order(batch_id, plan.pop("order"))
    rec: dict[str, Any] = {
        "id": batch_id, "seq": seq, "protocol": protocol,
        "endpoint": body["endpoint"], "input_file_id": file_id, "completion_window": "24h",
        "metadata": body.get("metadata"), "model": parsed.model,
        "created_at": now, "expires_at": None if protocol == "azure" else now + DAY,
        "output_expires_after": (body.get("output_expires_after") or {}).get("seconds"),
        "timing": timing(cfg, openai=True), "seed": cfg.seed, "failure_rate": cfg.failure_rate,
        "cancel_writes_error_lines": cfg.cancel_writes_error_lines,
        "errors": parsed.errors or None, "tokens": parsed.tokens,
        "cancel_at": None, "final": None,
        **plan,
    }
    if parsed.errors:
        app.store.put_blob(f"requests/{batch_id}", b"")
    else:  # every non-blank line of the file is a request, in order: keep the file's bytes
        app.store.copy_file_to_blob(file_id, f"requests/{batch_id}")
    app.store.put_batch(rec)
    view = engine.refresh(app.store, rec, now)
    fault = app.take_create_fault()
    if fault == "drop_after_create":
        return Response(0, drop=True)
    if fault == "error_after_create":
        return openai_error(500, "The server had an error while processing your request. Sorry about that!",
                            "server_error", None, None)
    return json_response(200, openai_batches.render(rec, view))


def _find(app: Emulator, batch_id: str, protocol: str) -> dict[str, Any] | None:
    rec = app.store.batches.get(batch_id)
    return rec if rec is not None and rec["protocol"] == protocol else None


def retrieve(app: Emulator, batch_id: str, protocol: str) -> Response:
    """Handle ``GET /batches/{id}``."""
    rec = _find(app, batch_id, protocol)
    if rec is None:
        return _missing(batch_id)
    return json_response(200, openai_batches.render(rec, engine.refresh(app.store, rec, app.now())))


def list_batches(app: Emulator, req: Request, protocol: str) -> Response:
    """Handle ``GET /batches`` (``after`` cursor): newest first on OpenAI; oldest first on
    Azure, whose order is undocumented (a preview api-version shows ``created_at asc``), so
    a client that assumes newest-first stops too early."""
    limit = int_param(req.query, "limit", 20, 1, 100)
    now = app.now()
    mine = [rec for rec in app.store.batches.values() if rec["protocol"] == protocol]
    try:
        page, more = paginate(mine, order_key=app.store.order_key, limit=limit, after=req.query.get("after"),
                              ascending=protocol == "azure")
    except CursorError as exc:
        return _bad(f"Invalid 'after': no batch with id '{exc}'.", "after")
    data = [openai_batches.render(rec, engine.refresh(app.store, rec, now)) for rec in page]
    return json_response(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None, "has_more": more})


def cancel(app: Emulator, batch_id: str, protocol: str) -> Response:
    """Handle ``POST /batches/{id}/cancel``: enter ``cancelling``; 400 if the batch already ended."""
    rec = _find(app, batch_id, protocol)
    if rec is None:
        return _missing(batch_id)
    now = app.now()
    view = engine.cancel(app.store, rec, now)
    if view is None:
        status = engine.refresh(app.store, rec, now).status
        return _bad(f"Cannot cancel a batch with status '{status}'.", None, None)
    return json_response(200, openai_batches.render(rec, view))
