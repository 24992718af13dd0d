"""What each selected row needs, set-based: `wb_plan` (a category per row) and `wb_send` (the
distinct requests to send). Used by `plan` (to report) and `submit` (to act)."""
from __future__ import annotations

import duckdb

from .prepared import Prepared
from .sqlutil import load_sql


SEND_CATEGORIES = ("new", "changed", "retry", "unsent")


def classify(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> None:
    """Build temp table `wb_plan` (one row per selected row, with its category)."""
    con.execute(load_sql("plan_rows.sql"),
                {"max_attempts": prepared.spec.max_attempts})


def build_send_table(con: duckdb.DuckDBPyConnection,
                     categories: tuple[str, ...] = SEND_CATEGORIES,
                     only_rows_in: str | None = None, in_row_order: bool = False) -> int:
    """Temp table `wb_send`: each distinct request that needs sending, once, with its row id
    (`_rid`, its first row: its prompt is in view `wb_prompt`), body size (`body_bytes`,
    the same for every row of a request) and prompt length in characters (`prompt_chars`).
    Returns the number of requests. One grouping pass over `wb_plan`, which carries no wide
    string but the hash. `only_rows_in`: a temp table of `_rid`s to keep (`try`'s rows).

    `in_row_order`: stored in `_rid` order (a sort of these narrow rows), for a submit. Its
    rows are numbered in that order (`requests.seq`) and stored as the prompts stream from
    the source in that same order, so each batch's requests sit together in the requests
    table and writing its payload reads only their row groups. In the grouping's own order
    (a hash order) every row group held every batch's requests, and each of N batches read
    them all: 0.2 CPU s a batch at a million requests, 2.5 s at ten million."""
    cats = ", ".join(f"'{c}'" for c in categories)
    within = f" AND _rid IN (SELECT _rid FROM {only_rows_in})" if only_rows_in else ""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_send AS
        SELECT min(_rid) AS _rid, request_hash, any_value(body_bytes) AS body_bytes,
               any_value(prompt_chars) AS prompt_chars
        FROM wb_plan WHERE category IN ({cats}){within} GROUP BY request_hash
        {'ORDER BY _rid' if in_row_order else ''}""")
    return con.execute("SELECT count(*) FROM wb_send").fetchone()[0]
