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


def build_send_table(con: duckdb.DuckDBPyConnection) -> int:
    """Temp table `wb_send`: each distinct request that needs sending, once, with its row id
    (`_rid`: its prompt is in view `wb_prompt`) and body size (`body_bytes`). Returns the
    number of requests. Grouping carries only the row id: grouping wide strings is what made
    this slow at a million rows."""
    cats = ", ".join(f"'{c}'" for c in SEND_CATEGORIES)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_first AS
        SELECT min(_rid) AS _rid FROM wb_plan WHERE category IN ({cats})
        GROUP BY request_hash""")
    con.execute("""CREATE OR REPLACE TEMP TABLE wb_send AS
        SELECT c._rid, c.request_hash, c.body_bytes
        FROM wb_current c JOIN wb_first f USING (_rid)""")
    con.execute("DROP TABLE wb_first")
    return con.execute("SELECT count(*) FROM wb_send").fetchone()[0]
