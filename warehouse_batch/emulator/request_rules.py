"""Per-request refusals the real services give for parameters and schemas (field-facts.md).

Kept apart from the client's own table (``warehouse_batch/data/params.json``) on purpose: the
emulator states what the services do, so a client that believes something else fails here.

OpenAI-shaped endpoints (OpenAI and Azure), a 400 in the error file:

* Chat Completions bodies with a key the endpoint does not have (``top_k``,
  ``stop_sequences``, ``thinking``): ``Unrecognized request argument supplied: <key>``;
* reasoning models (``o1``/``o3``/``o4``/``gpt-5`` prefixes, except ``gpt-5-chat``):
  ``max_tokens`` (``unsupported_parameter``, use ``max_completion_tokens``), and
  ``temperature``/``top_p`` other than 1 (``unsupported_value``);
* strict structured outputs (``response_format`` / Responses ``text.format`` /
  function tools with ``strict: true``): every object needs ``additionalProperties: false``
  and every property in ``required``; the keywords in :data:`OPENAI_REFUSED` are refused;
  the root must be an object (``invalid_json_schema``).

Anthropic (``output_config.format`` / ``output_format`` of type ``json_schema``), an
``invalid_request_error``: objects need ``additionalProperties: false``; constraints the SDK's
``transform_schema`` moves into descriptions (:data:`ANTHROPIC_REFUSED`, ``minItems`` above 1,
an unsupported string ``format``) are refused.
"""
from __future__ import annotations

from typing import Any, Iterator

CHAT_KEYS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
    "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls", "user",
    "metadata", "service_tier", "store", "reasoning_effort", "verbosity", "modalities", "audio",
    "prediction", "prompt_cache_key", "prompt_cache_retention", "safety_identifier",
    "web_search_options", "functions", "function_call", "stream", "stream_options",
})
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
NOT_REASONING_PREFIXES = ("gpt-5-chat",)
OPENAI_REFUSED = frozenset({
    "patternProperties", "unevaluatedProperties", "propertyNames", "minProperties",
    "maxProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
    "uniqueItems", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
    "oneOf",
})
ANTHROPIC_REFUSED = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "patternProperties", "propertyNames", "contains", "not", "if", "then", "else",
})
ANTHROPIC_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname",
                               "uri", "ipv4", "ipv6", "uuid"})
_SCHEMA_KIDS = ("anyOf", "allOf", "oneOf", "prefixItems")


def _bad(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {"status": 400, "type": "invalid_request_error", "param": param, "code": code,
            "message": message}


def is_reasoning(model: Any) -> bool:
    """Whether an OpenAI model name is a reasoning model (o-series, gpt-5 family)."""
    return isinstance(model, str) and model.startswith(REASONING_PREFIXES) and \
        not model.startswith(NOT_REASONING_PREFIXES)


def openai_problem(endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 an OpenAI-shaped endpoint gives for this body's parameters or schema."""
    if endpoint == "/chat/completions":
        for key in body:
            if key not in CHAT_KEYS:
                return _bad(f"Unrecognized request argument supplied: {key}", None)
    if endpoint in ("/chat/completions", "/responses") and is_reasoning(body.get("model")):
        if "max_tokens" in body:
            return _bad("Unsupported parameter: 'max_tokens' is not supported with this model. "
                        "Use 'max_completion_tokens' instead.", "max_tokens",
                        "unsupported_parameter")
        for key in ("temperature", "top_p"):
            if key in body and body[key] != 1:
                return _bad(f"Unsupported value: '{key}' does not support {body[key]} with this "
                            "model. Only the default (1) value is supported.", key,
                            "unsupported_value")
    for name, schema, param in _strict_schemas(endpoint, body):
        problem = strict_schema_problem(schema)
        if problem:
            return _bad(f"Invalid schema for {param} '{name}': {problem}", param,
                        "invalid_json_schema")
    return None


def _strict_schemas(endpoint: str, body: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    fmt = body.get("response_format")
    if endpoint == "/chat/completions" and isinstance(fmt, dict) and \
            fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        if isinstance(spec, dict) and spec.get("strict") is True:
            yield str(spec.get("name")), spec.get("schema"), "response_format"
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if endpoint == "/responses" and isinstance(fmt, dict) and fmt.get("type") == "json_schema" \
            and fmt.get("strict") is True:
        yield str(fmt.get("name")), fmt.get("schema"), "text.format"
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("strict") is True:
            yield str(fn.get("name")), fn.get("parameters"), "tools.function.parameters"


def strict_schema_problem(schema: Any) -> str | None:
    """Why OpenAI's strict mode refuses `schema` (first reason), or None."""
    if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
        return "schema must be a JSON Schema of 'type: \"object\"', got a different root."
    for context, node in _nodes(schema, ()):
        for key in node:
            if key in OPENAI_REFUSED:
                return f"In context={context}, '{key}' is not permitted."
        if _is_object(node):
            if node.get("additionalProperties") is not False:
                return (f"In context={context}, 'additionalProperties' is required to be "
                        "supplied and to be false.")
            props = node.get("properties") or {}
            required = node.get("required")
            missing = [k for k in props if not isinstance(required, list) or k not in required]
            if missing:
                return (f"In context={context}, 'required' is required to be supplied and to be "
                        f"an array including every key in properties. Missing '{missing[0]}'.")
    return None


def anthropic_schema_problem(schema: Any) -> str | None:
    """Why Anthropic's structured outputs refuse `schema` (first reason), or None."""
    if not isinstance(schema, dict):
        return "output_config.format.schema: Input should be a valid dictionary"
    for context, node in _nodes(schema, ()):
        where = ".".join(context) or "(root)"
        kind = node.get("type")
        for key, value in node.items():
            if key in ANTHROPIC_REFUSED or (key == "minItems" and value not in (0, 1)) or (
                    key == "format" and value not in ANTHROPIC_FORMATS):
                return (f"output_config.format.schema: at {where}: property '{key}' is not "
                        f"supported for type '{kind}' in structured outputs")
        if _is_object(node) and node.get("additionalProperties") is not False:
            return (f"output_config.format.schema: at {where}: objects must set "
                    "'additionalProperties' to false")
    return None


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or \
        isinstance(node.get("properties"), dict)


def _nodes(node: Any, context: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every (sub)schema with its path, depth first."""
    if not isinstance(node, dict):
        return
    yield context, node
    for holder in ("properties", "$defs", "definitions"):
        for key, sub in (node.get(holder) or {}).items() if isinstance(
                node.get(holder), dict) else ():
            yield from _nodes(sub, (*context, holder, key))
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], (*context, "items"))
    for holder in _SCHEMA_KIDS:
        for i, sub in enumerate(node.get(holder) or []) if isinstance(
                node.get(holder), list) else ():
            yield from _nodes(sub, (*context, holder, str(i)))
