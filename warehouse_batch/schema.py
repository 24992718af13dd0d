"""Typed answers: a JSON Schema for the answer, DuckDB types for its columns, SQL to check it.

A job declares its answer either as a full JSON Schema (`output_schema`) or in short form
(`columns={'sentiment': "enum('positive','negative')", 'confidence': 'double',
'topics': 'varchar[]'}`). Each top-level property becomes a typed column of the output table.

Two forms of the one schema:
* **sent**: what the provider accepts (`openai_strict`, `anthropic_form`). OpenAI's strict
  mode needs `additionalProperties: false` on every object and every property required (an
  optional one becomes nullable); Anthropic needs `additionalProperties: false` and takes no
  numeric or length constraints (they move into the property's description, where the model
  still reads them). The sent form is part of the request hash.
* **enforced**: the user's schema, as written, checked on every answer in SQL at collect
  time (`violation_sql`): not JSON, a missing or mistyped property, a value outside an enum,
  a range, a length or a pattern, ends the row `failed` with a reason that says which.
  `check_schema` refuses, at plan time, any keyword that check could not enforce, so
  whatever a provider's form leaves out is still checked.
"""
from __future__ import annotations

import json
import re
from typing import Any

import duckdb

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
    return check_schema({"type": "object", "properties": props, "required": list(props),
                         "additionalProperties": False}, loc)


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
    _check_keywords(schema, "", loc)
    return schema


# What the answer check (`violation_sql`) understands. Anything else in a schema could be
# sent but not enforced, so it is refused at plan time.
_STRUCTURE = frozenset({"type", "properties", "required", "additionalProperties", "items",
                        "enum"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "format",
                          "deprecated", "readOnly", "writeOnly", "$schema", "$id"})
_CHECKED = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                      "minLength", "maxLength", "pattern", "minItems", "maxItems"})
KNOWN_KEYWORDS = _STRUCTURE | _ANNOTATIONS | _CHECKED


def _check_keywords(node: dict, label: str, loc: Location) -> None:
    where = f"output property {label!r}" if label else "output_schema"
    for key, value in node.items():
        if key not in KNOWN_KEYWORDS:
            raise JobFileError(
                f"{where} uses {key!r}, which the answer check cannot enforce", loc,
                hint="remove it; supported: type, properties, required, items, enum, "
                     + ", ".join(sorted(_CHECKED)) + " and annotations (description, "
                     "format, ...)")
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise JobFileError(f"{where}: {key} must be a number, got {value!r}", loc)
        if key in ("minLength", "maxLength", "minItems", "maxItems") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise JobFileError(f"{where}: {key} must be a whole number >= 0, got {value!r}",
                               loc)
        if key == "pattern":
            _check_pattern(value, where, loc)
        if key == "required" and not (isinstance(value, list) and all(
                isinstance(v, str) for v in value)):
            raise JobFileError(f"{where}: required must be a list of property names", loc)
    for name, prop in (node.get("properties") or {}).items():
        if isinstance(prop, dict):
            _check_keywords(prop, f"{label}.{name}" if label else name, loc)
    if isinstance(node.get("items"), dict):
        _check_keywords(node["items"], f"{label}[]" if label else "[]", loc)


def _check_pattern(value: Any, where: str, loc: Location) -> None:
    """A pattern the answer check can run: DuckDB's regular expressions (RE2)."""
    if not isinstance(value, str):
        raise JobFileError(f"{where}: pattern must be a string, got {value!r}", loc)
    try:
        duckdb.execute("SELECT regexp_matches('', ?)", [value]).fetchall()
    except duckdb.Error:
        raise JobFileError(f"{where}: pattern {value!r} is not a regular expression the "
                           "answer check can run", loc,
                           hint="use RE2 syntax (no look-arounds or back-references)") from None


# -- the forms sent to providers -------------------------------------------------------------

# https://platform.openai.com/docs/guides/structured-outputs#supported-schemas: keywords
# strict mode takes besides the structure; the rest of _CHECKED moves into the description.
_OPENAI_KEEPS = frozenset({"title", "description", "minimum", "maximum", "exclusiveMinimum",
                           "exclusiveMaximum", "pattern", "minItems", "maxItems"})
_OPENAI_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname",
                             "ipv4", "ipv6", "uuid"})
# anthropic/lib/_parse/_transform.py (transform_schema): what Anthropic's structured outputs
# take; every other keyword is appended to the description as `{key: value, ...}`.
_ANTHROPIC_FORMATS = _OPENAI_FORMATS | {"uri"}
_DROPPED = frozenset({"default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
                      "$schema", "$id"})


def openai_strict(schema: dict) -> dict:
    """The strict-mode form OpenAI accepts: `additionalProperties: false` on every object,
    every property in `required` (one the user left optional is made nullable, so the model
    may answer null for it), unsupported constraints moved into the description."""
    return _openai_node(schema, optional=False)


def _openai_node(node: dict, optional: bool) -> dict:
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    t = node.get("type")
    for key, value in node.items():
        if key == "properties":
            required = set(node.get("required") or [])
            out["properties"] = {k: _openai_node(v, optional=k not in required)
                                 for k, v in value.items()}
            out["required"] = list(value)
        elif key == "items" and isinstance(value, dict):
            out["items"] = _openai_node(value, optional=False)
        elif key in ("type", "enum") or key in _OPENAI_KEEPS:
            out[key] = value
        elif key == "format":
            (out if value in _OPENAI_FORMATS else moved)[key] = value
        elif key in ("required", "additionalProperties") or key in _DROPPED:
            continue
        else:
            moved[key] = value
    if t == "object" or (isinstance(t, list) and "object" in t) or "properties" in node:
        out["additionalProperties"] = False
        out.setdefault("properties", {})
        out.setdefault("required", [])
    _describe(out, moved)
    if optional and not _nullable(node):
        if isinstance(t, str) and "enum" not in out:
            out["type"] = [t, "null"]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def anthropic_form(schema: dict) -> dict:
    """The form Anthropic's structured outputs accept (as the SDK's `transform_schema`):
    `additionalProperties: false` on every object, a type list as `anyOf`, numeric, length
    and pattern constraints moved into the description as `{key: value, ...}`."""
    return _anthropic_node(schema)


def _anthropic_node(node: dict) -> dict:
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out["properties"] = {k: _anthropic_node(v) for k, v in value.items()}
        elif key == "items" and isinstance(value, dict):
            out["items"] = _anthropic_node(value)
        elif key in ("type", "enum", "required", "title", "description"):
            out[key] = value
        elif key == "format":
            (out if value in _ANTHROPIC_FORMATS else moved)[key] = value
        elif key == "minItems" and value in (0, 1):
            out[key] = value
        elif key == "additionalProperties" or key in _DROPPED:
            continue
        else:
            moved[key] = value
    if "enum" in out:
        out.pop("type", None)   # as transform_schema: literals carry their own type
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
    _describe(out, moved)
    t = out.get("type")
    if isinstance(t, list):
        kinds = [k for k in t if k != "null"]
        base = {k: v for k, v in out.items() if k not in ("title", "description")}
        variants = [{**base, "type": k} for k in kinds] + (
            [{"type": "null"}] if "null" in t else [])
        wrapped = {k: v for k, v in out.items() if k in ("title", "description")}
        return {**wrapped, "anyOf": variants} if len(variants) > 1 else {**out, "type": kinds[0]}
    return out


def _describe(out: dict, moved: dict) -> None:
    """Append constraints a provider does not take to the description, as the Anthropic SDK
    does, so the model still reads them (the answer check enforces them either way)."""
    if not moved:
        return
    extra = "{" + ", ".join(f"{k}: {v}" for k, v in moved.items()) + "}"
    out["description"] = (out["description"] + "\n\n" if out.get("description") else "") + extra


def _nullable(node: dict) -> bool:
    t = node.get("type")
    return (isinstance(t, list) and "null" in t) or t == "null" or (
        isinstance(node.get("enum"), list) and None in node["enum"])


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
    """SQL giving, per answer, the first way it breaks the user's schema (NULL if none):
    required properties, types (null allowed for a property left out of `required`), enums,
    numeric bounds, string lengths and patterns, array sizes, and the same for nested
    objects and for every item of an array."""
    checks: list[tuple[str, str]] = [
        (f"NOT json_valid({text})", "'the answer is not valid JSON'"),
        (f"json_type({text}) <> 'OBJECT'", "'the answer is not a JSON object'"),
    ]
    _object_checks(schema, text, "$", "", checks, static=False, depth=0)
    cases = " ".join(f"WHEN {cond} THEN {msg}" for cond, msg in checks)
    return f"CASE WHEN {text} IS NULL THEN 'the answer is empty' {cases} END"


def _object_checks(schema: dict, text: str, path: str, label: str,
                   out: list[tuple[str, str]], static: bool, depth: int) -> None:
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        p = f'{path}."{name}"'
        if name in required:
            out.append((f"json_type({text}, {sql_literal(p)}) IS NULL",
                        f"'breaks the schema: ' || {sql_literal(label + name)} || ' is missing'"))
        _value_checks(prop, text, p, label + name, out, static, depth,
                      optional=name not in required)


def _value_checks(prop: dict, text: str, p: str, label: str, out: list[tuple[str, str]],
                  static: bool, depth: int, optional: bool) -> None:
    """Checks of one value at JSON path `p` of `text`. `static`: inside a list lambda, where
    messages cannot quote the value."""
    jt = f"json_type({text}, {sql_literal(p)})"
    value = f"json_extract_string({text}, {sql_literal(p)})"
    where = sql_literal(label)
    subject = where if static else f"{where} || ' = ' || {value}"
    t, nullable = _base(prop)
    allowed = list(_JSON_TYPES.get(t or "", ["VARCHAR"] if "enum" in prop else []))
    if allowed and (nullable or optional):
        allowed.append("NULL")
    if allowed:
        types = ", ".join(sql_literal(a) for a in allowed)
        got = "'" if static else f", got ' || lower({jt})"
        out.append((f"{jt} IS NOT NULL AND {jt} NOT IN ({types})",
                    f"'breaks the schema: ' || {where} || ' should be {t or 'string'}{got}"))
    if "enum" in prop:
        values = ", ".join(sql_literal(str(v)) for v in prop["enum"])
        listed = sql_literal(" is not one of " + ", ".join(map(str, prop["enum"])))
        out.append((f"{jt} = 'VARCHAR' AND {value} NOT IN ({values})",
                    f"'breaks the schema: ' || {subject} || {listed}"))
    if t in ("number", "integer"):
        for key, op, words in (("minimum", "<", "below the minimum"),
                               ("maximum", ">", "above the maximum"),
                               ("exclusiveMinimum", "<=", "not above the exclusiveMinimum"),
                               ("exclusiveMaximum", ">=", "not below the exclusiveMaximum")):
            if key in prop:
                out.append((f"TRY_CAST({value} AS DOUBLE) {op} {float(prop[key])}",
                            f"'breaks the schema: ' || {subject} || "
                            f"' is {words} {prop[key]}'"))
    for key, op, words in (("minLength", "<", "shorter than minLength"),
                           ("maxLength", ">", "longer than maxLength")):
        if key in prop:
            out.append((f"{jt} = 'VARCHAR' AND length({value}) {op} {int(prop[key])}",
                        f"'breaks the schema: ' || {where} || ' is {words} {prop[key]}'"))
    if "pattern" in prop:
        out.append((f"{jt} = 'VARCHAR' AND NOT regexp_matches({value}, "
                    f"{sql_literal(prop['pattern'])})",
                    f"'breaks the schema: ' || {subject} || "
                    f"{sql_literal(' does not match the pattern ' + prop['pattern'])}"))
    for key, op, words in (("minItems", "<", "fewer items than minItems"),
                           ("maxItems", ">", "more items than maxItems")):
        if key in prop:
            out.append((f"{jt} = 'ARRAY' AND json_array_length({text}, {sql_literal(p)}) "
                        f"{op} {int(prop[key])}",
                        f"'breaks the schema: ' || {where} || ' has {words} {prop[key]}'"))
    if t == "object" and isinstance(prop.get("properties"), dict):
        inner: list[tuple[str, str]] = []
        _object_checks(prop, text, p, label + ".", inner, static, depth)
        out.extend((f"{jt} = 'OBJECT' AND ({c})", m) for c, m in inner)
    if t == "array" and isinstance(prop.get("items"), dict):
        var = f"x{depth + 1}"
        inner = []
        _value_checks(prop["items"], var, "$", label + "[]", inner, True, depth + 1, False)
        items = f"json_extract({text}, {sql_literal(p + '[*]')})"
        out.extend((f"{jt} = 'ARRAY' AND len(list_filter({items}, lambda {var}: {c})) > 0", m)
                   for c, m in inner)
