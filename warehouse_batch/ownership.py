"""Which job file owns which output table, and the rule that a job writes only its own.

warehouse-batch creates the table a job file names in `name`, replaces it after every submit
and collect, and drops it on `--full-refresh`. A job file is code that travels (pull
requests, shared repositories), so `name` must not be able to reach anything else: the
state schema, a table the SELECT reads, another job's output, a table or view the user made.
Each output table therefore belongs to exactly one job file (its resolved path), recorded in
`warehouse_batch.outputs` (migration 005). At `plan` — before anything is sent or written —
a job is refused when its name

* is in a reserved catalog or schema (checked in `spec.py`, in any letter case), or names a
  catalog other than the database file's own, or one that is not attached;
* is a table the SELECT reads (directly, through a view, or through `query_table`);
* is an existing view, or an existing table it does not own;
* is owned by another job file (the message says how to hand it over).

A run claims the name (records the row) right before its first write; the table is only
ever replaced or dropped through `require_owner`. Names are compared case-insensitively and
without the catalog part, as DuckDB resolves them.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from .errors import JobFileError
from .identity import sql_literal
from .spec import JobSpec
from .sqlutil import quote_ident, split_qualified
from .state import SCHEMA, now_utc

_VIEW_DEPTH = 8   # views over views followed this deep when listing what a SELECT reads


@dataclass(frozen=True)
class OutputTable:
    """Where a job's output table lives: always in the database file's own catalog."""

    catalog: str   # the file's catalog, as DuckDB names it (e.g. 'w' for w.duckdb)
    schema: str    # as written in the job file, else 'main'
    table: str     # as written in the job file

    @property
    def key(self) -> tuple[str, str]:
        """The identity: (schema, table) in lower case."""
        return self.schema.lower(), self.table.lower()

    @property
    def qualified(self) -> str:
        """SQL naming exactly this table, whatever DuckDB's search path says."""
        return ".".join(quote_ident(p) for p in (self.catalog, self.schema, self.table))

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class Owner:
    """A row of `warehouse_batch.outputs`."""

    job_file: str
    job_name: str
    claimed_at: dt.datetime
    origin: str


def job_file(spec: JobSpec) -> str:
    """The identity of a job file: its absolute path, symlinks resolved."""
    return str(Path(spec.path).resolve())


def resolve_output(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> OutputTable:
    """Where `spec.name` would be written; refuses a catalog that is not the file's own."""
    parts = split_qualified(spec.name)
    own = con.execute("SELECT current_database()").fetchone()[0]
    catalogs = {n.lower() for (n,) in con.execute(
        "SELECT database_name FROM duckdb_databases()").fetchall()}
    if len(parts) == 3:
        if parts[0].lower() != own.lower():
            _refuse(spec, _foreign_catalog(parts[0], own, catalogs))
        return OutputTable(own, parts[1], parts[2])
    if len(parts) == 2:
        first = parts[0].lower()
        schemas = {s.lower() for (s,) in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ?",
            [own]).fetchall()}
        if first in schemas:
            return OutputTable(own, parts[0], parts[1])
        if first == own.lower():   # DuckDB reads `w.t` as catalog w, schema main
            return OutputTable(own, "main", parts[1])
        if first in catalogs:
            _refuse(spec, _foreign_catalog(parts[0], own, catalogs))
        return OutputTable(own, parts[0], parts[1])   # a new schema, created on first write
    return OutputTable(own, "main", parts[0])


def _foreign_catalog(name: str, own: str, catalogs: set[str]) -> str:
    what = (f"catalog {name!r} is not this database file" if name.lower() in catalogs
            else f"no catalog {name!r} is attached")
    return (f"{what}; an output table lives in the database file itself (catalog {own!r}), "
            f"so write name='table' or name='schema.table'")


def check_output(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> OutputTable:
    """Refuse a `name` this job may not write (see the module docstring); else where it goes.

    Writes nothing; `plan` calls it, and every command that writes, before anything else.
    """
    out = resolve_output(con, spec)
    read = _read_by_select(con, spec, out)
    if read:
        _refuse(spec, f"the SELECT reads {read}, so the output table would replace its own "
                      "source", hint="give the output table a name of its own")
    owner = _owner(con, out)
    mine = job_file(spec)
    if owner is not None and not _same_file(owner.job_file, mine):
        _refuse(spec, f"the output table {out} belongs to another job file, {owner.job_file} "
                      f"(claimed {owner.claimed_at:%Y-%m-%d %H:%M} UTC)",
                hint="pick another name; or, to hand the table to this job file, run: "
                     f"UPDATE {SCHEMA}.outputs SET job_file = {sql_literal(mine)} "
                     f"WHERE table_schema = {sql_literal(out.key[0])} "
                     f"AND table_name = {sql_literal(out.key[1])}")
    kind = existing_kind(con, out)
    if kind == "view":
        _refuse(spec, f"{out} is a view; the output must be a table of the job's own",
                hint="give the output table another name")
    if kind == "table" and owner is None:
        _refuse(spec, f"a table {out} already exists and was not created by this job; "
                      "warehouse-batch replaces only a table it created",
                hint="give the output table another name; if the table is an old output of "
                     f"this job, drop it (DROP TABLE {out}) and run again: answers are "
                     "cached, nothing is paid twice")
    if kind not in (None, "table"):
        _refuse(spec, f"{out} is a {kind}, not a table warehouse-batch can write",
                hint="give the output table another name")
    return out


def claim_output(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> OutputTable:
    """Check the name, then record that this job file owns it (idempotent). Call it right
    before the first write of a command, after every other check passed."""
    out = check_output(con, spec)
    owner = _owner(con, out)
    mine = job_file(spec)
    if owner is not None and owner.job_file == mine and owner.origin == "claimed" \
            and owner.job_name == spec.name:
        return out
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {SCHEMA}.outputs WHERE table_schema = ? AND table_name = ?",
                    list(out.key))
        con.execute(f"INSERT INTO {SCHEMA}.outputs (table_schema, table_name, job_file, "
                    "job_name, claimed_at, origin) VALUES (?, ?, ?, ?, ?, 'claimed')",
                    [*out.key, mine, spec.name,
                     owner.claimed_at if owner is not None else now_utc()])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return out


def require_owner(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> OutputTable:
    """The output table, if this job file has claimed it and may write it now; else refuse.
    Every statement that creates, replaces or drops an output table goes through here."""
    out = check_output(con, spec)
    owner = _owner(con, out)
    if owner is None or not _same_file(owner.job_file, job_file(spec)):
        _refuse(spec, f"the output table {out} has not been claimed by this job file",
                hint="run `warehouse-batch run` (or submit/collect): it claims the name")
    return out


def refuse_foreign(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> None:
    """Refuse a command (e.g. `cancel`) on a name another job file owns: the batches
    recorded under that name are that job's."""
    out = resolve_output(con, spec)
    owner = _owner(con, out)
    if owner is not None and not _same_file(owner.job_file, job_file(spec)):
        _refuse(spec, f"the output table {out} belongs to another job file, "
                      f"{owner.job_file}; its batches are that job's",
                hint="run the command with that job file")


def stored_shape(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> str | None:
    """The column shape recorded when the job's output table was last built in full
    (`source.output_shape`); None when the table does not exist or has none recorded."""
    out = resolve_output(con, spec)
    if existing_kind(con, out) != "table":
        return None
    row = con.execute(f"SELECT shape FROM {SCHEMA}.outputs WHERE table_schema = ? "
                      "AND table_name = ?", list(out.key)).fetchone()
    return row[0] if row else None


def record_shape(con: duckdb.DuckDBPyConnection, spec: JobSpec, shape: str | None) -> None:
    """Record the shape of the output table just built in full (None: build it in full next
    time)."""
    out = resolve_output(con, spec)
    con.execute(f"UPDATE {SCHEMA}.outputs SET shape = ? WHERE table_schema = ? "
                "AND table_name = ?", [shape, *out.key])


def stored_job_hash(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> str | None:
    """`JobSpec.fingerprint()` as recorded at the job's last pass that read the source."""
    out = resolve_output(con, spec)
    row = con.execute(f"SELECT job_hash FROM {SCHEMA}.outputs WHERE table_schema = ? "
                      "AND table_name = ?", list(out.key)).fetchone()
    return row[0] if row else None


def record_job_hash(con: duckdb.DuckDBPyConnection, spec: JobSpec, value: str) -> None:
    out = resolve_output(con, spec)
    con.execute(f"UPDATE {SCHEMA}.outputs SET job_hash = ? WHERE table_schema = ? "
                "AND table_name = ? AND job_hash IS DISTINCT FROM ?", [value, *out.key, value])


# -- what the SELECT reads ----------------------------------------------------------------------

def tables_read(con: duckdb.DuckDBPyConnection, sql: str) -> set[tuple[str, str, str]]:
    """(catalog, schema, table) of every table reference in `sql`, lower case, '' where a
    part is not written. CTE names are not tables; `query_table('t')` names a table."""
    refs = _parsed_refs(sql)
    return set(refs) if refs is not None else _tables_by_duckdb(con, sql)


@functools.lru_cache(maxsize=64)
def _parsed_refs(sql: str) -> frozenset[tuple[str, str, str]] | None:
    """`tables_read` by sqlglot, None when sqlglot cannot read `sql`. Cached: one command
    asks about the same SELECT several times (each check of the output table), and parsing
    it is most of what those checks cost."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except (ParseError, TokenError, RecursionError):
        return None
    refs: set[tuple[str, str, str]] = set()
    for tree in trees:
        if isinstance(tree, exp.Create):   # a view's definition: what it reads
            tree = tree.expression
            if tree is None:
                continue
        ctes = {c.alias.lower() for c in tree.find_all(exp.CTE) if c.alias}
        for t in tree.find_all(exp.Table):
            if not isinstance(t.this, exp.Identifier):
                continue   # a table function: read_csv(...), range(...)
            ref = (t.catalog.lower(), t.db.lower(), t.name.lower())
            if ref[:2] == ("", "") and ref[2] in ctes:
                continue
            refs.add(ref)
        for f in tree.find_all(exp.Anonymous):
            if f.name.lower() in ("query_table", "query_table_by_name"):
                for lit in f.find_all(exp.Literal):
                    if lit.is_string:
                        refs.add(_split_ref(lit.this))
    return frozenset(refs)


def _tables_by_duckdb(con: duckdb.DuckDBPyConnection, sql: str) -> set[tuple[str, str, str]]:
    """DuckDB's own parser, for SQL that sqlglot cannot read."""
    try:
        names = con.get_table_names(sql, qualified=True)
    except duckdb.Error:
        return set()   # DuckDB cannot read it either: binding the SELECT reports why
    return {_split_ref(n) for n in names}


def _split_ref(name: str) -> tuple[str, str, str]:
    parts = [p.strip().strip('"').lower() for p in name.split(".")][-3:]
    return tuple([""] * (3 - len(parts)) + parts)   # type: ignore[return-value]


def _read_by_select(con: duckdb.DuckDBPyConnection, spec: JobSpec,
                    out: OutputTable) -> str | None:
    """The name under which the SELECT (or a view it reads) reads the output table, if so."""
    own = out.catalog.lower()
    pending = [(ref, "main") for ref in tables_read(con, spec.sql)]
    seen: set[tuple[str, str, str]] = set()
    for _ in range(_VIEW_DEPTH):
        following = []
        for ref, default_schema in pending:
            if ref in seen:
                continue
            seen.add(ref)
            if _matches(ref, out, own, default_schema):
                return ".".join(p for p in ref if p)
            for view_schema, view_sql in _views(con, ref, own, default_schema):
                following += [(r, view_schema) for r in tables_read(con, view_sql)]
        pending = following
    return None


def _matches(ref: tuple[str, str, str], out: OutputTable, own: str, default_schema: str) -> bool:
    catalog, schema, table = ref
    if table != out.key[1] or catalog not in ("", own):
        return False
    if schema:
        return schema == out.key[0] or (not catalog and schema == own and out.key[0] == "main")
    return out.key[0] in ("main", default_schema)


def _views(con: duckdb.DuckDBPyConnection, ref: tuple[str, str, str], own: str,
           default_schema: str) -> list[tuple[str, str]]:
    """(schema, SQL) of the views in the file that `ref` may name."""
    catalog, schema, table = ref
    if catalog not in ("", own):
        return []
    if schema:
        schemas = {schema} | ({"main"} if not catalog and schema == own else set())
    else:
        schemas = {"main", default_schema}
    rows = con.execute("""SELECT lower(schema_name), sql FROM duckdb_views()
        WHERE database_name = current_database() AND NOT temporary AND NOT internal
          AND lower(view_name) = ?""", [table]).fetchall()
    return [(s, sql) for s, sql in rows if s in schemas]


# -- the state ----------------------------------------------------------------------------------

def _owner(con: duckdb.DuckDBPyConnection, out: OutputTable) -> Owner | None:
    row = con.execute(f"""SELECT job_file, job_name, claimed_at, origin FROM {SCHEMA}.outputs
        WHERE table_schema = ? AND table_name = ? ORDER BY claimed_at DESC LIMIT 1""",
                      list(out.key)).fetchone()
    return Owner(*row) if row else None


def existing_kind(con: duckdb.DuckDBPyConnection, out: OutputTable) -> str | None:
    """'table', 'view', or None: what the file holds under the output's name."""
    row = con.execute("""
        SELECT 'table' FROM duckdb_tables()
        WHERE database_name = ? AND NOT temporary
          AND lower(schema_name) = ? AND lower(table_name) = ?
        UNION ALL
        SELECT 'view' FROM duckdb_views()
        WHERE database_name = ? AND NOT temporary
          AND lower(schema_name) = ? AND lower(view_name) = ?""",
                      [out.catalog, *out.key, out.catalog, *out.key]).fetchone()
    return row[0] if row else None


def _same_file(recorded: str, mine: str) -> bool:
    """Whether an ownership row names this job file. A row backfilled at upgrade may hold
    the path as it was typed (relative): it matches when it leads to this file from the
    current folder, as it did for the run that recorded it. (A looser match, e.g. on the
    file name, would hand the table to any file of that name.)"""
    return str((Path.cwd() / Path(recorded)).resolve()) == mine


def _refuse(spec: JobSpec, message: str, hint: str | None = None) -> None:
    raise JobFileError(f"name={spec.name!r}: {message}", spec.location_of("name"), hint=hint)
