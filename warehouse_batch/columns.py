"""The columns the output table adds to the source rows: the answer and the row state.

Both `source` (which refuses a SELECT whose columns would clash with them) and `output` (which
writes them) build on this module.
"""
from __future__ import annotations

import duckdb

from .errors import JobFileError
from .identity import sql_literal
from .prepared import Prepared
from .schema import structure
from .spec import JobSpec
from .sqlutil import quote_ident


STATE_COLUMNS = ("_status", "_error", "_failure", "_request_hash", "_finish_reason",
                 "_input_tokens", "_output_tokens", "_attempts")


def answer_column_names(spec: JobSpec) -> list[str]:
    """The columns the output table adds for the answer itself."""
    if spec.endpoint == "embeddings":
        return ["embedding"]
    if spec.output_schema is not None:
        return list(spec.output_columns or spec.output_schema["properties"]) + ["_raw"]
    return ["response"]


def parsed_sql(spec: JobSpec, answers: str) -> str:
    """SQL: `__wb_key` (the request_hash) plus the projected typed columns, parsed from the
    succeeded answers in `answers` (request_hash, status, response_text)."""
    projection = spec.output_columns or {p: quote_ident(p)
                                         for p in spec.output_schema["properties"]}
    cols = ", ".join(f"({expr}) AS {quote_ident(name)}" for name, expr in projection.items())
    return f"""SELECT __wb_key, {cols} FROM (
        SELECT request_hash AS __wb_key,
               unnest(CASE WHEN status = 'succeeded' THEN
                          from_json(response_text, {sql_literal(structure(spec.output_schema))})
                      END)
        FROM {answers})"""


def check_projection(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> None:
    """Bind the output_columns expressions now, so a typo fails before anything is read."""
    if prepared.spec.output_columns is None:
        return
    empty = "(SELECT '' AS request_hash, NULL::VARCHAR AS response_text, 'pending' AS status)"
    try:
        con.execute(f"SELECT * FROM ({parsed_sql(prepared.spec, empty)}) LIMIT 0")
    except duckdb.Error as e:
        raise JobFileError(f"output_columns does not work on the answer's fields: "
                           f"{str(e).splitlines()[0]}",
                           prepared.spec.location_of("output_columns"),
                           hint="fields: " + ", ".join(prepared.spec.output_schema["properties"])
                           ) from None
