"""Opening the user's DuckDB file: offline-safe, readable by older DuckDB, short-lived."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

import duckdb

from .errors import StateError
from .state import ensure_schema

DEFAULT_DB = "warehouse.duckdb"
DB_ENV = "WAREHOUSE_BATCH_DB"


def default_db_path() -> str:
    """`--db` default: $WAREHOUSE_BATCH_DB, else ./warehouse.duckdb."""
    return os.environ.get(DB_ENV) or DEFAULT_DB


def connect(path: str, *, migrate: bool = True, lock_retries: int = 3) -> duckdb.DuckDBPyConnection:
    """Open `path` read-write with extension auto-install off, and bring the state schema up.

    Auto-install is off so a query that needs a network-only extension (httpfs, …) fails at
    once with DuckDB's "requires the extension … to be loaded" instead of hanging on a download.
    New files are written in the v1.4 storage format so DuckDB 1.4+ tools can open them.
    """
    config: dict = {"autoinstall_known_extensions": False}
    if path != ":memory:" and not os.path.exists(path) and duckdb.__version__ >= "1.2":
        config["storage_compatibility_version"] = "v1.4.0"
    for attempt in range(lock_retries + 1):
        try:
            con = duckdb.connect(path, config=config)
            break
        except duckdb.IOException as e:
            if "lock" in str(e).lower() and attempt < lock_retries:
                time.sleep(0.2 * 2 ** attempt)   # another writer (dbt?) may be finishing
                continue
            if "lock" in str(e).lower():
                raise StateError(
                    f"{path} is open in another process; DuckDB allows one writer at a time. "
                    "Run warehouse-batch after dbt (or the other writer) has finished.") from None
            raise StateError(f"cannot open {path}: {e}") from None
    if migrate:
        ensure_schema(con)
    return con


@contextmanager
def session(path: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection held only for one phase of work, then closed (releasing the file lock)."""
    con = connect(path)
    try:
        yield con
    finally:
        con.close()
