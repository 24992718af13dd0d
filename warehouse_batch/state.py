"""The state schema `warehouse_batch` inside the user's DuckDB file: migrations and the ledger.

Migrations are numbered SQL files in `sql/` (`migrate_NNN_name.sql`), applied in order and
recorded in `warehouse_batch.schema_migrations`, so a file written by an older version is
upgraded in place and a file written by a newer one is refused rather than damaged.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from importlib import resources

import duckdb

from .errors import StateError

SCHEMA = "warehouse_batch"
_MIGRATION_RE = re.compile(r"migrate_(\d{3})_(\w+)\.sql$")
_ZSTD_CLAUSE = re.compile(r"\s+USING\s+COMPRESSION\s+zstd\b", re.IGNORECASE)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every shipped migration, oldest first."""
    found = []
    for entry in resources.files("warehouse_batch").joinpath("sql").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def state_location(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """(catalog, schema) of the state tables. Normally the schema `warehouse_batch` of the
    current database; with a state database (`db.Target.state_db`) the file is attached under
    the catalog name `warehouse_batch` and its tables live in its `main` schema, so every
    `warehouse_batch.<table>` in the SQL resolves there unchanged (DuckDB reads a two-part
    name as catalog.table when the current database has no schema of that name)."""
    attached = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                           [SCHEMA]).fetchone()[0]
    if attached:
        return SCHEMA, "main"
    return con.execute("SELECT current_database()").fetchone()[0], SCHEMA


def ensure_schema(con: duckdb.DuckDBPyConnection) -> int:
    """Create or upgrade the state schema; returns the schema version now in the file."""
    catalog, schema = state_location(con)
    if schema == SCHEMA:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)""")
    applied = {v for (v,) in con.execute(f"SELECT version FROM {SCHEMA}.schema_migrations")
               .fetchall()}
    known = migrations()
    newest = max(v for v, _, _ in known)
    if applied and max(applied) > newest:
        raise StateError(
            f"the state schema in this file is version {max(applied)}, newer than this "
            f"warehouse-batch understands ({newest}); upgrade warehouse-batch")
    zstd = zstd_available(con, catalog)
    for version, name, sql in known:
        if version in applied:
            continue
        if not zstd:   # the file's format predates ZSTD strings: default compression then
            sql = _ZSTD_CLAUSE.sub("", sql)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(f"INSERT INTO {SCHEMA}.schema_migrations VALUES (?, ?, ?)",
                        [version, name, now_utc()])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    _check_tables(con, known)
    refresh_prices(con)
    return newest


def zstd_available(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> bool:
    """Whether the current database's storage format has ZSTD string compression (v1.2.0 and
    later). A file in an older format (written by DuckDB 1.1 or before, or attached with an
    older STORAGE_VERSION, which DuckDB 1.x did by default) refuses `USING COMPRESSION zstd`
    with a binder error and silently stores a forced one uncompressed. `catalog`: an
    attached database other than the current one."""
    row = con.execute("SELECT tags FROM duckdb_databases() "
                      "WHERE database_name = coalesce(?, current_database())",
                      [catalog]).fetchone()
    version = ((row[0] if row else None) or {}).get("storage_version", "")
    m = re.match(r"v(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (1, 2)


def _check_tables(con: duckdb.DuckDBPyConnection, known: list[tuple[int, str, str]]) -> None:
    """Refuse a state schema a migration is recorded for but whose table was dropped by hand
    (every later statement on it would fail with a traceback)."""
    wanted = {m.lower() for _, _, sql in known for m in re.findall(
        rf"CREATE TABLE IF NOT EXISTS {SCHEMA}\.(\w+)", sql, re.IGNORECASE)}
    present = {t.lower() for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = $1 AND schema_name = $2 "
        "UNION ALL SELECT view_name FROM duckdb_views() "
        "WHERE database_name = $1 AND schema_name = $2",   # requests became a view (v24)
        list(state_location(con))).fetchall()}
    missing = sorted(wanted - present)
    if missing:
        raise StateError(
            f"the state schema {SCHEMA} is damaged: table(s) "
            f"{', '.join(f'{SCHEMA}.{t}' for t in missing)} are missing although its "
            "migrations are recorded; restore the file from a backup, or (losing the cached "
            f"answers and the batch ledger) DROP SCHEMA {SCHEMA} CASCADE and run again")


def refresh_prices(con: duckdb.DuckDBPyConnection) -> None:
    """Load the shipped price list into warehouse_batch.prices (prices change by release);
    only when it differs from the one last loaded, so opening the file writes nothing."""
    text = resources.files("warehouse_batch").joinpath("data", "prices.json").read_text(
        encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    if con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = 'prices'").fetchone() == \
            (digest,):
        return
    data = json.loads(text)
    realtime = data.get("realtime_multiplier", {})
    rows = [(p["provider"], p["model"], p["input"], p["output"], p.get("cache_read"),
             p.get("cache_write"), p.get("cache_write_1h"), realtime.get(p["provider"]))
            for p in data["prices"]]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {SCHEMA}.prices")
        con.executemany(f"""INSERT INTO {SCHEMA}.prices (provider, model, input, output,
            cache_read, cache_write, cache_write_1h, realtime)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)""", rows)
        con.execute(f"INSERT OR REPLACE INTO {SCHEMA}.meta VALUES ('prices', ?)", [digest])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def schema_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the state schema exists and every shipped migration is applied (a read-only
    connection can then use it as it is)."""
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? "
                         "AND schema_name = ? AND table_name = 'schema_migrations'",
                         list(state_location(con))).fetchone()[0]
    if not exists:
        return False
    version = con.execute(f"SELECT max(version) FROM {SCHEMA}.schema_migrations").fetchone()[0]
    return version == max(v for v, _, _ in migrations())


def now_utc() -> dt.datetime:
    """Naive UTC timestamp, as stored in state tables."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)



def fetch_dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]
