"""Running a phase of work on one DuckDB thread.

Collect's statements are many and small (a 50,000-line batch at a time) and joins of a few
hundred thousand rows: DuckDB's second thread saves little wall time there but costs CPU in
coordination (measured at a million answers on a 2-core machine: ~3.5 CPU s of ~21, most of
it system time). Bulk phases of other commands keep DuckDB's own setting.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb


@contextmanager
def single_threaded(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While inside, DuckDB runs `con`'s statements on one thread; the setting is restored
    afterwards (also on an error)."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        try:
            con.execute(f"SET threads = {int(threads)}")
        except duckdb.Error:   # an aborted transaction: the caller is failing anyway
            pass
