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
                     only_rows_in: str | None = None) -> int:
    """Temp table `wb_send`: each distinct request that needs sending, once, with its row id
    (`_rid`, its first row: its prompt is in view `wb_prompt`), body size (`body_bytes`,
    the same for every row of a request) and prompt length in characters (`prompt_chars`).
    Returns the number of requests. One grouping pass over `wb_plan`, which carries no wide
    string but the hash. `only_rows_in`: a temp table of `_rid`s to keep (`try`'s rows)."""
    cats = ", ".join(f"'{c}'" for c in categories)
    within = f" AND _rid IN (SELECT _rid FROM {only_rows_in})" if only_rows_in else ""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_send AS
        SELECT min(_rid) AS _rid, request_hash, any_value(body_bytes) AS body_bytes,
               any_value(prompt_chars) AS prompt_chars
        FROM wb_plan WHERE category IN ({cats}){within} GROUP BY request_hash""")
    return con.execute("SELECT count(*) FROM wb_send").fetchone()[0]
