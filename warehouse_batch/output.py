"""The output table `<name>`: every selected row, joined to its answer. Rebuilt atomically
(`CREATE OR REPLACE`) after every submit and collect, so it is always queryable and always
reflects the current SELECT and the current answer cache."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb

from .source import Prepared
from .sqlutil import load_sql, quote_qualified, split_qualified, quote_ident


@dataclass
class RowCounts:
    """How many selected rows are in each `_status`."""

    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def answer_status(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> RowCounts:
    """Build temp table `wb_answers` and count rows by status."""
    con.execute(load_sql("output_status.sql"), {"max_attempts": prepared.spec.max_attempts})
    counts = dict(con.execute("SELECT status, count(*) FROM wb_answers GROUP BY 1").fetchall())
    return RowCounts(rows=sum(counts.values()), succeeded=counts.get("succeeded", 0),
                     failed=counts.get("failed", 0), pending=counts.get("pending", 0))


def write_output(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> RowCounts:
    """(Re)build the output table from wb_src and the results cache; returns row counts."""
    counts = answer_status(con, prepared)
    name = prepared.spec.name
    parts = split_qualified(name)
    if len(parts) >= 2:
        schema = ".".join(quote_ident(p) for p in parts[:-1])
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"""CREATE OR REPLACE TABLE {quote_qualified(name)} AS
        SELECT s.*,
               a.response_text  AS response,
               a.status         AS _status,
               a.error          AS _error,
               a.request_hash   AS _request_hash,
               a.finish_reason  AS _finish_reason,
               a.input_tokens   AS _input_tokens,
               a.output_tokens  AS _output_tokens,
               a.attempts       AS _attempts
        FROM wb_src s JOIN wb_answers a ON a._rid = s.rowid
        ORDER BY s.rowid""")
    return counts
