"""What one Anthropic batch request yields: its outcome and its ``Message``.

:func:`decide` classifies ``params`` in this precedence: ``[[emu:never]]`` >
``[[emu:error400]]`` (``invalid_request_error``) > ``[[emu:error500]]``
(``api_error``) > the API-version rule > malformed params
(``invalid_request_error``, validated asynchronously as the real API does) >
a seeded failure-rate draw (``api_error``) > success.

API-version rule: with the strict knob on, requests created under
``anthropic-version`` 2026-10-21 (or later) whose params contain
``temperature``, ``top_p`` or ``top_k`` are errored with
``"<field>: Extra inputs are not permitted"``; ``2023-06-01`` accepts them.

:func:`message` builds the ``Message``: a text answer from :mod:`.answers`; a
``tool_use`` block with a schema-valid ``input`` when ``tool_choice`` forces a
tool (``{"type": "tool", "name": …}``, or ``any`` = the first tool), with
``stop_reason: "tool_use"``; a JSON text block for ``output_config.format`` /
``output_format`` of type ``json_schema``. The
structured-output schema must be in Anthropic's accepted form, and models from Claude Opus
4.7 on refuse sampling parameters (:mod:`.request_rules`). Prompt caching: when ``system`` is a
list of blocks with ``cache_control``, the prefix up to the last such block is
a cache entry; its first use in the emulator's lifetime reports
``cache_creation_input_tokens``, later uses ``cache_read_input_tokens``, and
``input_tokens`` excludes those tokens.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

from . import answers, request_rules, schemas
from .ids import b62_token, digest, unit

STRICT_VERSION = "2026-10-21"
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
# Models that refuse sampling parameters under every API version (field-facts.md)
NO_SAMPLING_PREFIXES = ("claude-opus-4-7", "claude-opus-5", "claude-sonnet-5", "claude-haiku-5")


def _err(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "message": message}


PROMPT_TOO_LONG = _err("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum")
API_ERROR = _err("api_error", "Internal server error")


def _problem(params: dict[str, Any]) -> dict[str, Any] | None:
    """Return the error the Messages API would give for malformed params, else None."""
    if not isinstance(params.get("model"), str) or not params.get("model"):
        return _err("invalid_request_error", "model: Field required")
    if "max_tokens" not in params:
        return _err("invalid_request_error", "max_tokens: Field required")
    max_tokens = params["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return _err("invalid_request_error", "max_tokens: Input should be greater than or equal to 1")
    messages = params.get("messages")
    if not isinstance(messages, list):
        return _err("invalid_request_error", "messages: Field required")
    if not messages:
        return _err("invalid_request_error", "messages: List should have at least 1 item after validation, not 0")
    if params.get("stream") is True:
        return _err("invalid_request_error", "stream: Streaming is not supported in the Message Batches API.")
    if isinstance(params.get("model"), str) and params["model"].startswith(NO_SAMPLING_PREFIXES):
        for name in SAMPLING_FIELDS:
            if name in params:
                return _err("invalid_request_error",
                            f"{name}: is not supported for this model; sampling parameters were removed")
    schema = _output_schema(params)
    problem = request_rules.anthropic_schema_problem(schema) if schema is not None else None
    return _err("invalid_request_error", problem) if problem else None


def decide(
    params: Any,
    *,
    custom_id: str,
    batch_id: str,
    seed: int,
    failure_rate: float,
    version: str,
    strict: bool,
    allow_never: bool = True,
) -> tuple[str, dict[str, Any] | None]:
    """Classify one request: ('s', None), ('f', {type, message}) or ('n', None)."""
    if not isinstance(params, dict):
        return "f", _err("invalid_request_error", "params: Input should be a valid dictionary")
    marks = answers.anthropic_prompt(params).markers()
    if "never" in marks and allow_never:
        return "n", None
    if "error400" in marks:
        return "f", PROMPT_TOO_LONG
    if "error500" in marks:
        return "f", API_ERROR
    kind = answers.anthropic_error_type(marks)
    if kind is not None:
        return "f", _err(kind, answers.ANTHROPIC_ERROR_TYPES[kind])
    if strict and version >= STRICT_VERSION:
        for name in SAMPLING_FIELDS:
            if name in params:
                return "f", _err("invalid_request_error", f"{name}: Extra inputs are not permitted")
    problem = _problem(params)
    if problem:
        return "f", problem
    if failure_rate > 0 and unit(seed, batch_id, custom_id, "failure") < failure_rate:
        return "f", API_ERROR
    return "s", None


def cache_prefix(params: dict[str, Any]) -> tuple[str, int] | None:
    """Return (cache key, tokens) of the cached system prefix, or None if nothing is marked."""
    system = params.get("system")
    if not isinstance(system, list):
        return None
    marked = [i for i, block in enumerate(system) if isinstance(block, dict) and block.get("cache_control")]
    if not marked:
        return None
    prefix = system[: marked[-1] + 1]
    key = digest("cache", params.get("model"), json.dumps(prefix, sort_keys=True)).hex()
    return key, math.ceil(answers.content_chars(prefix) / 4)


def _cache_ttl(params: dict[str, Any]) -> str:
    """Return the TTL of the last ``cache_control`` on the system prompt ("5m" by default)."""
    system = params.get("system")
    marked = [b["cache_control"] for b in system if isinstance(b, dict) and isinstance(b.get("cache_control"), dict)] \
        if isinstance(system, list) else []
    return str(marked[-1].get("ttl") or "5m") if marked else "5m"


def _forced_tool(params: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in params.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = params.get("tool_choice")
    if not isinstance(choice, dict) or not tools:
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[0]
    return None


def _output_schema(params: dict[str, Any]) -> Any | None:
    for holder in (params.get("output_config"), {"format": params.get("output_format")}):
        fmt = holder.get("format") if isinstance(holder, dict) else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema") or {"type": "object"}
    return None


def message(params: dict[str, Any], salt: str, cache_seen: Callable[[str], bool]) -> dict[str, Any]:
    """Return the ``Message`` for successful params (see the module docstring).

    ``salt`` only shapes ids; the content depends on ``params`` alone.
    """
    prompt = answers.anthropic_prompt(params)
    marks = prompt.markers()
    content_salt = digest("body", json.dumps(params, sort_keys=True)).hex()[:32]
    tool = _forced_tool(params)
    stop = "end_turn"
    if tool is not None and "badjson" not in marks:
        schema = tool.get("input_schema") or {"type": "object"}
        tool_input = schemas.instance(schema, prompt, content_salt)
        if "badschema" in marks:
            tool_input = schemas.drop_required(schema, tool_input)
        stop = "tool_use"
        if "truncate" in marks:
            tool_input, stop = {}, "max_tokens"
        content = [{"type": "tool_use", "id": "toolu_01" + b62_token(22, salt, "toolu"), "name": tool["name"],
                    "input": tool_input}]
        produced = json.dumps(tool_input)
    else:
        schema = _output_schema(params)
        if tool is not None:  # badjson on a forced tool: the model answered with broken text instead
            text = schemas.BAD_JSON
        elif schema is not None:
            doc = schemas.instance(schema, prompt, content_salt)
            if "badschema" in marks:
                doc = schemas.drop_required(schema, doc)
            if "badrange" in marks:
                doc = schemas.out_of_range(schema, doc)
            text = schemas.BAD_JSON if "badjson" in marks else json.dumps(doc)
        else:
            text = answers.text_answer(prompt)
        if "truncate" in marks:
            text, stop = answers.truncate(text), "max_tokens"
        if marks & {"refuse", "filter"}:   # Anthropic has no content filter: a refusal
            text, stop = answers.REFUSAL_TEXT, "refusal"
        content = [{"type": "text", "text": text}]
        produced = text
    total_in = prompt.input_tokens()
    created = read = 0
    one_hour = _cache_ttl(params) == "1h"
    cached = cache_prefix(params)
    if cached is not None:
        key, tokens = cached
        tokens = min(tokens, total_in)
        if cache_seen(key):
            read = tokens
        else:
            created = tokens
    return {
        "id": "msg_01" + b62_token(22, salt, "msg"),
        "type": "message",
        "role": "assistant",
        "model": params.get("model"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": total_in - created - read,
            "output_tokens": answers.output_tokens(produced),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": 0 if one_hour else created,
                               "ephemeral_1h_input_tokens": created if one_hour else 0},
            "service_tier": "batch",
        },
    }
