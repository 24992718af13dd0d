"""Typed answers: a JSON Schema for the answer, DuckDB types for its columns, SQL to check it.

A job declares its answer either as a full JSON Schema (`output_schema`) or in short form
(`columns={'sentiment': "enum('positive','negative')", 'confidence': 'double',
'topics': 'varchar[]'}`). The schema is sent to the provider (so it is part of the request
hash), each top-level property becomes a typed column of the output table, and every
answer is checked against it in SQL at collect time: not JSON, a missing or mistyped
property, a value outside an enum or range, or an answer cut off by `max_tokens`, ends the
row `failed` with a reason that says which.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .errors import JobFileError, Location
from .identity import sql_literal

_SHORT_TYPES: dict[str, dict] = {
    "varchar": {"type": "string"}, "text": {"type": "string"}, "string": {"type": "string"},
    "bigint": {"type": "integer"}, "integer": {"type": "integer"}, "int": {"type": "integer"},
    "double": {"type": "number"}, "float": {"type": "number"}, "number": {"type": "number"},
    "boolean": {"type": "boolean"}, "bool": {"type": "boolean"},
}
_ENUM = re.compile(r"^enum\s*\((.*)\)$", re.IGNORECASE | re.DOTALL)


def from_columns(columns: dict[str, Any], loc: Location) -> dict:
    """The strict JSON Schema (all required, no extra keys) for the short `columns` form."""
    if not columns or not isinstance(columns, dict):
        raise JobFileError("columns must be a non-empty dict of name -> type", loc)
    props = {}
    for name, spec in columns.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise JobFileError(f"column name {name!r} must be a plain identifier", loc)
        props[name] = _short_type(spec, name, loc)
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def _short_type(spec: Any, name: str, loc: Location) -> dict:
    if isinstance(spec, dict):
        return spec   # a JSON Schema fragment, as is
    if not isinstance(spec, str):
        raise JobFileError(f"type of column {name!r} must be a string like 'double'", loc)
    text = spec.strip()
    if text.endswith("[]"):
        return {"type": "array", "items": _short_type(text[:-2], name, loc)}
    m = _ENUM.match(text)
    if m:
        try:
            import ast
            values = ast.literal_eval("[" + m.group(1) + "]")
        except (SyntaxError, ValueError):
            values = None
        if not values or not all(isinstance(v, str) for v in values):
            raise JobFileError(f"column {name!r}: enum(...) takes quoted strings, e.g. "
                               "enum('yes','no')", loc)
        return {"type": "string", "enum": values}
    if text.lower() in _SHORT_TYPES:
        return dict(_SHORT_TYPES[text.lower()])
    raise JobFileError(f"column {name!r} has unknown type {spec!r}", loc,
                       hint="use varchar, bigint, double, boolean, enum('a','b'), or T[]")


def check_schema(schema: Any, loc: Location) -> dict:
    """An object schema with properties: what the output table can have columns for."""
    if not isinstance(schema, dict) or schema.get("type") != "object" or \
            not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise JobFileError("output_schema must be a JSON Schema of type object with properties",
                           loc)
    for name, prop in schema["properties"].items():
        duck_type(prop, name, loc)
    return schema


def _base(prop: dict) -> tuple[str | None, bool]:
    t = prop.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        return (non_null[0] if len(non_null) == 1 else None), "null" in t
    return t, False


def duck_type(prop: dict, name: str = "?", loc: Location | None = None) -> str:
    """The DuckDB type for a JSON Schema property."""
    if "enum" in prop and _base(prop)[0] in (None, "string"):
        return "VARCHAR"
    t, _ = _base(prop)
    if t == "string":
        return "VARCHAR"
    if t == "integer":
        return "BIGINT"
    if t == "number":
        return "DOUBLE"
    if t == "boolean":
        return "BOOLEAN"
    if t == "array":
        return duck_type(prop.get("items", {"type": "string"}), name, loc) + "[]"
    if t == "object" and isinstance(prop.get("properties"), dict):
        fields = ", ".join(f'"{k}" {duck_type(v, k, loc)}' for k, v in prop["properties"].items())
        return f"STRUCT({fields})"
    raise JobFileError(f"output property {name!r} has a type warehouse-batch cannot map to a "
                       f"column: {json.dumps(prop)[:120]}", loc or Location())


def structure(schema: dict) -> str:
    """The `from_json` structure string for a schema (DuckDB type names as JSON)."""
    def walk(prop: dict) -> Any:
        t, _ = _base(prop)
        if t == "object" and "properties" in prop:
            return {k: walk(v) for k, v in prop["properties"].items()}
        if t == "array":
            return [walk(prop.get("items", {"type": "string"}))]
        return duck_type(prop)
    return json.dumps(walk(schema))


_JSON_TYPES = {"string": ["VARCHAR"], "integer": ["BIGINT", "UBIGINT"],
               "number": ["DOUBLE", "BIGINT", "UBIGINT"], "boolean": ["BOOLEAN"],
               "array": ["ARRAY"], "object": ["OBJECT"]}


def violation_sql(schema: dict, text: str = "response_text") -> str:
    """SQL giving, per answer, the first way it breaks the schema (NULL if none)."""
    checks: list[tuple[str, str]] = [
        (f"NOT json_valid({text})", "'the answer is not valid JSON'"),
        (f"json_type({text}) <> 'OBJECT'", "'the answer is not a JSON object'"),
    ]
    _property_checks(schema, "$", text, checks)
    cases = " ".join(f"WHEN {cond} THEN {msg}" for cond, msg in checks)
    return f"CASE WHEN {text} IS NULL THEN 'the answer is empty' {cases} END"


def _property_checks(schema: dict, path: str, text: str, out: list[tuple[str, str]],
                     label: str = "") -> None:
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        p = f'{path}."{name}"'
        where = sql_literal(f"{label}{name}")
        jt = f"json_type({text}, {sql_literal(p)})"
        value = f"json_extract_string({text}, {sql_literal(p)})"
        if name in required:
            out.append((f"{jt} IS NULL", f"'breaks the schema: ' || {where} || ' is missing'"))
        t, nullable = _base(prop)
        allowed = list(_JSON_TYPES.get(t or "", ["VARCHAR"] if "enum" in prop else []))
        if allowed and nullable:
            allowed.append("NULL")
        if allowed:
            types = ", ".join(sql_literal(a) for a in allowed)
            out.append((f"{jt} IS NOT NULL AND {jt} NOT IN ({types})",
                        f"'breaks the schema: ' || {where} || ' should be {t or 'string'}, "
                        f"got ' || lower({jt})"))
        if "enum" in prop:
            values = ", ".join(sql_literal(str(v)) for v in prop["enum"])
            listed = sql_literal(" is not one of " + ", ".join(map(str, prop["enum"])))
            out.append((f"{jt} = 'VARCHAR' AND {value} NOT IN ({values})",
                        f"'breaks the schema: ' || {where} || ' = ' || {value} || {listed}"))
        for key, op, words in (("minimum", "<", "below"), ("maximum", ">", "above")):
            if key in prop and t in ("number", "integer"):
                out.append((f"TRY_CAST({value} AS DOUBLE) {op} {float(prop[key])}",
                            f"'breaks the schema: ' || {where} || ' = ' || {value} || "
                            f"' is {words} the {key} {prop[key]}'"))
        if t == "object" and "properties" in prop:
            _property_checks(prop, p, text, out, f"{label}{name}.")
