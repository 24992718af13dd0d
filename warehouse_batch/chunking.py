"""Cutting the requests to send into batches under the provider's limits (requests, bytes,
tokens), set-based with a greedy recut only when a size limit would be passed."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from .providers.base import Limits


def chunk_sizes(sizes: list[int], tokens: list[int], limits: Limits) -> list[int]:
    """Greedy chunk number per request, closing a chunk before any limit would be passed."""
    out, chunk, n, nbytes, ntok = [], 0, 0, 0, 0
    for size, tok in zip(sizes, tokens):
        over = (n + 1 > limits.max_requests or nbytes + size > limits.max_bytes
                or (limits.max_tokens is not None and ntok + tok > limits.max_tokens))
        if over and n > 0:
            chunk, n, nbytes, ntok = chunk + 1, 0, 0, 0
        out.append(chunk)
        n, nbytes, ntok = n + 1, nbytes + size, ntok + tok
    return out


def assign_chunks(con: duckdb.DuckDBPyConnection, source_sql: str, limits: Limits,
                  position: str | None = None) -> tuple[int, int, int]:
    """Temp table `wb_chunked` (source columns + `chunk`); returns (chunks, bytes, tokens).

    `source_sql` yields nbytes and ntok (and whatever else the caller needs kept). Chunks are cut by request count
    in SQL; only when a byte or token limit would then be passed does a greedy pass over the
    sizes (in Python, over two integer lists) recut them.

    `position` names a source column numbering the requests 0, 1, 2, … (gaps allowed) in the
    order to cut them: chunks are then cut from it without a sort, chunk numbers never
    decrease as it grows, and they may skip a number (a block whose requests all left).
    """
    order = position or "rowid"
    number = (f"{position} // {limits.max_requests}" if position else
              f"(row_number() OVER () - 1) // {limits.max_requests}")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_chunked AS
        SELECT *, CAST({number} AS INTEGER) AS chunk FROM ({source_sql})""")
    worst = con.execute("""SELECT max(b), max(t) FROM (
        SELECT sum(nbytes) AS b, sum(ntok) AS t FROM wb_chunked GROUP BY chunk)""").fetchone()
    if worst[0] is not None and (worst[0] > limits.max_bytes or (
            limits.max_tokens is not None and worst[1] > limits.max_tokens)):
        rows = con.execute(f"SELECT rowid, nbytes, ntok FROM wb_chunked "
                           f"ORDER BY {order}").fetchall()
        chunks = chunk_sizes([r[1] for r in rows], [r[2] for r in rows], limits)
        con.register("wb_recut", pa.table({"rid": [r[0] for r in rows], "chunk": chunks}))
        con.execute("""CREATE OR REPLACE TEMP TABLE wb_chunked AS
            SELECT w.* REPLACE (r.chunk AS chunk)
            FROM wb_chunked w JOIN wb_recut r ON r.rid = w.rowid""")
        con.unregister("wb_recut")
    n, nbytes, ntok = con.execute("SELECT count(DISTINCT chunk), coalesce(sum(nbytes), 0), "
                                  "coalesce(sum(ntok), 0) FROM wb_chunked").fetchone()
    return n, nbytes, ntok
