"""The job's rows, checked and turned into requests, set-based in DuckDB.

`prepare` binds the user's SELECT (without running it) to check columns and templates,
materialises the rows once (a consistent snapshot for the whole command; the SELECT runs
exactly once, with the user's database attached read-only), refuses NULL and duplicate keys,
and gives every row its request in SQL. A run costs what changed: each row gets a 64-bit
input fingerprint (DuckDB's `hash` of every selected value and of the request's shape) in the
same pass; a row whose fingerprint matches the one in `job_rows` keeps its recorded
`request_hash` and is not rendered or hashed again. The results are temp tables:

* `wb_src`      the selected rows as the SELECT returned them (`__wb_n` is the row's number),
                with `__wb_key`, `__wb_fp`,
                `__wb_same` (fingerprint unchanged) and `__wb_hollow` (unchanged and
                answered: the non-key columns of such rows are NULL unless the output table
                is being built in full, `keep_rows`);
* `wb_prev`     `_rid` and the `request_hash` recorded in `job_rows` for the rows that need
                it (`_recorded_requests`);
* `wb_current`  one row per source row, except those unchanged and answered (every row when
                `keep_rows`; the others need nothing, they are only counted):
                `_rid` (rowid in wb_src), `row_number`,
                `key_json`, `request_hash` (its custom_id is derived:
                `identity.custom_id_sql`), `body_bytes` and
                `prompt_bytes` (the request body's and the prompt's length in bytes; NULL
                for answered unchanged rows: they are never sent), `prompt_chars` (the
                prompt's length in characters: token estimates, `estimate.py`), `input_fp`,
                `prev_request_hash`, `unchanged`, `answered`;
* `wb_prompt`   a view: the prompt of each row rendered now (`_rid`, `row_number`,
                `key_json`, `prompt`), computed again by each reader instead of stored (from
                `wb_src` by the compiled SQL template, or from `wb_prompts` where Jinja
                rendered them).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa

from .attach import attached
from .db import materialise_read_only, read_only
from .errors import DataError, JobFileError, Location
from .estimate import documented
from .identity import key_json_sql, sha256_hex, sql_literal
from .columns import STATE_COLUMNS, answer_column_names, check_projection
from .keys import refuse_keys_in_requests
from .ownership import stored_shape
from .prepared import Prepared
from .providers.base import Provider
from .render import (CompiledTemplate, check_constant, check_sql_prompts, check_variables,
                     compile_template, render_constant, render_rows, to_sql)
from .spec import JobSpec
from .sqlguard import extension_error
from .sqlutil import quote_ident
from .state import SCHEMA

RENDER_BATCH_ROWS = 20_000
_CANNOT_HOLD_TEXT = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|DOUBLE|DECIMAL\(\d+,\d+\)|BOOLEAN|DATE|TIME|TIMESTAMP|TIMESTAMP WITH TIME ZONE|"
    r"INTERVAL|UUID)$")
FINGERPRINT_VERSION = 1   # bump when rendering or hashing changes: every row renders again once



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


def materialise(con: duckdb.DuckDBPyConnection, spec: JobSpec, scan_sql: str | None = None) -> None:
    """Run the job's SELECT once into temp table `wb_src` (as `scan_sql` wraps it). Call it
    inside `db.read_only`."""
    try:
        materialise_read_only(con, "wb_src", scan_sql or spec.sql)
    except duckdb.Error as e:
        raise _sql_error(e, spec) from None


def _sql_error(e: duckdb.Error, spec: JobSpec) -> JobFileError:
    text = str(e)
    missing = extension_error(text, spec.sql, spec.path)   # "not installed here; INSTALL X"
    if missing is not None:
        return missing
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
            log: Callable[[str], None] = lambda message: None, *,
            keep_rows: bool | None = None) -> Prepared:
    """Check the job against the database and build `wb_src` and `wb_current`.

    Rows whose fingerprint (`input_fp`: every selected value and the request's shape) matches
    the one recorded in `job_rows` are not rendered or hashed again. Unless `keep_rows` is
    set, their non-key columns are not kept either (NULL in `wb_src`): the output table
    already holds them. `keep_rows=None` keeps them only when the output table must be built
    in full (missing, or its shape changed: `ownership.output_shape`)."""
    provider.validate()
    # Relative paths in read_csv/read_parquet resolve from the job file's folder too.
    job_dir = str(Path(spec.path).resolve().parent).replace("'", "''")
    con.execute(f"SET file_search_path = '{job_dir}'")
    # The user's database is attached read-only while the SELECT is bound and run: even a
    # statement the parse-time check (sqlguard) missed cannot change it.
    with read_only(con), attached(con, spec):
        columns, types = bind_columns(con, spec)
    _check_columns(spec, columns)
    ratio = documented(provider.name, spec.model, spec.endpoint).chars_per_token
    prompt = compile_template(spec.prompt, "prompt", chars_per_token=ratio)
    check_variables(prompt, columns, types)
    system_text = None
    if spec.system is not None:
        system = compile_template(spec.system, "system", chars_per_token=ratio)
        check_constant(system)
        system_text = render_constant(system, spec.vars)
    prompt_sql = to_sql(prompt, types)
    prepared = Prepared(spec, provider, columns, types, system_text,
                        "sql" if prompt_sql is not None else "python", 0)
    check_projection(con, prepared)
    prepared.shape = output_shape(prepared)
    if keep_rows is None:
        keep_rows = stored_shape(con, spec) != prepared.shape
    prepared.keep_rows = keep_rows

    with read_only(con), attached(con, spec):
        materialise(con, spec, _scan_sql(prepared, input_salt(prepared, prompt)))
    prepared.rows, prepared.changed, prepared.rendered = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT __wb_same), "
        "count(*) FILTER (WHERE NOT __wb_hollow) FROM wb_src").fetchone()
    _check_keys(con, spec, types)
    _recorded_requests(con, spec, keep_rows, prepared.rendered)

    # Prompts are not kept in a temp table (at a million rows they spill): view `wb_prompt`
    # (_rid, row_number, key_json, prompt: rows rendered now) computes them again per reader.
    if prompt_sql is not None:
        con.execute(f"""CREATE OR REPLACE TEMP VIEW wb_prompt AS
            SELECT s.rowid AS _rid, s.__wb_n AS row_number, s.__wb_key AS key_json,
                   {prompt_sql} AS prompt
            FROM wb_src s WHERE NOT s.__wb_hollow""")
        render, joined = f"CASE WHEN s.__wb_hollow THEN NULL ELSE {prompt_sql} END", ""
    else:
        _render_in_python(con, spec, columns, prompt, prepared.rendered, log)
        con.execute("""CREATE OR REPLACE TEMP VIEW wb_prompt AS
            SELECT p._rid, s.__wb_n AS row_number, s.__wb_key AS key_json, p.prompt
            FROM wb_prompts p JOIN wb_src s ON s.rowid = p._rid""")
        render, joined = "p.prompt", "LEFT JOIN wb_prompts p ON p._rid = s.rowid"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_current AS
            SELECT _rid, row_number, key_json,
                   CASE WHEN unchanged THEN prev_request_hash ELSE sha256(ident)
                   END AS request_hash,
                   strlen(ident) - {prepared.identity_overhead()} AS body_bytes,
                   strlen(prompt) AS prompt_bytes, length(prompt) AS prompt_chars,
                   input_fp, prev_request_hash, unchanged, answered
            FROM (SELECT *, {prepared.identity_sql('prompt')} AS ident FROM (
                SELECT s.rowid AS _rid, s.__wb_n AS row_number, s.__wb_key AS key_json,
                       {render} AS prompt,
                       s.__wb_fp AS input_fp, v.request_hash AS prev_request_hash,
                       s.__wb_same AS unchanged, s.__wb_hollow AS answered
                FROM wb_src s LEFT JOIN wb_prev v ON v._rid = s.rowid {joined}
                {'' if keep_rows else 'WHERE NOT s.__wb_hollow'}))""")
    if prompt_sql is not None:
        check_sql_prompts(con, prompt, "wb_prompt", "wb_current")
    check_prepared(con, prepared, prompt)   # no API key in a request, before it is stored or sent
    return prepared


def input_salt(prepared: Prepared, prompt: CompiledTemplate) -> int:
    """The part of every row's `input_fp` that is not the row: a hash of everything else a
    request is made from (the request's identity with the prompt left out, the prompt
    template, vars, the columns and their types, the key), so changing any of them makes
    every row "changed" (rendered and hashed again; unchanged requests are still cached)."""
    spec = prepared.spec
    shape = {"version": FINGERPRINT_VERSION, "identity": prepared.identity_sql("__wb_prompt"),
             "prompt": prompt.source.text, "vars": spec.vars, "key": spec.unique_key,
             "columns": [[c, prepared.types[c]] for c in prepared.columns]}
    if "truncate_tokens" in prompt.source.text:   # its cut moves with the documented ratio
        shape["chars_per_token"] = prompt.chars_per_token
    digest = sha256_hex(json.dumps(shape, sort_keys=True, default=str))
    return int(digest[:15], 16)   # fits a BIGINT literal


def output_shape(prepared: Prepared) -> str:
    """What the output table's columns are made from; a change means a rebuild in full."""
    spec = prepared.spec
    shape = {"version": FINGERPRINT_VERSION,
             "columns": [[c, prepared.types[c]] for c in prepared.columns],
             "answer": answer_column_names(spec), "endpoint": spec.endpoint,
             "schema": spec.output_schema, "projection": spec.output_columns,
             "dimensions": (prepared.provider.embedding_dimensions()
                            if spec.endpoint == "embeddings" else None)}
    return sha256_hex(json.dumps(shape, sort_keys=True, default=str))


def _recorded_requests(con: duckdb.DuckDBPyConnection, spec: JobSpec, every_row: bool,
                       rendered: int) -> None:
    """Temp table `wb_prev(_rid, request_hash)`: the request `job_rows` recorded for each row
    of `wb_src` that needs it: every row when the output table is built in full
    (`every_row`), else only the rows rendered now (not hollow), usually few.

    Read apart from the scan on purpose: the scan's join with `job_rows` then holds only the
    key, fingerprint and answered flag of every recorded row, not its 64-character hash (at
    10M rows ~640 MB more under a 512MB memory limit, spilled on every run), and this join
    builds its hash table on the rows rendered now."""
    if not every_row and not rendered:
        con.execute("CREATE OR REPLACE TEMP TABLE wb_prev (_rid BIGINT, request_hash VARCHAR)")
        return
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_prev AS
        SELECT s._rid, p.request_hash
        FROM (SELECT rowid AS _rid, __wb_key FROM wb_src
              {'' if every_row else 'WHERE NOT __wb_hollow'}) s
        JOIN {SCHEMA}.job_rows p ON p.key_json = s.__wb_key
        WHERE p.job_name = ?""", [spec.name])


def _scan_sql(prepared: Prepared, salt: int) -> str:
    """The one execution of the job's SELECT: every row with its number, key and input
    fingerprint, joined to what `job_rows` recorded for its key (its fingerprint, and whether
    its request is answered, `jobrows.mark_answered`; the recorded request itself is read for
    the rows that need it by `_recorded_requests`). Rows whose fingerprint is unchanged and
    whose request is answered are "hollow": nothing about them needs rendering or sending,
    and unless `keep_rows` their non-key columns are left out."""
    spec = prepared.spec
    keys = set(spec.unique_key)
    key_sql = key_json_sql([(k, prepared.types[k]) for k in spec.unique_key])
    cols = [quote_ident(c) for c in prepared.columns]
    same = "coalesce(p.input_fp = s.__wb_fp, false)"
    hollow = f"({same} AND coalesce(p.done, false))"

    def keep(expr: str) -> str:
        return expr if prepared.keep_rows else f"CASE WHEN {hollow} THEN NULL ELSE {expr} END"

    kept = ", ".join(s_col if prepared.keep_rows or c in keys
                     else f"{keep(s_col)} AS {quote_ident(c)}"
                     for c in prepared.columns for s_col in [f"s.{quote_ident(c)}"])
    return f"""WITH q AS (SELECT *, row_number() OVER () AS __wb_n FROM ({spec.sql}) __wb_q),
        s AS (SELECT *, {key_sql} AS __wb_key, hash({salt}, {', '.join(cols)}) AS __wb_fp
              FROM q),
        p AS (SELECT key_json, input_fp, answered AS done
              FROM {SCHEMA}.job_rows WHERE job_name = {sql_literal(spec.name)})
        SELECT {kept}, s.__wb_n, s.__wb_key, s.__wb_fp, {same} AS __wb_same,
               {hollow} AS __wb_hollow
        FROM s LEFT JOIN p ON p.key_json = s.__wb_key"""


def _check_columns(spec: JobSpec, columns: list[str]) -> None:
    for key in spec.unique_key:
        if key not in columns:
            raise JobFileError(
                f"unique_key column {key!r} is not a column of the SELECT",
                spec.location_of("unique_key"),
                hint="the SELECT returns: " + ", ".join(columns[:30]))
    internal = [c for c in columns if c.lower().startswith("__wb_")]
    if internal:
        raise JobFileError(f"the SELECT returns a column named {internal[0]!r}; names starting "
                           "with __wb_ are warehouse-batch's own", Location(spec.path, spec.sql_line),
                           hint="rename it in the SELECT")
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
    nulls = con.execute(f"SELECT __wb_n AS row_number, {keys} FROM wb_src WHERE {null_cond} "
                        "ORDER BY __wb_n LIMIT 11").fetchall()
    if nulls:
        rows = [dict(zip(["row", *spec.unique_key], r)) for r in nulls]
        raise DataError(f"unique_key {spec.unique_key} is NULL in {_count(con, null_cond)} "
                        "selected row(s); every row needs a key", rows=rows,
                        location=spec.location_of("unique_key"))
    dupes = con.execute(f"SELECT {keys}, count(*) AS n FROM wb_src GROUP BY {keys} "
                        "HAVING count(*) > 1 ORDER BY n DESC LIMIT 11").fetchall()
    if dupes:
        total = con.execute(f"SELECT count(*) FROM (SELECT {keys} FROM wb_src GROUP BY {keys} "
                            "HAVING count(*) > 1)").fetchone()[0]
        rows = [dict(zip([*spec.unique_key, "count"], r)) for r in dupes]
        raise DataError(f"unique_key {spec.unique_key} is not unique: {total} key value(s) "
                        "appear more than once", rows=rows,
                        location=spec.location_of("unique_key"),
                        hint="deduplicate in the SELECT (e.g. QUALIFY row_number() OVER "
                             "(PARTITION BY key ORDER BY updated_at DESC) = 1)")


def _count(con: duckdb.DuckDBPyConnection, cond: str) -> int:
    return con.execute(f"SELECT count(*) FROM wb_src WHERE {cond}").fetchone()[0]


def _render_in_python(con: duckdb.DuckDBPyConnection, spec: JobSpec, columns: list[str],
                      prompt: CompiledTemplate, rows: int, log: Callable[[str], None]) -> None:
    """Render the rows that need a prompt with Jinja over Arrow batches into `wb_prompts`;
    memory stays bounded by the batch size."""
    con.execute("CREATE OR REPLACE TEMP TABLE wb_prompts (_rid BIGINT, prompt VARCHAR)")
    con.execute("""CREATE OR REPLACE TEMP TABLE wb_render_todo AS
        SELECT rowid AS _rid, row_number() OVER (ORDER BY __wb_n) - 1 AS i FROM wb_src
        WHERE NOT __wb_hollow""")
    names = ", ".join(f"s.{quote_ident(c)}" for c in columns)
    for start in range(0, rows, RENDER_BATCH_ROWS):
        batch = con.sql(
            f"SELECT t._rid AS __wb_rid, {names} FROM wb_render_todo t "
            f"JOIN wb_src s ON s.rowid = t._rid "
            f"WHERE t.i >= {start} AND t.i < {start + RENDER_BATCH_ROWS} ORDER BY t.i"
        ).to_arrow_table()
        records = batch.drop_columns(["__wb_rid"]).to_pylist()
        texts = render_rows(prompt, records, spec.vars, spec.unique_key)
        wb_batch = pa.table({"_rid": batch.column("__wb_rid"),
                             "prompt": pa.array(texts, pa.string())})
        con.register("wb_render_batch", wb_batch)
        con.execute("INSERT INTO wb_prompts SELECT * FROM wb_render_batch")
        con.unregister("wb_render_batch")
        if rows > RENDER_BATCH_ROWS:
            log(f"rendered {min(start + RENDER_BATCH_ROWS, rows):,} / {rows:,} prompts")
    con.execute("DROP TABLE wb_render_todo")


def check_prepared(con: duckdb.DuckDBPyConnection, prepared: Prepared,
                   prompt: CompiledTemplate | None = None) -> None:
    """Refuse a prepared job whose requests would carry an API key (see
    `refuse_keys_in_requests`); called by `source.prepare` once `wb_current` exists."""
    spec, provider = prepared.spec, prepared.provider
    static_body = json.dumps(provider.build_body(prepared.system_text, ""), ensure_ascii=False)
    system_key = "system_file" if "system_file" in spec.key_locations else "system"
    prompt_key = "prompt_file" if "prompt_file" in spec.key_locations else "prompt"
    # only columns whose text can hold a key: numbers, dates and booleans cannot
    textual = [c for c in prepared.columns if not _CANNOT_HOLD_TEXT.match(prepared.types[c])]
    if prompt is not None and prepared.render_mode == "sql" and "row" not in prompt.variables():
        # a template compiled to SQL copies its columns into the prompt verbatim: the prompt
        # check already covers them
        textual = [c for c in textual if c not in prompt.variables()]
    row_text = " OR ".join(f"contains(CAST(s.{quote_ident(c)} AS VARCHAR), {{key}})"
                           for c in textual) or "false"
    refuse_keys_in_requests(con, prepared.system_text, static_body, provider.env,
                            spec.location_of(prompt_key), spec.location_of(system_key),
                            row_text)
