"""OpenAI and Azure OpenAI routes: auth, API version, and dispatch.

Paths, relative to the flavour's prefix:

=========================  =====================================
``POST /files``            upload (multipart)
``GET /files``             list (``purpose``, ``limit``, ``order``, ``after``)
``GET /files/{id}``        metadata
``DELETE /files/{id}``     delete
``GET /files/{id}/content``  exact stored bytes
``POST /batches``          create
``GET /batches``           list (``limit`` 1..100, ``after``), newest first
``GET /batches/{id}``      retrieve
``POST /batches/{id}/cancel``  cancel
``POST /chat/completions`` …  synchronous model calls (see :mod:`.sync_api`)
=========================  =====================================

OpenAI: prefix ``/v1``, ``Authorization: Bearer <anything>`` required.
Azure: prefix ``/openai`` (what ``AzureOpenAI(azure_endpoint=…)`` calls) with a
required ``api-version`` query parameter (404 "Resource not found" without
it, as Azure answers), or ``/openai/v1`` without one; auth by ``api-key`` or
Bearer. Missing auth is a 401 in the OpenAI error shape. A key starting with ``sk-wrong``
stands for a key the provider does not know: a 401 whose message quotes a masked fragment of
it, exactly as OpenAI's does ("Incorrect API key provided: sk-wrong************abcd."), so
tests can prove such fragments are redacted everywhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import openai_batch_routes, openai_file_routes, sync_api
from .wire import ParamError, Request, Response, openai_error

if TYPE_CHECKING:
    from .app import Emulator

NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
    "accessing the API from your browser and are prompted for a username. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
AZURE_NO_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for "
    "an active subscription and use a correct regional API endpoint for your resource."
)


WRONG_KEY_PREFIX = "sk-wrong"


def incorrect_key(key: str) -> str:
    """OpenAI's 401 message for an unknown key: its first 8 and last 4 characters, the rest
    masked."""
    masked = key[:8] + "*" * max(len(key) - 12, 4) + key[-4:]
    return (f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.")


def _bearer(req: Request) -> str:
    value = req.header("authorization") or ""
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


def handle(app: Emulator, req: Request, protocol: str) -> Response:
    """Answer an OpenAI (``protocol='openai'``) or Azure (``'azure'``) call."""
    if protocol == "azure":
        rest = req.path[len("/openai"):]
        versionless = rest.startswith("/v1/")
        if versionless:
            rest = rest[3:]
        if not (req.header("api-key") or _bearer(req)):
            return openai_error(401, AZURE_NO_KEY, "invalid_request_error", None, "401")
        if not versionless and not req.query.get("api-version"):
            return openai_error(404, "Resource not found", "invalid_request_error", None, "404")
    else:
        rest = req.path[len("/v1"):] if req.path.startswith("/v1/") else req.path
        if not _bearer(req):
            return openai_error(401, NO_KEY, "invalid_request_error", None, None)
        if _bearer(req).startswith(WRONG_KEY_PREFIX):
            return openai_error(401, incorrect_key(_bearer(req)), "invalid_request_error", None,
                                "invalid_api_key")
    parts = [p for p in rest.split("/") if p]
    try:
        response = _dispatch(app, req, protocol, parts)
    except ParamError as exc:
        return openai_error(400, str(exc), "invalid_request_error", exc.param, None)
    if response is None:
        return openai_error(404, f"Invalid URL ({req.method} {req.path})", "invalid_request_error", None, None)
    return response


def _dispatch(app: Emulator, req: Request, protocol: str, parts: list[str]) -> Response | None:
    method = req.method
    if protocol == "azure" and parts[:1] == ["deployments"] and len(parts) > 2:
        parts = parts[2:]  # /openai/deployments/{name}/chat/completions
    endpoint = "/" + "/".join(parts)
    if method == "POST" and endpoint in sync_api.OPENAI_SYNC:
        return sync_api.openai_call(app, req, endpoint, protocol == "azure")
    if parts[:1] == ["files"]:
        if len(parts) == 1 and method == "POST":
            return openai_file_routes.upload(app, req, protocol)
        if len(parts) == 1 and method == "GET":
            return openai_file_routes.list_files(app, req, protocol)
        if len(parts) == 2 and method == "GET":
            return openai_file_routes.retrieve(app, parts[1], protocol)
        if len(parts) == 2 and method == "DELETE":
            return openai_file_routes.delete(app, parts[1], protocol)
        if len(parts) == 3 and parts[2] == "content" and method == "GET":
            return openai_file_routes.content(app, parts[1], protocol)
    if parts[:1] == ["batches"]:
        if len(parts) == 1 and method == "POST":
            return openai_batch_routes.create(app, req, protocol)
        if len(parts) == 1 and method == "GET":
            return openai_batch_routes.list_batches(app, req, protocol)
        if len(parts) == 2 and method == "GET":
            return openai_batch_routes.retrieve(app, parts[1], protocol)
        if len(parts) == 3 and parts[2] == "cancel" and method == "POST":
            return openai_batch_routes.cancel(app, parts[1], protocol)
    return None
