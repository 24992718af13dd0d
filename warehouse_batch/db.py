"""Opening the user's DuckDB file: offline-safe, readable by older DuckDB, short-lived."""
from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from pathlib import Path

import duckdb

from .errors import MemoryLimitError, StateError
from .identity import sql_literal
from .sqlutil import quote_ident
from .state import ensure_schema, schema_current

DEFAULT_DB = "warehouse.duckdb"
DB_ENV = "WAREHOUSE_BATCH_DB"
MEMORY_ENV = "WAREHOUSE_BATCH_MEMORY_LIMIT"
TEMP_ENV = "WAREHOUSE_BATCH_TEMP_DIR"
# DuckDB's own default is 80% of RAM; a nightly job shares its machine. Work beyond this spills
# to the temp directory. The whole process stays near this plus ~150 MB of Python and SDKs.
DEFAULT_MEMORY_LIMIT = "512MB"
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def default_db_path() -> str:
    """`--db` default: $WAREHOUSE_BATCH_DB, else ./warehouse.duckdb."""
    return os.environ.get(DB_ENV) or DEFAULT_DB


def check_memory_limit(value: str) -> str:
    """A DuckDB memory size such as `512MB` or `2GiB`; raises ValueError otherwise."""
    if not _SIZE.match(value):
        raise ValueError(f"{value!r} is not a memory size (examples: 512MB, 2GB, 1GiB)")
    return value.strip()


def memory_settings(path: str, memory_limit: str | None = None) -> dict[str, str]:
    """DuckDB's memory_limit and temp_directory for a command on `path`: the limit from the
    argument, else $WAREHOUSE_BATCH_MEMORY_LIMIT, else 512MB; spills go to
    $WAREHOUSE_BATCH_TEMP_DIR, else `<path>.tmp` beside the file (DuckDB's own convention),
    else (in-memory) the system temp folder."""
    limit = check_memory_limit(memory_limit or os.environ.get(MEMORY_ENV) or
                               DEFAULT_MEMORY_LIMIT)
    temp = os.environ.get(TEMP_ENV) or (
        path + ".tmp" if path != ":memory:" else os.path.join(tempfile.gettempdir(),
                                                              "warehouse-batch.tmp"))
    return {"memory_limit": limit, "temp_directory": temp}


def connect(path: str, *, migrate: bool = True, lock_retries: int = 3,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open `path` read-write with extension auto-install off, and bring the state schema up.

    The connection is an in-memory DuckDB with `path` attached under the name DuckDB itself
    would give it (the file's stem, so `shop.main.reviews` keeps working) and made current:
    `read_only` can then re-attach the file read-only while a job's SELECT runs.
    Auto-install is off so a query that needs a network-only extension (httpfs, …) fails at
    once with DuckDB's "requires the extension … to be loaded" instead of hanging on a download.
    New files are written in the v1.4 storage format so DuckDB 1.4+ tools can open them.
    """
    config: dict = {"autoinstall_known_extensions": False, **memory_settings(path, memory_limit)}
    if path == ":memory:":
        con = duckdb.connect(path, config=config)
    else:
        con = duckdb.connect(":memory:", config=config)
        try:
            _attach(con, path, attach_alias(path), read_only=False, lock_retries=lock_retries)
        except BaseException:
            con.close()
            raise
    con.execute("SET enable_progress_bar = false")   # never draw on a user's terminal
    if migrate:
        ensure_schema(con)
    return con


def attach_alias(path: str) -> str:
    """The catalog name DuckDB gives a file it opens: its stem."""
    stem = Path(path).name.split(".")[0] or "db"
    # names DuckDB keeps for itself cannot be taken; such a file gets a suffixed name
    return f"{stem}_db" if stem.lower() in ("memory", "system", "temp") else stem


def _attach(con: duckdb.DuckDBPyConnection, path: str, alias: str, *, read_only: bool,
            lock_retries: int = 3) -> None:
    options = ["READ_ONLY"] if read_only else []
    if not read_only and not os.path.exists(path) and duckdb.__version__ >= "1.2":
        options.append("STORAGE_VERSION 'v1.4.0'")
    clause = f" ({', '.join(options)})" if options else ""
    sql = f"ATTACH {sql_literal(path)} AS {quote_ident(alias)}{clause}"
    for attempt in range(lock_retries + 1):
        try:
            con.execute(sql)
            break
        except duckdb.IOException as e:
            if "lock" in str(e).lower() and attempt < lock_retries:
                time.sleep(0.2 * 2 ** attempt)   # another writer (dbt?) may be finishing
                continue
            if "lock" in str(e).lower():
                raise StateError(
                    f"{path} is open in another process; DuckDB allows one writer at a time. "
                    "Run warehouse-batch after dbt (or the other writer) has finished.") from None
            raise StateError(f"cannot open {path}: {e}") from None
        except duckdb.Error as e:
            raise StateError(f"cannot open {path}: {e}") from None
    con.execute(f"USE {quote_ident(alias)}")


@contextmanager
def read_only(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While inside, the user's database is attached read-only: a statement that slipped past
    the parse-time check still cannot change it (DuckDB refuses any write). Temp tables
    (`wb_src`) live in the connection's temp catalog and survive the re-attach.

    Files are confined by `sqlguard` at parse time. DuckDB's own `allowed_directories` (with
    `enable_external_access=false`) is not used as a further layer: on DuckDB 2.0.1 it checks a
    relative path before `file_search_path` applies (so `read_csv('reviews.csv')` next to the
    job fails), lets `dir/../file` through, and cannot be undone on the instance."""
    alias, path = con.execute("SELECT database_name, path FROM duckdb_databases() "
                              "WHERE database_name = current_database()").fetchone()
    if not path:   # an in-memory database cannot be re-attached
        yield
        return
    _reattach(con, alias, path, read_only=True)
    try:
        yield
    finally:
        _reattach(con, alias, path, read_only=False)


def _reattach(con: duckdb.DuckDBPyConnection, alias: str, path: str, *, read_only: bool) -> None:
    con.execute("USE memory")
    con.execute(f"DETACH {quote_ident(alias)}")
    _attach(con, path, alias, read_only=read_only)


def connect_stand_in(path: str, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An empty in-memory database under the catalog name `path` would get, with the state
    schema: what a command that writes nothing (`plan`) reads when the file does not exist,
    so that a mistyped `--db` leaves no new file behind."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             **memory_settings(":memory:", memory_limit)})
    alias = quote_ident(attach_alias(path))
    con.execute(f"ATTACH ':memory:' AS {alias}")
    con.execute(f"USE {alias}")
    ensure_schema(con)
    return con


@contextmanager
def session(path: str, *, create: bool = True,
            memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection held only for one phase of work, then closed (releasing the file lock).
    With `create=False` a file that does not exist is not created (see `connect_stand_in`)."""
    missing = path != ":memory:" and not os.path.exists(path)
    with _memory_guard(path, memory_limit):
        con = (connect_stand_in(path, memory_limit) if missing and not create
               else connect(path, memory_limit=memory_limit))
        try:
            yield con
        finally:
            con.close()


@contextmanager
def _memory_guard(path: str, memory_limit: str | None) -> Iterator[None]:
    """Turn DuckDB running out of its memory limit into a `MemoryLimitError` (exit 2, naming
    the limit and how to raise it) instead of a traceback."""
    try:
        yield
    except duckdb.Error as e:
        if _out_of_memory(e):
            raise _memory_error(path, memory_limit) from e
        raise


def _out_of_memory(error: BaseException | None) -> bool:
    """Whether DuckDB ran out of its memory limit: an OutOfMemoryException, or one that ended
    a transaction (a failed commit "could not allocate block", then a failed rollback)."""
    while error is not None:
        if isinstance(error, duckdb.OutOfMemoryException) or (
                isinstance(error, duckdb.Error) and "could not allocate block" in str(error)):
            return True
        error = error.__context__
    return False


def _memory_error(path: str, memory_limit: str | None) -> MemoryLimitError:
    settings = memory_settings(path, memory_limit)
    return MemoryLimitError(
        f"DuckDB ran out of memory within the limit of {settings['memory_limit']} (what it "
        f"could not spill to {settings['temp_directory']}); the step rolled back, nothing "
        "recorded was lost",
        hint=f"raise the limit with --memory-limit (or the job's memory_limit, or "
             f"${MEMORY_ENV}) and run the same command again")


@contextmanager
def reading(path: str, memory_limit: str | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection for a poll (no migration, no write, shared with other readers);
    None when the file is missing or its state schema needs a migration (the caller then
    takes the read-write path)."""
    if path == ":memory:" or not os.path.exists(path):
        yield None
        return
    with _memory_guard(path, memory_limit):
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                                 **memory_settings(path, memory_limit)})
        try:
            _attach(con, path, attach_alias(path), read_only=True)
            yield con if schema_current(con) else None
        finally:
            con.close()
