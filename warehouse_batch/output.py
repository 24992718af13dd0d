"""The output table `<name>`: every selected row, joined to its answer; kept current after
every submit and collect, so it is always queryable and reflects the current SELECT and the
current answer cache.

It is built in full (`CREATE OR REPLACE`, atomic) when it is missing or its column shape
changed (`source.output_shape`, recorded in `warehouse_batch.outputs.shape`). Otherwise it is
maintained in one transaction by what changed: rows whose input fingerprint changed are
replaced, rows no longer selected are deleted, and the answer columns of requests answered or
sent since the pass began are updated. A poll that collects answers updates their rows without
reading the source (`update_answers`); a run where nothing changed writes nothing.

Only the table the job file owns is ever written or dropped (`ownership.py`), named fully
(catalog, schema, table) so DuckDB's search path cannot redirect it.

The answer columns depend on the job: `response` (text); one typed column per schema
property, or per `output_columns` expression, plus `_raw` (typed answers); or
`embedding FLOAT[n]` (embeddings). Parsing happens here, from the cached raw answers, so
changing only the projection re-parses and sends nothing.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb

from .columns import answer_column_names, parsed_sql
from .errors import JobFileError
from .identity import sql_literal
from .jobrows import mark_answered
from .tuning import collect_tuning
from .ownership import OutputTable, existing_kind, record_shape, require_owner
from .prepared import Prepared
from .reports import RowCounts
from .providers.base import Provider
from .spec import JobSpec
from .sqlutil import load_sql, quote_ident
from .state import SCHEMA, zstd_available


_SUCCEEDED = "SELECT request_hash FROM wb_answers WHERE status = 'succeeded'"


def _answer_columns(spec: JobSpec, provider: Provider) -> tuple[list[tuple[str, str]], str]:
    """The output table's answer and state columns, in table order, as (name, SQL over
    `wb_answers a`), and the join that parses typed answers (`p`)."""
    join = ""
    if spec.endpoint == "embeddings":
        n = provider.embedding_dimensions()
        cols = [("embedding", f"CASE WHEN a.status = 'succeeded' THEN "
                              f"CAST(a.embedding AS FLOAT[{n}]) END")]
    elif spec.output_schema is not None:
        cols = [(n, f"p.{quote_ident(n)}") for n in answer_column_names(spec)[:-1]]
        cols.append(("_raw", "a.response_text"))
        join = f"LEFT JOIN ({parsed_sql(spec, 'wb_answers')}) p ON p.__wb_key = a.request_hash"
    else:
        cols = [("response", "a.response_text")]
    cols += [("_status", "a.status"), ("_error", "a.error"), ("_failure", "a.failure"),
             ("_request_hash", "a.request_hash"), ("_finish_reason", "a.finish_reason"),
             ("_input_tokens", "a.input_tokens"), ("_output_tokens", "a.output_tokens"),
             ("_attempts", "a.attempts")]
    return cols, join


def _answers(con: duckdb.DuckDBPyConnection, spec: JobSpec, keys_sql: str) -> None:
    """Temp table `wb_answers`: the answer state of each distinct request `keys_sql` yields."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE wb_answer_keys AS SELECT DISTINCT request_hash "
                f"FROM ({keys_sql})")
    con.execute(load_sql("answers.sql"), {"max_attempts": spec.max_attempts})


def _rows_sql(prepared: Prepared, where: str = "true") -> str:
    """Whole output rows for the rows of `wb_src s` matching `where`, in the table's column
    order. No row order: sorting a multi-million-row table on the way in ran out of a 512MB
    memory limit at 3M rows (and rows replaced in place come last anyway)."""
    cols, join = _answer_columns(prepared.spec, prepared.provider)
    select = ", ".join([f"s.{quote_ident(c)}" for c in prepared.columns]
                       + [f"{expr} AS {quote_ident(name)}" for name, expr in cols])
    return f"""SELECT {select}
        FROM wb_src s JOIN wb_current c ON c._rid = s.rowid
        JOIN wb_answers a ON a.request_hash = c.request_hash {join}
        WHERE {where}"""


def _timestamp_sql(at: dt.datetime) -> str:
    return f"CAST({sql_literal(at.isoformat(sep=' '))} AS TIMESTAMP)"


def touched_sql(job_name: str, since: dt.datetime) -> str:
    """Requests whose answer state may have moved since `since`: answered (results written),
    or in a batch of the job recorded or ended since then."""
    at = _timestamp_sql(since)
    return f"""{answered_since_sql(since)}
        UNION ALL
        SELECT request_hash FROM {SCHEMA}.batch_requests WHERE batch_id IN (
            SELECT batch_id FROM {SCHEMA}.batches
            WHERE job_name = {sql_literal(job_name)}
              AND (created_at >= {at} OR ended_at >= {at}))"""


def answered_since_sql(since: dt.datetime) -> str:
    """Requests whose results were written since `since`: the requests a collect touched
    (those that succeeded mark `job_rows` answered: `succeeded_since_sql`). Narrower than
    `touched_sql` on purpose: at 3M rows the lookup of that union (every collected request
    twice) ran out of a 512MB memory limit; this one took 1.3 s."""
    return (f"SELECT request_hash FROM {SCHEMA}.results "
            f"WHERE updated_at >= {_timestamp_sql(since)}")


def succeeded_since_sql(since: dt.datetime) -> str:
    """Requests whose results were written since `since` with a successful answer: what a
    pass marks answered in `job_rows` (`jobrows.mark_answered`)."""
    return f"{answered_since_sql(since)} AND status = 'succeeded'"


def _update_answers(con: duckdb.DuckDBPyConnection, spec: JobSpec, provider: Provider,
                    table: OutputTable) -> None:
    """Set the answer and state columns of the output rows whose request is in
    `wb_answers`."""
    cols, join = _answer_columns(spec, provider)
    sets = ", ".join(f"{quote_ident(n)} = u.{quote_ident(n)}" for n, _ in cols
                     if n != "_request_hash")
    select = ", ".join(f"{expr} AS {quote_ident(name)}" for name, expr in cols)
    con.execute(f"""UPDATE {table.qualified} AS t SET {sets}
        FROM (SELECT {select} FROM wb_answers a {join}) u
        WHERE t._request_hash = u._request_hash""")


def count_rows(con: duckdb.DuckDBPyConnection, table: OutputTable,
               max_attempts: int) -> RowCounts:
    """Rows of the output table by `_status`, for this command (`attempts.set_command`): a
    row shown `failed` because an earlier command spent its attempts is work to do for any
    later one, so failed rows are judged again against the answer cache."""
    counts = dict(con.execute(f"SELECT _status, count(*) FROM {table.qualified} GROUP BY 1")
                  .fetchall())
    failed = counts.get("failed", 0)
    if failed:
        con.execute(f"CREATE OR REPLACE TEMP TABLE wb_answer_keys AS SELECT DISTINCT "
                    f"_request_hash AS request_hash FROM {table.qualified} "
                    "WHERE _status = 'failed'")
        con.execute(load_sql("answers.sql"), {"max_attempts": max_attempts})
        failed = con.execute(f"""SELECT count(*) FROM {table.qualified} o
            JOIN wb_answers a ON a.request_hash = o._request_hash
            WHERE o._status = 'failed' AND a.status = 'failed'""").fetchone()[0]
    rows = sum(counts.values())
    succeeded = counts.get("succeeded", 0)
    return RowCounts(rows=rows, succeeded=succeeded, failed=failed,
                     pending=rows - succeeded - failed)


def _in_transaction(con: duckdb.DuckDBPyConnection, steps) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        steps()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _build(con: duckdb.DuckDBPyConnection, table: OutputTable, rows_sql: str) -> None:
    """Create (or replace) the output table from `rows_sql`, its text columns compressed with
    ZSTD where the file's format has it: at a million rows DuckDB's default analysis of
    dictionary/FSST compression cost more CPU (3.4 s against 2.2 s) for a larger table, and
    scans read both as fast. Rows written later by updates get DuckDB's default choice.
    The setting is put back as it was (on a caller's connection, the caller's value)."""
    zstd = zstd_available(con, table.catalog)
    if zstd:
        before = con.execute("SELECT current_setting('force_compression')").fetchone()[0]
        con.execute("SET force_compression = 'zstd'")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table.qualified} AS {rows_sql}")
    finally:
        if zstd:
            con.execute(f"SET force_compression = {sql_literal(str(before))}")


def write_output(con: duckdb.DuckDBPyConnection, prepared: Prepared,
                 since: dt.datetime | None = None) -> RowCounts:
    """Bring the output table up to date after `source.prepare`; returns row counts.

    Built in full when `prepared.keep_rows` (the table is missing, its shape changed, or the
    caller asked for it); otherwise only changed rows are replaced, vanished ones deleted and
    the answers of requests touched since `since` (None: every request) updated. Only a table
    this job file has claimed (`ownership.claim_output`) is ever written."""
    spec = prepared.spec
    table = require_owner(con, spec)
    if prepared.keep_rows:
        _answers(con, spec, "SELECT request_hash FROM wb_current")
        mark_answered(con, spec.name, _SUCCEEDED)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table.catalog)}."
                    f"{quote_ident(table.schema)}")
        _build(con, table, _rows_sql(prepared))
        record_shape(con, spec, prepared.shape)
        export_output(con, spec, table)
        return count_rows(con, table, spec.max_attempts)
    touched = ("SELECT request_hash FROM wb_current" if since is None
               else touched_sql(spec.name, since))
    # rows not known to be answered (wb_current holds only those) are looked up too: an
    # answer may have come for them by another way (another job, an older version)
    # rows shown failed are judged again for this command (attempts are a per-command budget)
    _answers(con, spec, f"SELECT request_hash FROM wb_current UNION ALL {touched} UNION ALL "
                        f"SELECT _request_hash FROM {table.qualified} WHERE _status = 'failed'")
    mark_answered(con, spec.name, _SUCCEEDED)
    keys = [quote_ident(k) for k in spec.unique_key]
    match = " AND ".join(f"t.{k} = c.{k}" for k in keys)

    def steps() -> None:
        if prepared.changed:
            con.execute(f"""DELETE FROM {table.qualified} AS t USING
                (SELECT {', '.join(keys)} FROM wb_src WHERE NOT __wb_same) c WHERE {match}""")
            con.execute(f"INSERT INTO {table.qualified} BY NAME "
                        f"{_rows_sql(prepared, 'NOT s.__wb_same')}")
        present = con.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()[0]
        if present != prepared.rows:   # rows no longer selected
            con.execute(f"""DELETE FROM {table.qualified} AS t WHERE NOT EXISTS
                (SELECT 1 FROM wb_src c WHERE {match})""")
        _update_answers(con, spec, prepared.provider, table)

    _in_transaction(con, steps)
    export_output(con, spec, table)
    return count_rows(con, table, spec.max_attempts)


def update_answers(con: duckdb.DuckDBPyConnection, spec: JobSpec, provider: Provider,
                   since: dt.datetime) -> RowCounts | None:
    """After a collect that did not read the source: update the output rows of the requests
    touched since `since`. None when the table is not there: the caller must prepare the job
    and build it."""
    table = require_owner(con, spec)
    if existing_kind(con, table) != "table":
        return None
    # A collect moves a request's answer state only by writing its results row: the
    # requests of the batches it polled but recorded nothing for (lost, foreign) show as
    # before. So the results written since `since` are the touched requests here, without
    # `touched_sql`'s batch members (every collected request twice: ~0.2 CPU s per million).
    with collect_tuning(con):   # joins of the collected requests: see tuning.py
        _answers(con, spec, f"{answered_since_sql(since)} UNION ALL SELECT _request_hash "
                            f"FROM {table.qualified} WHERE _status = 'failed'")
        mark_answered(con, spec.name, _SUCCEEDED)
        _in_transaction(con, lambda: _update_answers(con, spec, provider, table))
        export_output(con, spec, table)
        return count_rows(con, table, spec.max_attempts)


def export_output(con: duckdb.DuckDBPyConnection, spec: JobSpec, table: OutputTable) -> None:
    """Write the output table to the job's `export` Parquet file, if it has one: into a
    temporary file beside it, then renamed over it (atomic), so a reader never sees half a
    file. The target was checked when the job was read (`spec._export`: in the job's scope,
    a `.parquet` name, replacing only a Parquet file); the last check is repeated here."""
    if not spec.export:
        return
    target = Path(spec.export)
    if target.exists() and not target.is_symlink():
        with target.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise JobFileError(f"export: {target} is no longer a Parquet file; it was "
                                   "not replaced", spec.location_of("export"))
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    keys = ", ".join(quote_ident(k) for k in spec.unique_key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM {table.qualified} ORDER BY {keys}) TO "
                    f"{sql_literal(str(partial))} (FORMAT parquet, COMPRESSION zstd)")
        os.replace(partial, target)
    except (OSError, duckdb.IOException, duckdb.PermissionException) as e:
        raise JobFileError(f"export: cannot write {target} ({e}); the output table itself "
                           "is up to date", spec.location_of("export")) from None
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass   # its folder could not be made: there is nothing to remove


def drop_output(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> None:
    """Drop the job's output table (`--full-refresh`); only a table the job file owns."""
    con.execute(f"DROP TABLE IF EXISTS {require_owner(con, spec).qualified}")
