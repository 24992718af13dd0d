"""DuckDB settings for collect's phases of work: one thread, and a pool of reused blocks.

Collect's statements are many and small (a 50,000-line batch at a time) and joins of a few
hundred thousand rows. Measured at a million answers on a 2-core machine (CPU seconds, the
whole process):

* DuckDB's second thread saves little wall time there but costs CPU in coordination
  (~3.5 s of ~21, most of it system time), so these phases run on one thread;
* every batch allocates and frees its buffers again, and the pages freed to the OS are
  faulted in again by the next batch (~1.3M page faults, ~1 s of system time); a block pool
  DuckDB keeps (`block_allocator_memory`, never freed, and only touched as it is used)
  cuts that by a quarter.

Bulk phases of other commands keep DuckDB's own settings.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb

BLOCK_POOL = "256MB"   # half the default memory limit: the buffers of one batch's work


@contextmanager
def collect_tuning(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While inside, DuckDB runs `con`'s statements on one thread (restored afterwards, also
    on an error) and reuses a pool of blocks (kept for the rest of the connection: DuckDB
    cannot shrink it)."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    pool = con.execute("SELECT current_setting('block_allocator_memory')").fetchone()[0]
    if pool.startswith("0 "):
        con.execute(f"SET block_allocator_memory = '{BLOCK_POOL}'")
    try:
        yield
    finally:
        try:
            con.execute(f"SET threads = {int(threads)}")
        except duckdb.Error:   # an aborted transaction: the caller is failing anyway
            pass
