"""JSONL in and out of DuckDB: upload payloads written from the ledger with `COPY`, byte for
byte, and result files read back as raw lines or as typed records. Lines go through DuckDB's
CSV reader/writer with a delimiter that never appears raw in JSON text, so each line is kept
verbatim; records go through its JSON reader."""
from __future__ import annotations

from pathlib import Path

import duckdb

from .identity import canonical_json, sql_literal
from .providers.base import BODY_PLACEHOLDER, CUSTOM_ID_PLACEHOLDER, Provider
from .request_store import SeqRange, seq_filter_sql
from .sqlutil import quote_ident
from .state import SCHEMA


CSV_DELIM = "\x1f"  # never appears raw in JSON text, so lines are written verbatim


def line_sql(provider: Provider, custom_id_expr: str, body_expr: str) -> str:
    """SQL for one upload line (the provider's envelope around custom_id and body).

    One `concat` call builds each line once (a chain of `||` copies it at every step: a
    fifth of the cost of writing a payload). Both values are never NULL (custom ids and
    bodies are NOT NULL in the ledger), so concat's skipping of NULLs never applies."""
    text = canonical_json(provider.envelope(CUSTOM_ID_PLACEHOLDER, BODY_PLACEHOLDER))
    holes = {canonical_json(CUSTOM_ID_PLACEHOLDER): f"'\"', {custom_id_expr}, '\"'",
             canonical_json(BODY_PLACEHOLDER): f"{body_expr}"}
    spots = sorted((text.index(token), token, expr) for token, expr in holes.items()
                   if text.count(token) == 1)
    if len(spots) != len(holes):
        raise ValueError("the envelope must hold custom_id and body once each")
    parts, pos = [], 0
    for start, token, expr in spots:
        parts += [sql_literal(text[pos:start]), expr]
        pos = start + len(token)
    parts.append(sql_literal(text[pos:]))
    return "concat(" + ", ".join(p for p in parts if p != "''") + ")"


def line_nbytes_sql(provider: Provider, custom_id_expr: str, body_nbytes_expr: str) -> str:
    """SQL for the UTF-8 byte length of the line `line_sql` builds, from the length of its
    body (without building the line)."""
    env = provider.envelope(CUSTOM_ID_PLACEHOLDER, BODY_PLACEHOLDER)
    fixed = (len(canonical_json(env).encode("utf-8"))
             - len(canonical_json(CUSTOM_ID_PLACEHOLDER).encode("utf-8"))
             - len(canonical_json(BODY_PLACEHOLDER).encode("utf-8")) + 2)   # custom_id's quotes
    return f"({fixed} + strlen({custom_id_expr}) + {body_nbytes_expr})"


def write_payload(con: duckdb.DuckDBPyConnection, prepared_line_sql: str, batch_id: str,
                  dest: Path, seq_range: SeqRange | None = None, exact: bool = False) -> Path:
    """The batch's JSONL, rebuilt from the ledger: the same lines on every (re)try.
    `prepared_line_sql` reads `requests r` (`line_sql(provider, "r.custom_id", "r.body")`).

    The lines come in the order the requests are stored (DuckDB preserves it by default, so
    the bytes are identical on every retry too), not sorted: sorting the 20 payloads of a
    million requests by custom_id cost ~1.2 CPU s, for nothing. No provider reads meaning
    into the order, and nothing of ours depends on it: a lost upload is found by its file
    name, a lost batch by its metadata tag or by the set of its custom_ids.

    `seq_range` (the `requests.seq` range holding the batch's requests, `request_store`)
    narrows what is read: without it every stored request is scanned for the batch's. With
    `exact`, the batch's requests are that range and nothing else (a new batch of requests
    stored just now), so `batch_requests` is not read at all."""
    path = dest / f"{batch_id}.jsonl"
    members = ("" if exact and seq_range is not None else
               f"SEMI JOIN (SELECT request_hash FROM {SCHEMA}.batch_requests "
               f"WHERE batch_id = {sql_literal(batch_id)}) br USING (request_hash)")
    con.execute(f"""COPY (SELECT {prepared_line_sql} AS line
        FROM {SCHEMA}.requests r {members}
        WHERE true{seq_filter_sql('r', seq_range)})
        TO {sql_literal(str(path))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '',
                                     DELIMITER '{CSV_DELIM}')""")
    return path


def load_lines(con: duckdb.DuckDBPyConnection, paths: list[Path],
               records: dict[str, str] | None = None) -> None:
    """Expose the non-blank lines of `paths` as temp view `wb_lines(line)`, verbatim (a CR
    before the LF trimmed), and, given `records` (column name -> DuckDB type), each line as a
    typed record in temp view `wb_records` (`read_records`).

    A view, not a table: the lines are read straight from the files by the one statement that
    consumes them, so a batch's result file is never copied into memory (it can be GBs).
    Lines are not checked here: the providers' results SQL parses each line once (with
    `try()`, or as a record), so a line that is not JSON comes out without a custom_id and is
    left out (its request counts as not processed). Checking them up front cost a second
    parse of every line; `invalid_lines` counts them when it matters."""
    if records is not None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW wb_records AS {read_records(paths, records)}")
    if not paths:
        con.execute("CREATE OR REPLACE TEMP VIEW wb_lines AS "
                    "SELECT CAST(NULL AS VARCHAR) AS line WHERE false")
        return
    files = _file_list(paths)
    # strict_mode off: a CRLF line in a LF file is read as the line (CR trimmed below) and an
    # empty row, instead of failing the batch. trim and rtrim copy the whole line: only a line
    # that may be blank (empty, or starting with a space: what trim removes) or ends with CR
    # pays for it.
    con.execute(f"""CREATE OR REPLACE TEMP VIEW wb_lines AS
        SELECT CASE WHEN ends_with(line, chr(13)) THEN rtrim(line, chr(13))
                     ELSE line END AS line
        FROM read_csv({files}, columns={{'line': 'VARCHAR'}}, header=false,
                      delim='{CSV_DELIM}', quote='', escape='', auto_detect=false,
                      strict_mode=false)
        WHERE line IS NOT NULL
          AND CASE WHEN ascii(line) IN (0, 32) THEN trim(line) <> '' ELSE true END""")


def read_records(paths: list[Path], columns: dict[str, str]) -> str:
    """SQL reading every line of `paths` as one JSON object with the given typed `columns`.

    DuckDB's JSON reader parses each line once, in place: about a third of the CPU of reading
    the lines as text and parsing each with `json_transform`. It is lenient as the results
    SQL must be: a line that is not JSON (or not an object) becomes a row of NULLs, so it
    has no custom_id and matches no request (`ignore_errors`); a field of the wrong type is
    NULL (or cast, as `json_transform` does); blank lines are skipped and a CR before the LF
    is ignored. A nested object read as a STRUCT is NULL only when it is absent or null: any
    other value (a string, say) gives a STRUCT of NULLs, so "is it an object" is asked of a
    `JSON` field, not of a STRUCT. Lines may be up to 64 MB (`read_csv`'s stop at 2 MB)."""
    spec = "{" + ", ".join(f"{sql_literal(name)}: {sql_literal(kind)}"
                           for name, kind in columns.items()) + "}"
    if not paths:
        return ("SELECT " + ", ".join(f"CAST(NULL AS {kind}) AS {quote_ident(name)}"
                                      for name, kind in columns.items()) + " WHERE false")
    return (f"SELECT * FROM read_json({_file_list(paths)}, format='newline_delimited', "
            f"columns={spec}, ignore_errors=true, maximum_object_size={64 << 20})")


def _file_list(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_literal(str(p)) for p in paths) + "]"
