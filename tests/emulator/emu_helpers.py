"""Helpers shared by the emulator tests (request lines, uploads, file reading)."""
from __future__ import annotations

import json
from typing import Any

import openai


def chat_line(custom_id: str, text: str, *, model: str = "gpt-4.1-mini", url: str = "/v1/chat/completions",
              system: str | None = None, **body: Any) -> dict[str, Any]:
    """Return one OpenAI batch input line for a chat request."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": model, "messages": messages, **body}}


def jsonl(lines: list[Any]) -> bytes:
    """Encode objects (or raw strings) as JSONL bytes."""
    return "".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines).encode("utf-8")


def upload(client: openai.OpenAI, lines: list[Any], name: str = "in.jsonl") -> str:
    """Upload lines as a batch input file and return its id."""
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def submit(client: openai.OpenAI, lines: list[Any], endpoint: str = "/v1/chat/completions", **kw: Any) -> Any:
    """Upload lines and create a batch on them."""
    return client.batches.create(input_file_id=upload(client, lines), endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h", **kw)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """Return the parsed JSONL lines of an output/error file ([] for None)."""
    if not file_id:
        return []
    text = client.files.content(file_id).text
    assert text == "" or text.endswith("\n")
    assert "\n\n" not in text
    return [json.loads(l) for l in text.splitlines()]


def anthropic_request(custom_id: str, text: str, **params: Any) -> dict[str, Any]:
    """Return one Anthropic batch request."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    body.update(params)
    return {"custom_id": custom_id, "params": body}


def schema_errors(schema: Any, value: Any, root: Any = None, path: str = "$") -> list[str]:
    """Return why value violates a (subset of) JSON Schema; [] when valid. Test-only mini validator."""
    root = schema if root is None else root
    if isinstance(schema, dict) and "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_errors(target, value, root, path)
    if not isinstance(schema, dict):
        return []
    errs: list[str] = []
    if "anyOf" in schema:
        if all(schema_errors(opt, value, root, path) for opt in schema["anyOf"]):
            errs.append(f"{path}: matches no anyOf option")
        return errs
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in enum")
    types = schema.get("type")
    types = types if isinstance(types, list) else [types] if types else []
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "null": lambda v: v is None}
    if types and not any(checks[t](value) for t in types):
        return [f"{path}: {value!r} is not {types}"]
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{path}: missing required {key!r}")
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errs += schema_errors(props[key], sub, root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected {key!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            errs.append(f"{path}: bad length {len(value)}")
        for i, item in enumerate(value):
            errs += schema_errors(schema.get("items", {}), item, root, f"{path}[{i}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: not above exclusiveMinimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errs.append(f"{path}: not below exclusiveMaximum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            errs.append(f"{path}: bad string length")
    return errs
