"""HTTP-level value types and the providers' error bodies.

Route handlers take a :class:`Request` and return a :class:`Response`; the
server module turns those into bytes on a socket. Keeping the handlers free of
``http.server`` makes them easy to test and to reason about.

Error shapes (exactly as the SDKs expect them):

* OpenAI / Azure: ``{"error": {"message", "type", "param", "code"}}``, all
  four keys present;
* Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""
from __future__ import annotations

import json
import mmap
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator


class BadJSON(ValueError):
    """The request body is not valid JSON."""


@dataclass
class Request:
    """One received HTTP request (header names are lower-cased).

    A large upload is not held in memory: the server writes it to a spool file and sets
    ``body_file`` (``body`` stays empty); :meth:`raw_body` gives either form.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    body_file: str | None = None

    @contextmanager
    def raw_body(self) -> Iterator[Any]:
        """Yield the body as ``bytes`` or as a read-only memory map of the spool file."""
        if self.body_file is None:
            yield self.body
            return
        with open(self.body_file, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:  # an empty file cannot be mapped
                yield b""
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                yield view

    def header(self, name: str) -> str | None:
        """Return a header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """Parse the body as JSON (an empty body is ``{}``); raise BadJSON otherwise."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJSON(str(exc)) from exc

    def origin(self) -> str:
        """Return ``http://host:port`` as the client addressed us (from the Host header)."""
        return "http://" + (self.header("host") or "127.0.0.1")


@dataclass
class Response:
    """A response to send; ``drop`` closes the connection without answering.

    ``file`` (an open handle, sent from its start to its end, then closed) replaces ``body``
    for large downloads, so a result file is streamed from disk rather than read into memory.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    file: BinaryIO | None = None


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Return a JSON response with the right content type."""
    out = {"content-type": "application/json"}
    out.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), out)


def openai_error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """Return an OpenAI-shaped error response."""
    return json_response(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    409: ("invalid_request_error", None),
    413: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    529: ("server_error", "overloaded"),
}


def anthropic_error(status: int, message: str, type_: str | None = None) -> Response:
    """Return an Anthropic-shaped error response (request_id is filled in by the server)."""
    kind = type_ or ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return json_response(status, {"type": "error", "error": {"type": kind, "message": message}, "request_id": None})


def canned_error(protocol: str, status: int, message: str | None = None) -> Response:
    """Return a generic provider-shaped error for a status (used by fault injection)."""
    text = message or {
        429: "Rate limit reached. Please try again later.",
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The server is overloaded or not ready yet.",
        529: "Overloaded",
        413: "Request exceeds the maximum allowed number of bytes.",
    }.get(status, f"Emulated error {status}.")
    if protocol == "anthropic":
        return anthropic_error(status, text)
    type_, code = OPENAI_ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return openai_error(status, text, type_, None, code)


class ParamError(ValueError):
    """A query parameter is malformed; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """Return an integer query parameter within [low, high]; raise ParamError otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(name, f"Invalid '{name}': expected an integer, got '{raw}'.") from None
    if not low <= value <= high:
        raise ParamError(name, f"Invalid '{name}': must be between {low} and {high}, got {value}.")
    return value
