"""Validation of an OpenAI/Azure batch input file (the JSONL of requests).

Produces the ``errors.data[]`` entries a real batch reports when it ends up
``failed`` (or, with ``sync_validation``, the 400 on create). Codes:

``file_too_large``, ``empty_file``, ``invalid_json_line`` (with ``line``),
``invalid_request`` (missing/bad ``custom_id``/``method``/``url``/``body``),
``duplicate_custom_id``, ``url_mismatch`` (line url vs batch endpoint, where
``/v1/x`` and ``/x`` are equal), ``model_mismatch`` (a line's ``body.model``
differs from the first line's), ``too_many_tasks`` (more requests, or more
embedding inputs, than allowed). Line numbers are 1-based; blank lines are
ignored. The per-model ``token_limit_exceeded`` check needs the other batches
and lives in the batch module.

The file is read a line at a time and each line is parsed once: the same pass checks it,
estimates its tokens and classifies it (:func:`.openai_bodies.decide`, without the seeded
failure-rate draw, which needs the batch id), so nothing per request is kept but its
``custom_id`` and a one-letter kind.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from .openai_bodies import decide, normalise_endpoint, prompt_for, request_tokens

MAX_ERRORS = 1000
MAX_EMBEDDING_INPUTS = 50_000
_raw_decode = json.JSONDecoder().raw_decode
_JSON_SPACE = " \t\n\r"


def parse_line(raw: bytes) -> Any:
    """``json.loads(raw.decode("utf-8"))`` (same results, same errors: ValueError), faster for
    the usual line that starts with its value and ends in a newline."""
    text = raw.decode("utf-8")
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or an error json.loads reports itself
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return json.loads(text)
    return value


@dataclass
class ParsedInput:
    """The valid requests of a file (their custom_ids and kinds, 's'/'f'/'n' as
    :func:`.openai_bodies.decide` says before any failure-rate draw) plus every validation
    error found."""

    custom_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    tokens: int = 0

    def add(self, code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        """Record one validation error (capped at MAX_ERRORS)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def parse_input(lines: Iterable[bytes], size: int, endpoint: str, *, max_requests: int,
                max_bytes: int) -> ParsedInput:
    """Parse and validate an input file of ``size`` bytes (its lines, split after each
    ``\\n``) for a batch on ``endpoint``."""
    out = ParsedInput()
    if size > max_bytes:
        out.add("file_too_large", f"The input file is {size} bytes, which exceeds the maximum of "
                f"{max_bytes} bytes for a batch.")
        return out
    want = normalise_endpoint(endpoint)
    seen: dict[str, int] = {}
    embedding_inputs = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = parse_line(raw)
        except (ValueError, UnicodeDecodeError):
            out.add("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not _check_line(out, obj, number, want):
            continue
        custom_id, body = obj["custom_id"], obj["body"]
        if custom_id in seen:
            out.add("duplicate_custom_id", f"The custom_id '{custom_id}' on line {number} is already used on "
                    f"line {seen[custom_id]}. custom_id values must be unique within a batch.", number,
                    "custom_id")
            continue
        seen[custom_id] = number
        model = body.get("model")
        if isinstance(model, str):
            if out.model is None:
                out.model = model
            elif model != out.model:
                out.add("model_mismatch", f"The model '{model}' on line {number} does not match the model "
                        f"'{out.model}' of the first request. All requests in a batch must use the same model.",
                        number, "body.model")
                continue
        if want == "/embeddings":
            raw_input = body.get("input")
            embedding_inputs += len(raw_input) if isinstance(raw_input, list) and raw_input and not all(
                isinstance(x, int) for x in raw_input) else 1
        prompt = prompt_for(want, body)
        out.tokens += request_tokens(want, body, prompt)
        out.custom_ids.append(custom_id)
        out.kinds.append(decide(want, body, custom_id=custom_id, batch_id="", seed=0, failure_rate=0.0,
                                prompt=prompt)[0])
    if not out.custom_ids and not out.errors:
        out.add("empty_file", "The input file is empty. Please ensure that the batch contains at least one request.")
    elif len(out.custom_ids) > max_requests:
        out.add("too_many_tasks", f"The input file contains {len(out.custom_ids)} requests, which exceeds the "
                f"maximum of {max_requests} requests per batch.")
    elif embedding_inputs > MAX_EMBEDDING_INPUTS:
        out.add("too_many_tasks", f"The batch contains {embedding_inputs} embedding inputs, which exceeds the "
                f"maximum of {MAX_EMBEDDING_INPUTS}.")
    return out


def _check_line(out: ParsedInput, obj: Any, number: int, want: str) -> bool:
    """Check the envelope of one line; record an error and return False when it is bad."""
    if not isinstance(obj, dict):
        out.add("invalid_request", "Each line must be a JSON object.", number)
        return False
    for name in ("custom_id", "method", "url", "body"):
        if name not in obj:
            out.add("invalid_request", f"Missing required parameter: '{name}'.", number, name)
            return False
    if not isinstance(obj["custom_id"], str) or not obj["custom_id"]:
        out.add("invalid_request", "custom_id must be a non-empty string.", number, "custom_id")
        return False
    if str(obj["method"]).upper() != "POST":
        out.add("invalid_request", f"The method '{obj['method']}' is not supported. Only POST is allowed.",
                number, "method")
        return False
    if not isinstance(obj["url"], str) or normalise_endpoint(obj["url"]) != want:
        out.add("url_mismatch", f"The url '{obj['url']}' on line {number} does not match the batch endpoint. "
                f"Every request in the file must use the batch endpoint.", number, "url")
        return False
    if not isinstance(obj["body"], dict):
        out.add("invalid_request", "body must be a JSON object.", number, "body")
        return False
    return True
