"""Synchronous model endpoints: the real-time path, and "dry-run one request" flows.

``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/completions``,
``/v1/embeddings`` and ``/v1/moderations`` (OpenAI, also under the Azure
prefixes) and ``POST /v1/messages`` (Anthropic) answer at once with the same
body a batch line would carry for the same request body, from the same
deterministic rules: the same answer text, structured output, embedding and
usage (Anthropic prompt-cache reads and writes included: the cache is shared
with batches). Only ids, timestamps and Anthropic's ``service_tier``
(``standard``) differ. Markers ``[[emu:error400]]``/``[[emu:error500]]``,
malformed bodies and the Anthropic API-version rule give the matching HTTP
error; ``never`` and ``failure_rate`` are batch-only and ignored here.

Rate limits and faults (knobs, see ``config.py``): ``sync_requests_per_minute``
answers calls past that many in a minute of the emulator's clock with a 429
whose ``retry-after`` is the rest of the minute (a manual clock must be moved
for the next minute to come); ``sync_429_rate`` and ``sync_500_rate`` answer a
seeded fraction of calls (the n-th call and the seed decide) with a 429
(``retry-after: sync_retry_after``) or a 500. A refused call answers nothing
and bills nothing.
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from . import anthropic_messages, openai_bodies
from .ids import b62_token
from .wire import BadJSON, Request, Response, anthropic_error, json_response, openai_error

if TYPE_CHECKING:
    from .app import Emulator

OPENAI_SYNC = {"/chat/completions", "/responses", "/completions", "/embeddings", "/moderations"}


def _refused(app: Emulator, protocol: str) -> Response | None:
    """A 429 or 500 for this call as the knobs decide, or None: answer it."""
    cfg = app.config
    app.sync_calls += 1
    after: float | None = None
    minute = int(app.now() // 60)
    window, count = app.sync_window
    count = count + 1 if window == minute else 1
    app.sync_window = (minute, count)
    if cfg.sync_requests_per_minute is not None and count > cfg.sync_requests_per_minute:
        after = (minute + 1) * 60 - app.now()
    else:
        digest = hashlib.sha256(f"{cfg.seed}:sync:{app.sync_calls}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw < cfg.sync_429_rate:
            after = cfg.sync_retry_after
        elif draw < cfg.sync_429_rate + cfg.sync_500_rate:
            if protocol == "anthropic":
                return anthropic_error(500, "Internal server error", "api_error")
            return openai_error(500, "The server had an error while processing your request. "
                                     "Sorry about that!", "server_error", None, None)
    if after is None:
        return None
    if protocol == "anthropic":
        response = anthropic_error(429, "Number of request tokens has exceeded your per-minute "
                                        "rate limit", "rate_limit_error")
    else:
        response = openai_error(429, "Rate limit reached for requests. Please try again later.",
                                "requests", None, "rate_limit_exceeded")
    response.headers["retry-after"] = f"{max(math.ceil(after), 0):d}"
    response.headers["retry-after-ms"] = f"{max(after, 0.0) * 1000:g}"
    return response


def openai_call(app: Emulator, req: Request, endpoint: str, azure: bool) -> Response:
    """Answer a synchronous OpenAI model call on a normalised endpoint."""
    refused = _refused(app, "openai")
    if refused is not None:
        return refused
    try:
        body = req.json()
    except BadJSON:
        return openai_error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    kind, error = openai_bodies.decide(endpoint, body, custom_id="", batch_id="", seed=0, failure_rate=0.0,
                                       allow_never=False)
    if kind == "f" and error is not None:
        return openai_error(error["status"], error["message"], error["type"], error["param"], error["code"])
    salt = b62_token(16, "sync", openai_bodies.body_salt(body), app.store.next_seq())
    return json_response(200, openai_bodies.success_body(endpoint, body, salt, int(app.now()), azure))


def anthropic_call(app: Emulator, req: Request) -> Response:
    """Answer ``POST /v1/messages``."""
    refused = _refused(app, "anthropic")
    if refused is not None:
        return refused
    try:
        params = req.json()
    except BadJSON:
        return anthropic_error(400, "There was an error parsing the body of your request: invalid JSON.")
    kind, error = anthropic_messages.decide(params, custom_id="", batch_id="", seed=0, failure_rate=0.0,
                                            version=req.header("anthropic-version") or "",
                                            strict=app.config.strict_anthropic_version, allow_never=False)
    if kind == "f" and error is not None:
        status = 500 if error["type"] == "api_error" else 400
        return anthropic_error(status, error["message"], error["type"])
    salt = b62_token(16, "sync", app.store.next_seq())
    message = anthropic_messages.message(params, salt, app.store.cache_seen)
    message["usage"]["service_tier"] = "standard"
    return json_response(200, message)
