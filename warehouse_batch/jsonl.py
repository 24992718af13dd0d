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
    """Load raw JSONL lines into temp table `wb_lines`; returns how many were not JSON."""
    con.execute("CREATE OR REPLACE TEMP TABLE wb_lines (line VARCHAR)")
    if not paths:
        return 0
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    con.execute(f"""INSERT INTO wb_lines
        SELECT rtrim(line, chr(13)) FROM read_csv({files}, columns={{'line': 'VARCHAR'}},
            header=false, delim='{CSV_DELIM}', quote='', escape='', auto_detect=false)
        WHERE line IS NOT NULL AND trim(line) <> ''""")
    bad = con.execute("SELECT count(*) FROM wb_lines WHERE NOT json_valid(line)").fetchone()[0]
    if bad:
        con.execute("DELETE FROM wb_lines WHERE NOT json_valid(line)")
    return bad
