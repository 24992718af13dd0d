"""Anthropic Message Batches routes (``/v1/messages/batches…``).

Auth: ``x-api-key`` or ``Authorization: Bearer`` (401 ``authentication_error``
without either); an ``anthropic-version`` header is required (any value).

Create validates the envelope synchronously, as the real API does: body size
(413 ``request_too_large``), 1..``anthropic_max_requests`` requests, each
``custom_id`` matching ``^[a-zA-Z0-9_-]{1,64}$`` and unique, ``params`` an
object. ``params`` themselves are only checked when the request is processed
(errored results). The batch starts ``in_progress`` at once. Cancel on an
ended batch and delete on a running one are 400s; results before the end are
a 400 and after archiving (29 days) a 404. ``POST /v1/messages`` answers
synchronously (see :mod:`.sync_api`).
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from . import anthropic_batches, anthropic_messages, engine, sync_api
from .plan import make_plan, timing
from .store import CursorError, paginate
from .wire import BadJSON, ParamError, Request, Response, anthropic_error, int_param, json_response

if TYPE_CHECKING:
    from .app import Emulator

PREFIX = "/v1/messages/batches"
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DAY = 24 * 3600


def handle(app: Emulator, req: Request) -> Response:
    """Answer an Anthropic call."""
    bearer = (req.header("authorization") or "")
    if not (req.header("x-api-key") or (bearer.lower().startswith("bearer ") and bearer[7:].strip())):
        return anthropic_error(401, "x-api-key header is required")
    if (req.header("x-api-key") or bearer[7:].strip()).startswith("sk-ant-wrong"):
        return anthropic_error(401, "invalid x-api-key")   # Anthropic quotes no fragment
    if not req.header("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required")
    if req.path == "/v1/messages" and req.method == "POST":
        return sync_api.anthropic_call(app, req)
    if req.path != PREFIX and not req.path.startswith(PREFIX + "/"):
        return anthropic_error(404, f"Not found: {req.method} {req.path}")
    parts = [p for p in req.path[len(PREFIX):].split("/") if p]
    method = req.method
    try:
        if not parts and method == "POST":
            return create(app, req)
        if not parts and method == "GET":
            return list_batches(app, req)
        if len(parts) == 1 and method == "GET":
            return retrieve(app, req, parts[0])
        if len(parts) == 1 and method == "DELETE":
            return delete(app, parts[0])
        if len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            return cancel(app, req, parts[0])
        if len(parts) == 2 and parts[1] == "results" and method == "GET":
            return results(app, parts[0])
    except ParamError as exc:
        return anthropic_error(400, f"{exc.param}: {exc}")
    return anthropic_error(404, f"Not found: {req.method} {req.path}")


def _invalid(message: str) -> Response:
    return anthropic_error(400, message)


def _missing(batch_id: str) -> Response:
    return anthropic_error(404, f"No message batch found with id '{batch_id}'.")


def _check_requests(body: Any, max_requests: int) -> str | None:
    """Return the message of the first envelope problem, or None."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    requests = body.get("requests")
    if requests is None:
        return "requests: Field required"
    if not isinstance(requests, list):
        return "requests: Input should be a valid list"
    if not requests:
        return "requests: List should have at least 1 item after validation, not 0"
    if len(requests) > max_requests:
        return f"requests: List should have at most {max_requests} items after validation, not {len(requests)}"
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            return f"requests.{i}: Input should be a valid dictionary"
        cid = item.get("custom_id")
        if cid is None:
            return f"requests.{i}.custom_id: Field required"
        if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
            return f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if cid in seen:
            return f"requests.{i}.custom_id: Duplicate custom_id '{cid}'; custom_id values must be unique within a batch"
        seen.add(cid)
        if "params" not in item:
            return f"requests.{i}.params: Field required"
        if not isinstance(item["params"], dict):
            return f"requests.{i}.params: Input should be a valid dictionary"
    return None


def create(app: Emulator, req: Request) -> Response:
    """Handle ``POST /v1/messages/batches``."""
    limited = app.create_rate_limited("anthropic")
    if limited is not None:
        return limited
    cfg = app.config
    if len(req.body) > cfg.anthropic_max_bytes:
        return anthropic_error(413, "Request exceeds the maximum allowed number of bytes.", "request_too_large")
    try:
        body = req.json()
    except BadJSON:
        return _invalid("There was an error parsing the body of your request: invalid JSON.")
    problem = _check_requests(body, cfg.anthropic_max_requests)
    if problem:
        return _invalid(problem)
    now = app.now()
    batch_id, seq = app.store.new_id("msgbatch")
    version = req.header("anthropic-version") or ""
    requests = [{"custom_id": r["custom_id"], "params": r["params"]} for r in body["requests"]]
    kinds = [anthropic_messages.decide(r["params"], custom_id=r["custom_id"], batch_id=batch_id, seed=cfg.seed,
                                       failure_rate=cfg.failure_rate, version=version,
                                       strict=cfg.strict_anthropic_version)[0] for r in requests]
    rec: dict[str, Any] = {
        "id": batch_id, "seq": seq, "protocol": "anthropic",
        "created_at": now, "expires_at": now + DAY,
        "timing": timing(cfg, openai=False), "seed": cfg.seed, "failure_rate": cfg.failure_rate,
        "anthropic_version": version, "strict_version": cfg.strict_anthropic_version,
        "errors": None, "cancel_at": None, "final": None,
    }
    plan = make_plan([r["custom_id"] for r in requests], kinds, cfg.seed, batch_id)
    app.store.put_order(batch_id, plan.pop("order"))
    rec.update(plan)
    app.store.put_blob(f"requests/{batch_id}", json.dumps(requests).encode("utf-8"))
    app.store.put_batch(rec)
    view = engine.refresh(app.store, rec, now)
    fault = app.take_create_fault()
    if fault == "drop_after_create":
        return Response(0, drop=True)
    if fault == "error_after_create":
        return anthropic_error(500, "Internal server error")
    return json_response(200, anthropic_batches.render(rec, view, now, req.origin()))


def _find(app: Emulator, batch_id: str) -> dict[str, Any] | None:
    rec = app.store.batches.get(batch_id)
    return rec if rec is not None and rec["protocol"] == "anthropic" else None


def retrieve(app: Emulator, req: Request, batch_id: str) -> Response:
    """Handle ``GET /v1/messages/batches/{id}``."""
    rec = _find(app, batch_id)
    if rec is None:
        return _missing(batch_id)
    now = app.now()
    return json_response(200, anthropic_batches.render(rec, engine.refresh(app.store, rec, now), now, req.origin()))


def list_batches(app: Emulator, req: Request) -> Response:
    """Handle ``GET /v1/messages/batches`` (newest first; after_id / before_id; always first/last ids)."""
    limit = int_param(req.query, "limit", 20, 1, 1000)
    now = app.now()
    mine = [rec for rec in app.store.batches.values() if rec["protocol"] == "anthropic"]
    try:
        page, more = paginate(mine, order_key=app.store.order_key, limit=limit,
                              after=req.query.get("after_id"), before=req.query.get("before_id"))
    except CursorError as exc:
        return _invalid(f"No message batch found with id '{exc}' for pagination.")
    data = [anthropic_batches.render(rec, engine.refresh(app.store, rec, now), now, req.origin()) for rec in page]
    return json_response(200, {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None})


def cancel(app: Emulator, req: Request, batch_id: str) -> Response:
    """Handle ``POST /v1/messages/batches/{id}/cancel``."""
    rec = _find(app, batch_id)
    if rec is None:
        return _missing(batch_id)
    now = app.now()
    view = engine.cancel(app.store, rec, now)
    if view is None:
        return _invalid(f"Message batch {batch_id} has already ended and can no longer be canceled.")
    return json_response(200, anthropic_batches.render(rec, view, now, req.origin()))


def delete(app: Emulator, batch_id: str) -> Response:
    """Handle ``DELETE /v1/messages/batches/{id}`` (only once ended)."""
    rec = _find(app, batch_id)
    if rec is None:
        return _missing(batch_id)
    if not engine.refresh(app.store, rec, app.now()).terminal:
        return _invalid(f"Message batch {batch_id} cannot be deleted while it is still processing. "
                        f"Cancel it first and wait until processing has ended.")
    app.store.remove_batch(batch_id)
    return json_response(200, {"id": batch_id, "type": "message_batch_deleted"})


def results(app: Emulator, batch_id: str) -> Response:
    """Handle ``GET /v1/messages/batches/{id}/results`` (JSONL)."""
    rec = _find(app, batch_id)
    if rec is None:
        return _missing(batch_id)
    now = app.now()
    if not engine.refresh(app.store, rec, now).terminal:
        return _invalid(f"Message batch {batch_id} is still processing; results are available once "
                        f"processing_status is 'ended'.")
    if anthropic_batches.archived_at(rec, now) is not None:
        return anthropic_error(404, f"The results of message batch {batch_id} have been archived and are no "
                                    f"longer available.")
    handle = app.store.open_blob(f"results/{batch_id}")
    if handle is None:  # pragma: no cover - an ended batch always has its results blob
        return Response(200, b"", {"content-type": "application/binary"})
    return Response(200, headers={"content-type": "application/binary"}, file=handle)
