"""The output table `<name>`: every selected row, joined to its answer. Rebuilt atomically
(`CREATE OR REPLACE`) after every submit and collect, so it is always queryable and always
reflects the current SELECT and the current answer cache.

Only the table the job file owns is ever written or dropped (`ownership.py`), named fully
(catalog, schema, table) so DuckDB's search path cannot redirect it.

The answer columns depend on the job: `response` (text); one typed column per schema
property, or per `output_columns` expression, plus `_raw` (typed answers); or
`embedding FLOAT[n]` (embeddings). Parsing happens here, from the cached raw answers, so
changing only the projection re-parses and sends nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb

from .ownership import require_owner
from .columns import answer_column_names, parsed_sql
from .prepared import Prepared
from .spec import JobSpec
from .sqlutil import load_sql, quote_ident


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
    """(Re)build the output table from wb_src and the results cache; returns row counts.
    Only a table this job file has claimed (`ownership.claim_output`) is ever replaced."""
    counts = answer_status(con, prepared)
    spec = prepared.spec
    table = require_owner(con, spec)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table.catalog)}."
                f"{quote_ident(table.schema)}")
    join = ""
    if spec.endpoint == "embeddings":
        n = prepared.provider.embedding_dimensions()
        answer = (f"CASE WHEN a.status = 'succeeded' THEN CAST(a.embedding AS FLOAT[{n}]) END "
                  "AS embedding")
    elif spec.output_schema is not None:
        names = answer_column_names(spec)[:-1]
        answer = ", ".join(f"p.{quote_ident(n)}" for n in names) + \
            ", a.response_text AS _raw"
        join = f"JOIN ({parsed_sql(prepared, 'wb_answers')}) p ON p.__wb_rid = s.rowid"
    else:
        answer = "a.response_text AS response"
    con.execute(f"""CREATE OR REPLACE TABLE {table.qualified} AS
        SELECT s.*, {answer},
               a.status         AS _status,
               a.error          AS _error,
               a.failure        AS _failure,
               a.request_hash   AS _request_hash,
               a.finish_reason  AS _finish_reason,
               a.input_tokens   AS _input_tokens,
               a.output_tokens  AS _output_tokens,
               a.attempts       AS _attempts
        FROM wb_src s JOIN wb_answers a ON a._rid = s.rowid {join}
        ORDER BY s.rowid""")
    return counts


def drop_output(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> None:
    """Drop the job's output table (`--full-refresh`); only a table the job file owns."""
    con.execute(f"DROP TABLE IF EXISTS {require_owner(con, spec).qualified}")
