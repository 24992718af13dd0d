"""The admin API under ``/_emulator/`` (JSON in and out, no auth).

=====================================  ==========================================================
``GET  /_emulator/health``             ``{"ok": true}``
``GET  /_emulator/clock``              ``{"now": <unix seconds>}``
``POST /_emulator/clock``              ``{"advance": s}`` or ``{"set": ts}`` → ``{"now": …}``
``GET  /_emulator/config``             every knob
``POST /_emulator/config``             partial update (persisted) → every knob; unknown/bad keys → 400
``GET  /_emulator/requests``           ``{"data": [{method, path, query, status, time, protocol, retry_count}]}``
``GET  /_emulator/processed``          ``{"data": [{protocol, batch_id, custom_id, outcome, billed}]}``
``POST /_emulator/batches/{id}/force`` ``{"status": …}`` → the batch object in its protocol's shape
``POST /_emulator/batches/{id}/forget`` forget a batch (and its results): every call naming it
                                       now answers 404, as after a key or project rotation
``GET  /_emulator/faults``             ``{"data": [pending faults]}``
``POST /_emulator/faults``             queue a fault → ``{"data": [pending faults]}``
``DELETE /_emulator/faults``           drop every pending fault
``POST /_emulator/reset``              forget files, batches, logs, faults, clock advances; keep knobs
=====================================  ==========================================================

Errors are ``{"error": "<message>"}`` with 400 (bad input) or 404 (unknown
route or batch). ``processed`` brings every batch up to date first, so batches
that ended by the clock are included.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import anthropic_batches, engine, gemini_batches, openai_batches
from .faults import parse_fault
from .wire import BadJSON, Request, Response, json_response

if TYPE_CHECKING:
    from .app import Emulator


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def handle(app: Emulator, req: Request) -> Response:
    """Answer one admin call (the caller holds the emulator lock)."""
    parts = [p for p in req.path[len("/_emulator"):].split("/") if p]
    method = req.method
    try:
        body = req.json() if method in ("POST", "PUT", "PATCH") else {}
    except BadJSON as exc:
        return _error(400, f"invalid JSON body: {exc}")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    try:
        return _dispatch(app, req, method, parts, body)
    except ValueError as exc:
        return _error(400, str(exc))


def _dispatch(app: Emulator, req: Request, method: str, parts: list[str], body: dict[str, Any]) -> Response:
    route = "/".join(parts)
    if route == "health" and method == "GET":
        return json_response(200, {"ok": True})
    if route == "clock":
        if method == "POST":
            _move_clock(app, body)
        if method in ("GET", "POST"):
            return json_response(200, {"now": app.now()})
    if route == "config":
        if method == "POST":
            app.update_config(body)
        if method in ("GET", "POST"):
            return json_response(200, app.config.knobs())
    if route == "requests" and method == "GET":
        return json_response(200, {"data": app.store.request_log()})
    if route == "processed" and method == "GET":
        engine.refresh_all(app.store, app.now())
        return json_response(200, {"data": app.store.processed_log()})
    if route == "faults":
        if method == "POST":
            app.faults.add(parse_fault(body))
        elif method == "DELETE":
            app.faults.clear()
        if method in ("GET", "POST", "DELETE"):
            return json_response(200, {"data": app.faults.pending()})
    if route == "reset" and method == "POST":
        app.reset()
        return json_response(200, {"ok": True})
    if len(parts) == 3 and parts[0] == "batches" and parts[2] == "force" and method == "POST":
        return _force(app, req, parts[1], body)
    if len(parts) == 3 and parts[0] == "batches" and parts[2] == "forget" and method == "POST":
        if parts[1] not in app.store.batches:
            return _error(404, f"no batch with id {parts[1]!r}")
        app.store.remove_batch(parts[1])
        return json_response(200, {"ok": True})
    return _error(404, f"unknown admin route: {method} {req.path}")


def _move_clock(app: Emulator, body: dict[str, Any]) -> None:
    if set(body) - {"advance", "set"} or len(body) != 1:
        raise ValueError('send exactly one of {"advance": seconds} or {"set": unix_seconds}')
    key, value = next(iter(body.items()))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number")
    if key == "advance":
        app.clock.advance(value)
    else:
        app.clock.set(value)
    app.save_settings()


def _force(app: Emulator, req: Request, batch_id: str, body: dict[str, Any]) -> Response:
    rec = app.store.batches.get(batch_id)
    if rec is None:
        return _error(404, f"no batch with id {batch_id!r}")
    status = body.get("status")
    if not isinstance(status, str):
        raise ValueError("send {\"status\": …}")
    now = app.now()
    view = engine.force(app.store, rec, status, now)
    if rec["protocol"] == "anthropic":
        return json_response(200, anthropic_batches.render(rec, view, now, req.origin()))
    if rec["protocol"] == "gemini":
        return json_response(200, gemini_batches.render(rec, view))
    return json_response(200, openai_batches.render(rec, view))
