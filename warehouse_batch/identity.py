"""Identity is content: canonical JSON, `row_key_hash`, `request_hash` and `custom_id`.

The rules (also in the README, so another engine can fill the same results table):

* **Canonical JSON**: UTF-8, object keys sorted by code point, no whitespace
  (`,` and `:` separators), non-ASCII characters written as themselves, strings escaped
  minimally: `\\"`, `\\\\`, `\\b`, `\\f`, `\\n`, `\\r`, `\\t`, and every other character below
  U+0020 as `\\u00XX` with **upper-case** hex (DuckDB's `to_json` writes upper case, and it
  computes the hashes at scale). Numbers are written as Python's `json` writes them.
* **row_key_hash** = sha256 hex of the canonical JSON object `{key column: value}` over the
  job's `unique_key` columns. Integers and booleans are JSON numbers/booleans, strings are
  strings, every other type is its DuckDB `CAST(... AS VARCHAR)` text.
* **request_hash** = sha256 hex of the canonical JSON of
  `{"body": <the exact request body sent>, "endpoint": <API path>, "provider": <name>}`.
* **custom_id** = `"wb_"` + the first 48 hex characters of `request_hash` (51 characters,
  inside both OpenAI's and Anthropic's `^[a-zA-Z0-9_-]{1,64}$`).

The hashes are computed in DuckDB, set-based: the request is serialised once in Python with a
placeholder where the row's prompt goes, and SQL splices `to_json(prompt)` into that template.
The Python functions here are the reference implementation the tests hold the SQL to.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .sqlutil import quote_ident

CUSTOM_ID_PREFIX = "wb_"
CUSTOM_ID_HEX = 48
CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_LOWER_U_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u00([0-9a-f]{2})")


def canonical_json(obj: Any) -> str:
    """Serialise `obj` by the canonical rule above."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return _LOWER_U_ESCAPE.sub(lambda m: m.group(1) + "\\u00" + m.group(2).upper(), text)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_identity(provider: str, endpoint: str, body: dict) -> dict:
    """The object whose canonical JSON is hashed into `request_hash`."""
    return {"body": body, "endpoint": endpoint, "provider": provider}


def request_hash(provider: str, endpoint: str, body: dict) -> str:
    return sha256_hex(canonical_json(request_identity(provider, endpoint, body)))


def custom_id_for(request_hash_hex: str) -> str:
    return CUSTOM_ID_PREFIX + request_hash_hex[:CUSTOM_ID_HEX]


def row_key_hash(key: dict) -> str:
    return sha256_hex(canonical_json(key))


def sql_literal(text: str) -> str:
    """A DuckDB string literal for `text`."""
    return "'" + text.replace("'", "''") + "'"


def json_template_sql(obj: Any, holes: dict[str, str]) -> str:
    """SQL that builds the canonical JSON of `obj`, splicing SQL expressions into holes.

    `holes` maps a placeholder string that appears as a JSON string value somewhere in `obj`
    to a SQL expression yielding the JSON text that replaces it (quotes included), e.g.
    `to_json(prompt)::VARCHAR`. Each placeholder must occur exactly once.
    """
    text = canonical_json(obj)
    spots = []
    for placeholder, expr in holes.items():
        token = canonical_json(placeholder)
        if text.count(token) != 1:
            raise ValueError(f"placeholder {placeholder!r} must occur once in the template")
        spots.append((text.index(token), len(token), expr))
    parts: list[str] = []
    pos = 0
    for start, length, expr in sorted(spots):
        parts.extend([sql_literal(text[pos:start]), f"({expr})"])
        pos = start + length
    parts.append(sql_literal(text[pos:]))
    return " || ".join(p for p in parts if p != "''")


def json_string_sql(expr: str) -> str:
    """SQL for the JSON string token of a VARCHAR expression (canonical escaping)."""
    return f"CAST(to_json(CAST({expr} AS VARCHAR)) AS VARCHAR)"


def custom_id_sql(request_hash_expr: str) -> str:
    return f"{sql_literal(CUSTOM_ID_PREFIX)} || substr({request_hash_expr}, 1, {CUSTOM_ID_HEX})"


def key_json_sql(columns: list[tuple[str, str]]) -> str:
    """SQL for the canonical JSON object of the key columns: [(name, duckdb type), ...]."""
    parts = []
    for i, (name, dtype) in enumerate(sorted(columns, key=lambda c: c[0])):
        col = quote_ident(name)
        t = dtype.upper()
        if t in _JSON_NATIVE_INT or t == "BOOLEAN":
            value = f"CAST(to_json({col}) AS VARCHAR)"
        else:
            value = json_string_sql(col)
        prefix = ("{" if i == 0 else ",") + canonical_json(name) + ":"
        parts.append(f"{sql_literal(prefix)} || {value}")
    return " || ".join(parts) + " || '}'"


_JSON_NATIVE_INT = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT",
}


def key_value_for_json(value: Any, dtype: str) -> Any:
    """Reference conversion of one key value to its JSON form (see the rule above)."""
    t = dtype.upper()
    if t in _JSON_NATIVE_INT or t == "BOOLEAN":
        return value
    return value if isinstance(value, str) else str(value)
