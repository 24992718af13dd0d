"""Small helpers for building SQL text safely: identifiers, qualified names, shipped SQL files."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

# An output table name as a job file may write it: `table`, `schema.table` or
# `catalog.schema.table`, each part a plain identifier (no quotes, no dots inside a part).
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")

# Catalogs and schemas an output table may never be written to, in any letter case:
# warehouse-batch's own state, and DuckDB's built-in catalogs and schemas.
RESERVED_QUALIFIERS = {
    "warehouse_batch": "the warehouse_batch schema holds warehouse-batch's state tables",
    "temp": "'temp' is DuckDB's catalog of temporary objects, gone when the process ends",
    "system": "'system' is DuckDB's built-in catalog",
    "memory": "'memory' is DuckDB's in-memory catalog, not the database file",
    "information_schema": "information_schema is DuckDB's read-only catalog view",
    "pg_catalog": "pg_catalog is DuckDB's read-only catalog view",
}


def quote_ident(name: str) -> str:
    """Quote a DuckDB identifier, doubling embedded quotes."""
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    """Quote a possibly dotted table name (`schema.table` or `catalog.schema.table`)."""
    return ".".join(quote_ident(p) for p in split_qualified(name))


def split_qualified(name: str) -> list[str]:
    parts = [p.strip().strip('"') for p in name.split(".")]
    if not all(parts) or len(parts) > 3:
        raise ValueError(f"not a table name: {name!r}")
    return parts


def reserved_qualifier(name: str) -> str | None:
    """Why a plain dotted `name` may not hold an output table (a catalog or schema part is
    reserved, compared case-insensitively, since DuckDB identifiers are), else None."""
    for part in split_qualified(name)[:-1]:
        reason = RESERVED_QUALIFIERS.get(part.lower())
        if reason:
            return reason
    return None


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of a shipped SQL file in `warehouse_batch/sql/`."""
    return resources.files("warehouse_batch").joinpath("sql", name).read_text(encoding="utf-8")
