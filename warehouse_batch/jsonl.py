"""JSONL in and out of DuckDB, byte for byte: upload payloads written from the ledger with
`COPY`, result files read back as raw lines. Lines go through DuckDB's CSV reader/writer with a
delimiter that never appears raw in JSON text, so each line is kept verbatim."""
from __future__ import annotations

from pathlib import Path

import duckdb

from .identity import json_template_sql
from .providers.base import BODY_PLACEHOLDER, CUSTOM_ID_PLACEHOLDER, Provider
from .state import SCHEMA


CSV_DELIM = "\x1f"  # never appears raw in JSON text, so lines are written verbatim


def line_sql(provider: Provider, custom_id_expr: str, body_expr: str) -> str:
    """SQL for one upload line (the provider's envelope around custom_id and body)."""
    env = provider.envelope(CUSTOM_ID_PLACEHOLDER, BODY_PLACEHOLDER)
    return json_template_sql(env, {CUSTOM_ID_PLACEHOLDER: f"'\"' || {custom_id_expr} || '\"'",
                                   BODY_PLACEHOLDER: body_expr})


def write_payload(con: duckdb.DuckDBPyConnection, prepared_line_sql: str, batch_id: str,
                  dest: Path) -> Path:
    """The batch's JSONL, rebuilt from the ledger: identical bytes on every (re)try."""
    path = dest / f"{batch_id}.jsonl"
    con.execute(f"""COPY (SELECT {prepared_line_sql} AS line
        FROM {SCHEMA}.batch_requests br JOIN {SCHEMA}.requests r USING (request_hash)
        WHERE br.batch_id = '{batch_id}' ORDER BY br.custom_id)
        TO '{path}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '{CSV_DELIM}')""")
    return path


def load_lines(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> int:
    """Expose the valid JSON lines of `paths` as temp view `wb_lines(line)`; returns how many
    non-blank lines were not JSON (they are left out).

    A view, not a table: the lines are read straight from the files by the one statement that
    consumes them, so a batch's result file is never copied into memory (it can be GBs)."""
    if not paths:
        con.execute("CREATE OR REPLACE TEMP VIEW wb_lines AS "
                    "SELECT CAST(NULL AS VARCHAR) AS line WHERE false")
        return 0
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    # strict_mode off: a CRLF line in a LF file is read as the line (CR trimmed below) and an
    # empty row, instead of failing the batch. trim and rtrim copy the whole line: only a line
    # that may be blank (empty, or starting with a space: what trim removes) or ends with CR
    # pays for it.
    raw = f"""SELECT CASE WHEN ends_with(line, chr(13)) THEN rtrim(line, chr(13))
                     ELSE line END AS line
        FROM read_csv({files}, columns={{'line': 'VARCHAR'}}, header=false,
                      delim='{CSV_DELIM}', quote='', escape='', auto_detect=false,
                      strict_mode=false)
        WHERE line IS NOT NULL
          AND CASE WHEN ascii(line) IN (0, 32) THEN trim(line) <> '' ELSE true END"""
    bad = con.execute(f"SELECT count(*) FROM ({raw}) WHERE NOT json_valid(line)").fetchone()[0]
    # the filter costs a second parse of every line: only pay it when some line needs it
    con.execute("CREATE OR REPLACE TEMP VIEW wb_lines AS "
                + (f"SELECT line FROM ({raw}) WHERE json_valid(line)" if bad else raw))
    return bad
