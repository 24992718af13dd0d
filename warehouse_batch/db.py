"""Opening the user's DuckDB file: offline-safe, readable by older DuckDB, short-lived.

A command works on a `Target`: the warehouse file, or a caller's own connection (dbt-duckdb's
session), optionally with the state in a DuckDB file of its own; a file another process holds
is waited for up to the lock timeout, then the command stops with `BusyError` (exit 75)."""
from __future__ import annotations

import os
import re
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pathlib import Path

import duckdb

from .clock import SystemClock
from .errors import (BusyError, MemoryLimitError, MissingDatabaseError, StateError,
                     WarehouseBatchError)
from .identity import sql_literal
from .settings import env_setting
from .sqlutil import quote_ident
from .state import SCHEMA, ensure_schema, schema_current

DEFAULT_DB = "warehouse.duckdb"
DB_ENV = "WAREHOUSE_BATCH_DB"
MEMORY_ENV = "WAREHOUSE_BATCH_MEMORY_LIMIT"
TEMP_ENV = "WAREHOUSE_BATCH_TEMP_DIR"
STATE_DB_ENV = "WAREHOUSE_BATCH_STATE_DB"
LOCK_TIMEOUT_ENV = "WAREHOUSE_BATCH_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 10.0   # seconds to wait for a file another process holds
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
    limit = (check_memory_limit(memory_limit) if memory_limit else
             env_setting(MEMORY_ENV, check_memory_limit, DEFAULT_MEMORY_LIMIT))
    temp = os.environ.get(TEMP_ENV) or (
        path + ".tmp" if path != ":memory:" else os.path.join(tempfile.gettempdir(),
                                                              "warehouse-batch.tmp"))
    return {"memory_limit": limit, "temp_directory": temp}


@dataclass(frozen=True)
class Target:
    """Where a command's data lives, and how it may wait for it.

    * `db`: the warehouse file (sources and the output table; the state too unless
      `state_db` is given).
    * `connection`: a DuckDB connection owned by the caller (e.g. dbt-duckdb's session).
      Every command then works on a cursor of it (its own transactions, its own temp tables;
      it sees what the caller has committed) and never opens, closes or re-attaches the
      warehouse itself; `db` is then only a name for messages.
    * `state_db`: a separate DuckDB file for the `warehouse_batch` state, attached under that
      catalog name when needed (`state.state_location`).
    * `lock_timeout` / `clock`: how long to wait for a file another process holds, then
      `BusyError` (exit 75); the wait uses the injected clock, so tests never sleep.
    """

    db: str
    connection: duckdb.DuckDBPyConnection | None = None
    state_db: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    clock: Any = None

    @property
    def shared(self) -> bool:
        return self.connection is not None


def as_target(where: "Target | str") -> Target:
    """A `Target` from a plain path (the old signature of `session` and `reading`)."""
    return where if isinstance(where, Target) else Target(db=where)


def default_lock_timeout() -> float:
    """`--lock-timeout` default: $WAREHOUSE_BATCH_LOCK_TIMEOUT, else 10 seconds."""
    return env_setting(LOCK_TIMEOUT_ENV, check_lock_timeout, DEFAULT_LOCK_TIMEOUT)


def check_lock_timeout(value: Any) -> float:
    """A lock timeout in seconds: a finite number >= 0; raises ValueError otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not (seconds >= 0 and seconds != float("inf")):
        raise ValueError(f"{value!r} is not a finite number of seconds >= 0")
    return seconds


def default_state_db() -> str | None:
    """`--state-db` default: $WAREHOUSE_BATCH_STATE_DB, else none (state in the warehouse)."""
    return os.environ.get(STATE_DB_ENV) or None


def connect(path: "str | Target", *, migrate: bool = True,
            memory_limit: str | None = None, warehouse: str = "write",
            state_stand_in: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the target read-write with extension auto-install off, and bring the state schema
    up.

    The connection is an in-memory DuckDB with the warehouse attached under the name DuckDB
    itself would give it (the file's stem, so `shop.main.reviews` keeps working) and made
    current: `read_only` can then re-attach the file read-only while a job's SELECT runs.
    With a state database, that file is attached as `warehouse_batch`, and the warehouse
    `warehouse` = "write", "read" (read-only: plan, status) or "none" (a poll: not opened).
    Auto-install is off so a query that needs a network-only extension (httpfs, …) fails at
    once with DuckDB's "requires the extension … to be loaded" instead of hanging on a download.
    New files are written in the v1.4 storage format so DuckDB 1.4+ tools can open them.
    With a caller's connection (`Target.connection`) this returns a cursor of it.
    """
    target = as_target(path)
    if target.shared:
        return _cursor(target, migrate=migrate)
    if not target.state_db:
        warehouse = "write"   # the state lives in the warehouse: it is always opened
    config: dict = {"autoinstall_known_extensions": False,
                    **memory_settings(target.db, memory_limit)}
    con = duckdb.connect(":memory:", config=config)
    if target.db != ":memory:" or target.state_db:
        try:
            if target.state_db and state_stand_in:   # plan creates no state file
                con.execute(f"ATTACH ':memory:' AS {SCHEMA}")
            elif target.state_db:
                _attach(con, target.state_db, SCHEMA, read_only=False, target=target,
                        use=False)
            if target.db == ":memory:":
                con.execute("ATTACH ':memory:' AS warehouse")
                con.execute("USE warehouse")
            elif warehouse != "none":
                _attach(con, target.db, attach_alias(target.db),
                        read_only=warehouse == "read", target=target)
            _refuse_shadowing(con, target)
        except BaseException:
            con.close()
            raise
    con.execute("SET enable_progress_bar = false")   # never draw on a user's terminal
    _TARGETS[id(con)] = target
    try:
        if migrate:
            ensure_schema(con)
    except BaseException:
        _TARGETS.pop(id(con), None)
        con.close()
        raise
    return con


# cursors this module made on a caller's connection: `read_only` must not re-attach their
# database (it is the caller's), and `materialise_read_only` isolates the SELECT instead
_SHARED: set[int] = set()
# the target each open connection was made for: `read_only` re-attaches with its lock wait
_TARGETS: dict[int, Target] = {}
# Work on a caller's connection is serialised within the process: dbt-duckdb with threads > 1
# runs two Python models at once on cursors of one connection, and two passes writing the
# state at the same moment are a DuckDB write-write conflict (not a lock another process
# holds, which `_attach` waits for). Re-entrant: a session may read inside another.
_SHARED_WORK = threading.RLock()


def _one_at_a_time(target: Target) -> Any:
    """Hold `_SHARED_WORK` while working on a caller's connection; nothing otherwise."""
    return _SHARED_WORK if target.shared else nullcontext()


def _cursor(target: Target, *, migrate: bool) -> duckdb.DuckDBPyConnection:
    """A cursor of the caller's connection: same database instance, own transactions and temp
    tables. With a state database, that file is attached to the caller's instance (once)."""
    con = target.connection.cursor()   # type: ignore[union-attr]
    try:
        if target.state_db:
            attached = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?",
                                   [SCHEMA]).fetchone()
            if attached is None:
                _attach(con, target.state_db, SCHEMA, read_only=False, target=target, use=False)
            _refuse_shadowing(con, target)
        con.execute("SET enable_progress_bar = false")
        if migrate:
            ensure_schema(con)
    except BaseException:
        con.close()
        raise
    _SHARED.add(id(con))
    return con


def _refuse_shadowing(con: duckdb.DuckDBPyConnection, target: Target) -> None:
    """With a state database, a `warehouse_batch` schema left in the warehouse (state from
    before the state database was used) would make every `warehouse_batch.<table>` ambiguous."""
    if not target.state_db:
        return
    found = con.execute("SELECT count(*) FROM duckdb_schemas() WHERE database_name = "
                        "current_database() AND schema_name = ?", [SCHEMA]).fetchone()[0]
    if found:
        raise StateError(
            f"{target.db} still holds the state schema {SCHEMA}, and a state database "
            f"({target.state_db}) is given: the two would be ambiguous. Keep the state in the "
            f"warehouse (no --state-db), or move it: EXPORT DATABASE it, or DROP SCHEMA "
            f"{SCHEMA} CASCADE in the warehouse once the state database holds what you need")


def attach_alias(path: str) -> str:
    """The catalog name DuckDB gives a file it opens: its stem."""
    stem = Path(path).name.split(".")[0] or "db"
    # names DuckDB keeps for itself cannot be taken; such a file gets a suffixed name
    return f"{stem}_db" if stem.lower() in ("memory", "system", "temp", SCHEMA) else stem


_HOLDER = re.compile(r"Conflicting lock is held in (\S+) \(PID (\d+)\)")


def _is_lock_error(error: BaseException) -> bool:
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


def _holder(error: BaseException) -> str | None:
    """The kind of process holding the lock, as DuckDB reports it (program and PID)."""
    m = _HOLDER.search(str(error))
    return f"{Path(m.group(1)).name} (PID {m.group(2)})" if m else None


def _attach(con: duckdb.DuckDBPyConnection, path: str, alias: str, *, read_only: bool,
            target: Target | None = None, use: bool = True) -> None:
    """Attach `path`, waiting up to the target's lock timeout while another process holds it
    (polling with short, growing sleeps on the target's clock); then `BusyError`."""
    target = target or Target(db=path)
    clock = target.clock or SystemClock()
    options = ["READ_ONLY"] if read_only else []
    if not read_only and not os.path.exists(path) and duckdb.__version__ >= "1.2":
        options.append("STORAGE_VERSION 'v1.4.0'")
    clause = f" ({', '.join(options)})" if options else ""
    sql = f"ATTACH {sql_literal(path)} AS {quote_ident(alias)}{clause}"
    started, delay = clock.now(), 0.05
    while True:
        try:
            con.execute(sql)
            break
        except duckdb.IOException as e:
            if not _is_lock_error(e):
                raise StateError(f"cannot open {path}: {e}") from None
            waited = clock.now() - started
            if waited >= target.lock_timeout:
                raise BusyError(path, round(target.lock_timeout, 3), _holder(e)) from None
            clock.sleep(min(delay, max(target.lock_timeout - waited, 0.0)))
            delay = min(delay * 2, 1.0)
        except duckdb.Error as e:
            if "different configuration" in str(e) or "already attached" in str(e):
                raise StateError(
                    f"cannot open {path}: this process already has it open (DuckDB: "
                    f"{str(e).splitlines()[0]}); inside the process that holds it (a dbt "
                    "Python model, a notebook), pass that connection: "
                    "api.Options(connection=con)") from None
            raise StateError(f"cannot open {path}: {e}") from None
    if use:
        con.execute(f"USE {quote_ident(alias)}")


@contextmanager
def read_only(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While inside, the user's database is attached read-only: a statement that slipped past
    the parse-time check still cannot change it (DuckDB refuses any write). Temp tables
    (`wb_src`) live in the connection's temp catalog and survive the re-attach.

    On a caller's connection the database is the caller's and is never re-attached: there the
    SELECT is only bound inside (which runs nothing) and run by `materialise_read_only`, in a
    transaction of its own that is rolled back.

    Files are confined by `sqlguard` at parse time. DuckDB's own `allowed_directories` (with
    `enable_external_access=false`) is not used as a further layer: on DuckDB 2.0.1 it checks a
    relative path before `file_search_path` applies (so `read_csv('reviews.csv')` next to the
    job fails), lets `dir/../file` through, and cannot be undone on the instance."""
    if id(con) in _SHARED:
        yield
        return
    alias, path, readonly = con.execute(
        "SELECT database_name, path, readonly FROM duckdb_databases() "
        "WHERE database_name = current_database()").fetchone()
    if not path or readonly:   # in-memory cannot be re-attached; read-only already is
        yield
        return
    target = _TARGETS.get(id(con))
    _reattach(con, alias, path, read_only=True, target=target)
    try:
        yield
    finally:
        _reattach(con, alias, path, read_only=False, target=target)


def materialise_read_only(con: duckdb.DuckDBPyConnection, table: str, select_sql: str) -> None:
    """`CREATE OR REPLACE TEMP TABLE <table> AS <select_sql>`, run inside `read_only`.

    On a caller's connection, the SELECT runs on a second cursor inside a transaction that is
    rolled back afterwards (so a write the parse-time check missed is undone), and its rows
    stream as Arrow batches into the temp table, created first with the SELECT's own column
    types (Arrow would turn an ENUM into VARCHAR, a HUGEINT into DECIMAL)."""
    if id(con) not in _SHARED:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select_sql}")
        return
    reader_con = con.cursor()
    try:
        reader_con.execute("BEGIN TRANSACTION")
        try:
            described = reader_con.execute(f"DESCRIBE {select_sql}").fetchall()
            columns = ", ".join(f"{quote_ident(name)} {kind}" for name, kind, *_ in described)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({columns})")
            reader = reader_con.sql(select_sql).to_arrow_reader()
            con.register("__wb_arrow_rows", reader)
            try:
                con.execute(f"INSERT INTO {table} SELECT * FROM __wb_arrow_rows")
            finally:
                con.unregister("__wb_arrow_rows")
        finally:
            reader_con.execute("ROLLBACK")
    finally:
        reader_con.close()


def _reattach(con: duckdb.DuckDBPyConnection, alias: str, path: str, *, read_only: bool,
              target: Target | None = None) -> None:
    con.execute("USE memory")
    con.execute(f"DETACH {quote_ident(alias)}")
    _attach(con, path, alias, read_only=read_only, target=target)


def connect_stand_in(path: str, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An empty in-memory database under the catalog name `path` would get, with the state
    schema: what `plan` reads when the warehouse is created on purpose (`--create-db`) and
    does not exist yet, so that plan still leaves no new file behind."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             **memory_settings(":memory:", memory_limit)})
    alias = quote_ident(attach_alias(path))
    con.execute(f"ATTACH ':memory:' AS {alias}")
    con.execute(f"USE {alias}")
    ensure_schema(con)
    return con


def require_exists(target: Target, *, create: bool = False,
                   tables: Callable[[], list[str]] = list) -> None:
    """Refuse a warehouse file that does not exist, naming its path, unless the command
    creates it on purpose (`create`: `submit`/`run`, and `plan` which then plans against an
    empty database and creates nothing) and the job reads no table from it (`tables()`: a
    job reading only files can start a new database; one reading tables from a missing file
    has a mistyped --db). A state database is created when missing: it is warehouse-batch's."""
    if target.shared or target.db == ":memory:" or os.path.exists(target.db):
        return
    named = tables() if create else []
    if create and not named:
        return
    why = f" and the job reads {', '.join(named[:3])} from it" if named else ""
    raise MissingDatabaseError(
        f"the database {os.path.abspath(target.db)} does not exist{why}",
        hint="check --db (or $WAREHOUSE_BATCH_DB); to start a new, empty database on purpose, "
             "pass --create-db to submit or run")


@contextmanager
def warehouse_released(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """With a state database, the warehouse is detached while inside (provider calls that may
    take minutes: uploads, creates, downloads) and attached again after, waiting for its lock
    like any open: so the warehouse is held only to read sources and to write the output
    table. Temp tables survive (they are the connection's own). Without a state database the
    state lives in the warehouse and it stays attached."""
    target = _TARGETS.get(id(con))
    row = con.execute("SELECT database_name, path, readonly FROM duckdb_databases() "
                      "WHERE database_name = current_database()").fetchone()
    if target is None or not target.state_db or target.shared or not row or not row[1]:
        yield
        return
    alias, path, readonly = row
    con.execute("USE memory")
    con.execute(f"DETACH {quote_ident(alias)}")
    try:
        yield
    except BaseException:
        try:   # the error in flight is the one to report; the table is updated if we can
            _attach(con, path, alias, read_only=readonly, target=target)
        except WarehouseBatchError:
            pass
        raise
    _attach(con, path, alias, read_only=readonly, target=target)


def close(con: duckdb.DuckDBPyConnection) -> None:
    """Close a connection made by `connect` (forgetting what this module noted about it)."""
    _SHARED.discard(id(con))
    _TARGETS.pop(id(con), None)
    con.close()


@contextmanager
def session(path: "str | Target", *, create: bool = True, memory_limit: str | None = None,
            warehouse: str = "write") -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection held only for one phase of work, then closed (releasing the file lock).
    With `create=False` a file that does not exist is not created (see `connect_stand_in`).
    `warehouse`: how the warehouse file is opened when a state database is given ("write",
    "read", "none"); without one it is opened read-write (the state lives in it)."""
    target = as_target(path)
    missing = not target.shared and target.db != ":memory:" and not os.path.exists(target.db)
    if not target.state_db:
        warehouse = "write"
    state_missing = bool(target.state_db) and not target.shared and \
        not os.path.exists(target.state_db)   # type: ignore[arg-type]
    with _one_at_a_time(target), _memory_guard(target.db, memory_limit):
        con = (connect_stand_in(target.db, memory_limit)
               if missing and not create and not target.state_db
               else connect(target, memory_limit=memory_limit,
                            warehouse="none" if missing and not create else warehouse,
                            state_stand_in=state_missing and not create))
        try:
            yield con
        finally:
            close(con)


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


def _read_attachment(target: Target) -> tuple[str, str, bool]:
    """(path, alias, made current) of the file `reading` attaches for `target`."""
    if target.state_db:
        return target.state_db, SCHEMA, False
    return target.db, attach_alias(target.db), True


def let_go(con: duckdb.DuckDBPyConnection, target: Target) -> None:
    """Detach the file a `reading` connection holds (its shared lock is released) and keep the
    connection: a poll asks the provider holding no lock, then `write_again` attaches the file
    read-write on the same DuckDB instance instead of starting a second one."""
    _, alias, _ = _read_attachment(target)
    con.execute("USE memory")
    con.execute(f"DETACH {quote_ident(alias)}")


def write_again(con: duckdb.DuckDBPyConnection, target: Target) -> None:
    """Attach, read-write, the file `let_go` detached (waiting out the lock like `connect`).
    The state schema is not checked again: the caller read it current moments ago."""
    path, alias, use = _read_attachment(target)
    _attach(con, path, alias, read_only=False, target=target, use=use)
    con.execute("SET enable_progress_bar = false")   # never draw on a user's terminal


@contextmanager
def reading_state(db: str, state_db: str | None = None, memory_limit: str | None = None
                  ) -> Iterator[duckdb.DuckDBPyConnection]:
    """`reading` for the commands that only read the state (`report`, `check`): the state
    must be there and current, else a `StateError` naming the file."""
    with reading(Target(db=db, state_db=state_db), memory_limit) as con:
        if con is None:
            raise StateError(f"{state_db or db} holds no warehouse-batch state this version "
                             "can read (missing, or from an older version: run any job once "
                             "to upgrade it)")
        yield con


@contextmanager
def reading(path: "str | Target", memory_limit: str | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection for a poll (no migration, no write, shared with other readers);
    None when the file is missing or its state schema needs a migration (the caller then
    takes the read-write path). With a state database only that file is opened (a poll
    never needs the warehouse); on a caller's connection, a cursor of it."""
    target = as_target(path)
    if target.shared:
        with _SHARED_WORK:
            con = target.connection.cursor()   # type: ignore[union-attr]
            try:
                attached = not target.state_db or con.execute(
                    "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                    [SCHEMA]).fetchone()[0] > 0
                yield con if attached and schema_current(con) else None
            finally:
                con.close()
        return
    path = target.state_db or target.db
    if path == ":memory:" or not os.path.exists(path):
        yield None
        return
    with _memory_guard(path, memory_limit):
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                                 **memory_settings(target.db, memory_limit)})
        try:
            if target.state_db:
                _attach(con, path, SCHEMA, read_only=True, target=target)
                con.execute("USE memory")
            else:
                _attach(con, path, attach_alias(path), read_only=True, target=target)
            yield con if schema_current(con) else None
        finally:
            con.close()
