"""Deterministic JSON documents that satisfy a JSON Schema (for typed answers).

Used for OpenAI ``response_format: json_schema`` / Responses ``text.format``
and Anthropic forced tool use. The rules, applied recursively:

* ``$ref`` (``#/$defs/…``, ``#/definitions/…``) is followed; ``anyOf``/``oneOf``
  take the first non-null option; ``allOf`` is merged; ``const`` is returned.
* ``enum``: if it contains positive/negative/neutral (any case), the sentiment
  lexicon of :mod:`.answers` picks the member when it can; otherwise a member
  is picked by a hash of the request and the JSON path.
* strings: the text answer of :mod:`.answers` (the sentiment label for a
  property whose name contains "sentiment"), cut/padded to maxLength/minLength;
  common ``format`` values get a well-formed constant.
* numbers: in [minimum, maximum] (exclusive bounds respected), default [0, 1];
  integers in [minimum, maximum], default [0, 10]; booleans by hash.
* arrays: 1–3 items (clamped to minItems/maxItems); objects: every property
  listed (so all ``required`` ones are present).

The ``[[emu:badrange]]`` marker (:func:`out_of_range`) answers 1000000 for the first numeric
property, whatever the schema allows: a model ignoring a range it was only told about in a
description (Anthropic's accepted form carries no ``minimum``/``maximum``).

Every choice comes from a hash of (request salt, JSON path), so the same
request always gets the same document.
"""
from __future__ import annotations

import math
from typing import Any

from . import answers
from .ids import pick, unit

BAD_JSON = '{"answer": "unterminated'
_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "hostname": "example.com",
}


def instance(schema: Any, prompt: answers.Prompt, salt: str) -> Any:
    """Return a document valid for ``schema``, chosen deterministically from the prompt and salt."""
    return _Filler(schema, prompt, salt).value(schema, "$", "", 0)


def drop_required(schema: Any, value: Any) -> Any:
    """Return ``value`` (an object) with its first required property removed, for ``badschema``."""
    root = _Filler(schema, answers.Prompt(), "").resolve(schema)
    if not isinstance(value, dict):
        return {}
    required = [k for k in (root.get("required") or []) if k in value] if isinstance(root, dict) else []
    victim = required[0] if required else next(iter(value), None)
    return {k: v for k, v in value.items() if k != victim}


def out_of_range(schema: Any, value: Any) -> Any:
    """Return ``value`` (an object) with its first numeric property set to 1000000, for
    ``badrange``."""
    root = _Filler(schema, answers.Prompt(), "").resolve(schema)
    if not isinstance(value, dict) or not isinstance(root, dict):
        return value
    for key, sub in (root.get("properties") or {}).items():
        options = [sub] + (sub.get("anyOf") or [] if isinstance(sub, dict) else [])
        if any(_Filler._type_of(o) in ("number", "integer") for o in options) and key in value:
            return {**value, key: 1000000}
    return value


class _Filler:
    """Walks a schema and produces values (one instance per document)."""

    def __init__(self, root: Any, prompt: answers.Prompt, salt: str) -> None:
        self.root = root
        self.prompt = prompt
        self.salt = salt

    def resolve(self, schema: Any) -> Any:
        """Follow local ``$ref`` pointers (a few levels deep)."""
        for _ in range(16):
            if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
                return schema
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return {}
            target: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
        return schema

    def value(self, schema: Any, path: str, name: str, depth: int) -> Any:
        """Return a value for one (sub)schema at a JSON path."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return self.string({}, name)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.enum(schema["enum"], path)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next((o for o in options if self._type_of(self.resolve(o)) != "null"), options[0])
                return self.value(chosen, path, name, depth)
        if isinstance(schema.get("allOf"), list):
            schema = self.merge(schema)
        kind = self._type_of(schema)
        if kind == "object":
            return self.object(schema, path, depth)
        if kind == "array":
            return self.array(schema, path, name, depth)
        if kind == "integer":
            return self.integer(schema, path)
        if kind == "number":
            return self.number(schema, path)
        if kind == "boolean":
            return unit(self.salt, path, "bool") < 0.5
        if kind == "null":
            return None
        return self.string(schema, name)

    def merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Merge ``allOf`` parts into one object schema."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        props = dict(merged.get("properties") or {})
        required = list(merged.get("required") or [])
        for part in schema["allOf"]:
            part = self.resolve(part)
            if isinstance(part, dict):
                props.update(part.get("properties") or {})
                required += [r for r in part.get("required") or [] if r not in required]
                for key, val in part.items():
                    merged.setdefault(key, val)
        merged["properties"], merged["required"] = props, required
        return merged

    @staticmethod
    def _type_of(schema: Any) -> str:
        if not isinstance(schema, dict):
            return "string"
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            kind = non_null[0] if non_null else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return "string"

    def enum(self, members: list[Any], path: str) -> Any:
        lowered = {str(m).lower(): m for m in members if isinstance(m, str)}
        if any(label in lowered for label in answers.LABELS):
            label = answers.sentiment(self.prompt.last_user)
            if label in lowered:
                return lowered[label]
        return members[pick(len(members), self.salt, path, "enum")]

    def object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if depth >= _MAX_DEPTH and key not in required:
                continue
            out[key] = self.value(sub, f"{path}.{key}", key, depth + 1)
        return out

    def array(self, schema: dict[str, Any], path: str, name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0) or 0)
        high = schema.get("maxItems")
        count = 1 + pick(3, self.salt, path, "len")
        count = max(count, low)
        if isinstance(high, int):
            count = min(count, high)
        if depth >= _MAX_DEPTH:
            count = low
        prefix = schema.get("prefixItems") or []
        items = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            items.append(self.value(sub, f"{path}[{i}]", name, depth + 1))
        return items

    def number(self, schema: dict[str, Any], path: str) -> float:
        low, high = schema.get("minimum"), schema.get("maximum")
        strict_low = _is_number(schema.get("exclusiveMinimum"))
        strict_high = _is_number(schema.get("exclusiveMaximum"))
        if strict_low:
            low = schema["exclusiveMinimum"]
        if strict_high:
            high = schema["exclusiveMaximum"]
        if low is None and high is None:
            low, high = 0.0, 1.0
        elif low is None:
            low = float(high) - 1.0
        elif high is None:
            high = float(low) + 1.0
        low, high = float(low), float(high)
        value = round(low + (high - low) * unit(self.salt, path, "num"), 2)
        if value < low or value > high or (strict_low and value <= low) or (strict_high and value >= high):
            value = (low + high) / 2
        return value

    def integer(self, schema: dict[str, Any], path: str) -> int:
        low, high = schema.get("minimum"), schema.get("maximum")
        if _is_number(schema.get("exclusiveMinimum")):
            low = math.floor(schema["exclusiveMinimum"]) + 1
        if _is_number(schema.get("exclusiveMaximum")):
            high = math.ceil(schema["exclusiveMaximum"]) - 1
        if low is None and high is None:
            low, high = 0, 10
        elif low is None:
            low = math.floor(high) - 10
        elif high is None:
            high = math.ceil(low) + 10
        low, high = math.ceil(low), math.floor(high)
        if high < low:
            return low
        return low + pick(high - low + 1, self.salt, path, "int")

    def string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        if "sentiment" in name.lower():
            text = answers.sentiment(self.prompt.last_user)
        else:
            text = answers.text_answer(self.prompt)
        high = schema.get("maxLength")
        low = schema.get("minLength")
        if isinstance(high, int):
            text = text[:high]
        if isinstance(low, int) and len(text) < low:
            text = text + "." * (low - len(text))
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
