"""The job's rows, checked and turned into requests, set-based in DuckDB.

`prepare` binds the user's SELECT (without running it) to check columns and templates,
materialises the rows once (a consistent snapshot for the whole command; the SELECT runs
exactly once, with the user's database attached read-only), refuses NULL and
duplicate keys, renders one prompt per row and computes `row_key_hash`, `request_hash` and
`custom_id` for every row in SQL. The results are temp tables on the connection:

* `wb_src`      the selected rows, as the user's SELECT returned them;
* `wb_current`  one row per source row: `_rid` (rowid in wb_src), `row_key_hash`, `key_json`,
                `request_hash`, `custom_id`, `prompt`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa

from .db import read_only
from .errors import DataError, JobFileError, Location
from .identity import (custom_id_sql, key_json_sql)
from .columns import STATE_COLUMNS, answer_column_names, check_projection
from .keys import refuse_keys_in_requests
from .prepared import Prepared
from .providers.base import Provider
from .render import (CompiledTemplate, check_constant, check_sql_prompts, check_variables,
                     compile_template, render_constant, render_rows, to_sql)
from .spec import JobSpec
from .sqlutil import quote_ident

RENDER_BATCH_ROWS = 20_000



def bind_columns(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> tuple[list[str], dict[str, str]]:
    """The SELECT's output columns and DuckDB types, found by binding it (`DESCRIBE`: DuckDB
    plans the statement without running it, so the SELECT runs once, when materialised)."""
    try:
        described = con.execute(f"DESCRIBE {spec.sql}").fetchall()
    except duckdb.Error as e:
        raise _sql_error(e, spec) from None
    columns, types = [r[0] for r in described], [str(r[1]) for r in described]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise JobFileError(f"the SELECT returns the column {dupes[0]!r} more than once",
                           Location(spec.path, spec.sql_line),
                           hint="give each output column a distinct name with AS")
    return columns, dict(zip(columns, types))


def materialise(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> None:
    """Run the job's SELECT once into temp table `wb_src`. Call it inside `db.read_only`."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE wb_src AS {spec.sql}")
    except duckdb.Error as e:
        raise _sql_error(e, spec) from None


def _sql_error(e: duckdb.Error, spec: JobSpec) -> JobFileError:
    text = str(e)
    m = re.search(r"LINE (\d+):", text)
    line = int(m.group(1)) if m else spec.sql_line
    hint = None
    if "requires the extension" in text or "extension" in text.lower() and "install" in \
            text.lower():
        hint = ("warehouse-batch never installs DuckDB extensions (it runs offline); install "
                "the extension yourself with the duckdb CLI, or read a local file instead")
    first = text.split("\n\nLINE")[0].strip()
    return JobFileError(f"the SELECT fails in DuckDB: {first}", Location(spec.path, line),
                        hint=hint)


def prepare(con: duckdb.DuckDBPyConnection, spec: JobSpec, provider: Provider,
            log: Callable[[str], None] = lambda message: None) -> Prepared:
    """Check the job against the database and build `wb_src` and `wb_current`."""
    provider.validate()
    # Relative paths in read_csv/read_parquet resolve from the job file's folder too.
    job_dir = str(Path(spec.path).resolve().parent).replace("'", "''")
    con.execute(f"SET file_search_path = '{job_dir}'")
    # The user's database is attached read-only while the SELECT is bound and run: even a
    # statement the parse-time check (sqlguard) missed cannot change it.
    with read_only(con):
        columns, types = bind_columns(con, spec)
    _check_columns(spec, columns)
    prompt = compile_template(spec.prompt, "prompt")
    check_variables(prompt, columns, types)
    system_text = None
    if spec.system is not None:
        system = compile_template(spec.system, "system")
        check_constant(system)
        system_text = render_constant(system, spec.vars)
    check_projection(con, Prepared(spec, provider, columns, types, system_text, "", 0))

    with read_only(con):
        materialise(con, spec)
    rows = con.execute("SELECT count(*) FROM wb_src").fetchone()[0]
    _check_keys(con, spec, types)

    key_sql = key_json_sql([(k, types[k]) for k in spec.unique_key])
    prompt_sql = to_sql(prompt, types)
    if prompt_sql is not None:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_prompts AS
            SELECT rowid AS _rid, {key_sql} AS key_json, {prompt_sql} AS prompt FROM wb_src""")
        check_sql_prompts(con, prompt)
        mode = "sql"
    else:
        _render_in_python(con, spec, prompt, key_sql, rows, log)
        mode = "python"
    prepared = Prepared(spec, provider, columns, types, system_text, mode, rows)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_current AS
        SELECT *, {custom_id_sql('request_hash')} AS custom_id FROM (
            SELECT _rid, sha256(key_json) AS row_key_hash, key_json,
                   sha256({prepared.identity_sql()}) AS request_hash, prompt
            FROM wb_prompts)""")
    con.execute("DROP TABLE wb_prompts")
    check_prepared(con, prepared)   # no API key in any request, before it is stored or sent
    return prepared


def _check_columns(spec: JobSpec, columns: list[str]) -> None:
    for key in spec.unique_key:
        if key not in columns:
            raise JobFileError(
                f"unique_key column {key!r} is not a column of the SELECT",
                spec.location_of("unique_key"),
                hint="the SELECT returns: " + ", ".join(columns[:30]))
    added = list(STATE_COLUMNS) + answer_column_names(spec)
    clash = [c for c in columns if c in added]
    if clash:
        raise JobFileError(
            f"the SELECT returns a column named {clash[0]!r}, which the output table uses "
            "for the answer", Location(spec.path, spec.sql_line),
            hint=f"rename it in the SELECT, e.g. {clash[0]} AS source_{clash[0].lstrip('_')}")


def _check_keys(con: duckdb.DuckDBPyConnection, spec: JobSpec, types: dict[str, str]) -> None:
    keys = ", ".join(quote_ident(k) for k in spec.unique_key)
    null_cond = " OR ".join(f"{quote_ident(k)} IS NULL" for k in spec.unique_key)
    nulls = con.execute(f"SELECT rowid + 1 AS row_number, {keys} FROM wb_src WHERE {null_cond} "
                        "ORDER BY rowid LIMIT 11").fetchall()
    if nulls:
        rows = [dict(zip(["row", *spec.unique_key], r)) for r in nulls]
        raise DataError(f"unique_key {spec.unique_key} is NULL in {_count(con, null_cond)} "
                        "selected row(s); every row needs a key", rows=rows,
                        location=spec.location_of("unique_key"))
    dupes = con.execute(f"SELECT {keys}, count(*) AS n FROM wb_src GROUP BY ALL "
                        "HAVING count(*) > 1 ORDER BY n DESC LIMIT 11").fetchall()
    if dupes:
        total = con.execute(f"SELECT count(*) FROM (SELECT {keys} FROM wb_src GROUP BY ALL "
                            "HAVING count(*) > 1)").fetchone()[0]
        rows = [dict(zip([*spec.unique_key, "count"], r)) for r in dupes]
        raise DataError(f"unique_key {spec.unique_key} is not unique: {total} key value(s) "
                        "appear more than once", rows=rows,
                        location=spec.location_of("unique_key"),
                        hint="deduplicate in the SELECT (e.g. QUALIFY row_number() OVER "
                             "(PARTITION BY key ORDER BY updated_at DESC) = 1)")


def _count(con: duckdb.DuckDBPyConnection, cond: str) -> int:
    return con.execute(f"SELECT count(*) FROM wb_src WHERE {cond}").fetchone()[0]


def _render_in_python(con: duckdb.DuckDBPyConnection, spec: JobSpec, prompt: CompiledTemplate,
                      key_sql: str, rows: int, log: Callable[[str], None]) -> None:
    """Render with Jinja over Arrow batches of rows; memory stays bounded by the batch size."""
    con.execute("CREATE OR REPLACE TEMP TABLE wb_prompts "
                "(_rid BIGINT, key_json VARCHAR, prompt VARCHAR)")
    for start in range(0, rows, RENDER_BATCH_ROWS):
        batch = con.sql(
            f"SELECT rowid AS __wb_rid, {key_sql} AS __wb_key, * FROM wb_src "
            f"WHERE rowid >= {start} AND rowid < {start + RENDER_BATCH_ROWS} ORDER BY rowid"
        ).to_arrow_table()
        records = batch.drop_columns(["__wb_rid", "__wb_key"]).to_pylist()
        texts = render_rows(prompt, records, spec.vars, spec.unique_key)
        wb_batch = pa.table({"_rid": batch.column("__wb_rid"),
                             "key_json": batch.column("__wb_key"),
                             "prompt": pa.array(texts, pa.string())})
        con.register("wb_render_batch", wb_batch)
        con.execute("INSERT INTO wb_prompts SELECT * FROM wb_render_batch")
        con.unregister("wb_render_batch")
        if rows > RENDER_BATCH_ROWS:
            log(f"rendered {min(start + RENDER_BATCH_ROWS, rows):,} / {rows:,} prompts")


def check_prepared(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> None:
    """Refuse a prepared job whose requests would carry an API key (see
    `refuse_keys_in_requests`); called by `source.prepare` once `wb_current` exists."""
    spec, provider = prepared.spec, prepared.provider
    static_body = json.dumps(provider.build_body(prepared.system_text, ""), ensure_ascii=False)
    system_key = "system_file" if "system_file" in spec.key_locations else "system"
    prompt_key = "prompt_file" if "prompt_file" in spec.key_locations else "prompt"
    row_text = "concat_ws(chr(31), " + ", ".join(
        f"CAST(s.{quote_ident(c)} AS VARCHAR)" for c in prepared.columns) + ")"
    refuse_keys_in_requests(con, prepared.system_text, static_body, provider.env,
                            spec.location_of(prompt_key), spec.location_of(system_key),
                            row_text)
