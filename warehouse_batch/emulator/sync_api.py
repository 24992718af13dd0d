"""Synchronous model endpoints, for "dry-run one request before the batch" flows.

``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/completions``,
``/v1/embeddings`` and ``/v1/moderations`` (OpenAI, also under the Azure
prefixes) and ``POST /v1/messages`` (Anthropic) answer at once with the same
body a batch line would carry, from the same deterministic rules. Markers
``[[emu:error400]]``/``[[emu:error500]]``, malformed bodies and the Anthropic
API-version rule give the matching HTTP error; ``never``, ``failure_rate`` and
prompt-cache bookkeeping are batch-only and ignored here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import anthropic_messages, openai_bodies
from .ids import b62_token
from .wire import BadJSON, Request, Response, anthropic_error, json_response, openai_error

if TYPE_CHECKING:
    from .app import Emulator

OPENAI_SYNC = {"/chat/completions", "/responses", "/completions", "/embeddings", "/moderations"}


def openai_call(app: Emulator, req: Request, endpoint: str, azure: bool) -> Response:
    """Answer a synchronous OpenAI model call on a normalised endpoint."""
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
    message = anthropic_messages.message(params, salt, lambda _key: False)
    message["usage"]["service_tier"] = "standard"
    return json_response(200, message)
