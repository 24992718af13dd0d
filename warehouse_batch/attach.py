"""A job's other DuckDB files (`attach={'crm': 'crm.duckdb'}`), attached READ_ONLY while its
SELECT is bound and run, and detached again at once.

The aliases and files were checked when the job file was read (`spec._attachments`: plain
names, not reserved, existing DuckDB files in the job's scope). Here the connection decides
what only it can know: an alias that is already a catalog (the database file's own name), a
file that is the database file itself, a file holding views or macros (their SQL would run
unchecked). A file locked by a writing process is reported as such. Attached files are never
written: DuckDB refuses any write to a READ_ONLY attachment, and the output table can never
name one (`spec._attachments`, `ownership.resolve_output`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import duckdb

from .errors import JobFileError, StateError
from .identity import sql_literal
from .spec import JobSpec
from .sqlutil import quote_ident


@contextmanager
def attached(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> Iterator[None]:
    """While inside, each of the job's `attach` files is attached READ_ONLY under its
    alias; detached on the way out (so no lock on it outlives the SELECT)."""
    if not spec.attach:
        yield
        return
    loc = spec.location_of("attach")
    present = dict(con.execute("SELECT lower(database_name), path FROM duckdb_databases()")
                   .fetchall())
    done: list[str] = []
    try:
        for alias, file in spec.attach.items():
            if alias.lower() in present:
                raise JobFileError(f"attach: {alias!r} is already a catalog here (the "
                                   "database file's own name, or DuckDB's)", loc,
                                   hint="pick another name for the attached file")
            if any(p and _same(p, file) for p in present.values()):
                raise JobFileError(f"attach {alias!r}: {file} is the database file itself; "
                                   "read its tables directly", loc)
            try:
                con.execute(f"ATTACH {sql_literal(file)} AS {quote_ident(alias)} (READ_ONLY)")
            except duckdb.Error as e:
                if "lock" in str(e).lower():
                    raise StateError(f"attach {alias!r}: {file} is open for writing in "
                                     "another process; try again when it has finished") from None
                raise JobFileError(f"attach {alias!r}: cannot attach {file}: "
                                   f"{str(e).splitlines()[0]}", loc) from None
            done.append(alias)
            _refuse_code(con, alias, file, loc)
        yield
    finally:
        for alias in reversed(done):
            con.execute(f"DETACH {quote_ident(alias)}")


def _refuse_code(con: duckdb.DuckDBPyConnection, alias: str, file: str, loc) -> None:
    """Refuse an attached file that holds views or macros. The file is named by the job
    (it may come with the job in a pull request), and a view or macro in it runs SQL that
    no check has seen: it could read any file (`read_text('/etc/passwd')`) or call any
    function. Its tables are plain data, which is what attach is for."""
    found = con.execute("""
        SELECT 'view ' || view_name FROM duckdb_views()
        WHERE database_name = ? AND NOT internal
        UNION ALL
        SELECT replace(function_type, '_', ' ') || ' ' || function_name
        FROM duckdb_functions()
        WHERE database_name = ? AND NOT internal AND function_type IN ('macro', 'table_macro')
        ORDER BY 1 LIMIT 5""", [alias, alias]).fetchall()
    if found:
        raise JobFileError(
            f"attach {alias!r}: {file} holds {', '.join(f for (f,) in found)}; an attached "
            "file is read for its tables only (the SQL of a view or macro in it is not "
            "checked like the job's)", loc,
            hint="copy what the view computes into a table of that file, or define the view "
                 "in the database file itself (the operator's own)")


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
