"""Small helpers for building SQL text safely: identifiers, qualified names, shipped SQL files."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


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


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of a shipped SQL file in `warehouse_batch/sql/`."""
    return resources.files("warehouse_batch").joinpath("sql", name).read_text(encoding="utf-8")
