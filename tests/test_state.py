"""The state schema: versioned migrations upgrade a file in place and refuse a newer one."""
from __future__ import annotations

import duckdb
import pytest

from warehouse_batch.errors import StateError
from warehouse_batch.state import ensure_schema, migrations


def test_fresh_file_gets_every_migration(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    newest = ensure_schema(con)
    assert newest == max(v for v, _, _ in migrations())
    assert [r[0] for r in con.execute("SELECT version FROM warehouse_batch.schema_migrations "
                                      "ORDER BY 1").fetchall()] == [v for v, _, _ in migrations()]
    assert ensure_schema(con) == newest   # idempotent


def test_older_file_is_upgraded_in_place_keeping_its_answers(tmp_path):
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA warehouse_batch")
    con.execute("CREATE TABLE warehouse_batch.schema_migrations (version INTEGER PRIMARY KEY, "
                "name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for version, name, sql in migrations()[:1]:        # a file written by version 1
        con.execute(sql)
        con.execute("INSERT INTO warehouse_batch.schema_migrations VALUES (?, ?, now())",
                    [version, name])
    con.execute("""INSERT INTO warehouse_batch.results (request_hash, custom_id, status,
        retryable, response_text, attempts, failures, updated_at)
        VALUES ('h1', 'wb_h1', 'succeeded', false, 'paid answer', 1, 0, now())""")
    con.close()
    con = duckdb.connect(path)
    ensure_schema(con)
    assert con.execute("SELECT response_text, embedding FROM warehouse_batch.results") \
        .fetchall() == [("paid answer", None)]
    assert con.execute("SELECT count(*) FROM warehouse_batch.usage").fetchone() == (0,)


def test_newer_schema_is_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    con.execute("INSERT INTO warehouse_batch.schema_migrations VALUES (999, 'future', now())")
    with pytest.raises(StateError, match="newer"):
        ensure_schema(con)


def test_file_is_readable_by_duckdb_1_4_format(tmp_path):
    from warehouse_batch.db import connect

    path = str(tmp_path / "w.duckdb")
    connect(path).close()
    con = duckdb.connect(path)
    (version,) = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                             "WHERE database_name = 'w'").fetchone()
    con.close()
    # DuckDB 2.0 would otherwise write a format DuckDB 1.x tools cannot open
    assert version.startswith("v1.4"), version


@pytest.mark.parametrize("storage", ["v1.0.0", "v1.4.0"])
def test_a_file_in_an_older_storage_format_runs_a_job_end_to_end(tmp_path, fast_emulator,
                                                                  storage):
    """A warehouse file written by DuckDB 1.1 (or created with DuckDB 1.x's default
    compatibility format) has no ZSTD strings: the migrations that ask for ZSTD fall back to
    DuckDB's default compression there instead of failing with a binder error."""
    from helpers import Job

    path = tmp_path / "w.duckdb"
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{path}' AS w (STORAGE_VERSION '{storage}')")
    con.execute("CREATE TABLE w.reviews AS SELECT range + 1 AS id, 'fine ' || range AS text "
                "FROM range(5)")
    con.close()
    job = Job(tmp_path, fast_emulator)
    report = job.run()
    assert report.rows.succeeded == 5
    compressions = {c for (c,) in job.sql(
        "SELECT DISTINCT compression FROM pragma_storage_info('warehouse_batch.request_rows') "
        "WHERE column_name = 'prompt' AND segment_type = 'VARCHAR'")}
    assert ("ZSTD" in compressions) == (storage == "v1.4.0"), compressions


def _state_at_version(path: str, newest: int) -> duckdb.DuckDBPyConnection:
    """A new DuckDB file whose state schema is as migrations 1..`newest` left it."""
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA warehouse_batch")
    con.execute("CREATE TABLE warehouse_batch.schema_migrations (version INTEGER PRIMARY KEY, "
                "name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for version, name, sql in migrations():
        if version <= newest:
            con.execute(sql)
            con.execute("INSERT INTO warehouse_batch.schema_migrations VALUES (?, ?, now())",
                        [version, name])
    return con


def _upgraded(con: duckdb.DuckDBPyConnection, path: str, table: str):
    """Close `con`, open the file again through the migrations; the connection and the
    state `table`'s rows before and after."""
    before = sorted(con.execute(f"SELECT * FROM warehouse_batch.{table}").fetchall())
    con.close()
    con = duckdb.connect(path)
    ensure_schema(con)
    return con, before, sorted(con.execute(f"SELECT * FROM warehouse_batch.{table}").fetchall())


def test_version_23_derives_results_custom_id_keeping_every_answer(tmp_path):
    """A file at version 22 with answers cached is rebuilt: every value is kept and
    results.custom_id, now a virtual column, is the one it stored."""
    path = str(tmp_path / "v22.duckdb")
    con = _state_at_version(path, 22)
    con.execute("""INSERT INTO warehouse_batch.results (request_hash, custom_id, status,
            retryable, response_text, response_body, input_tokens, attempts, failures,
            updated_at, embedding, run_id, run_failures)
        SELECT h, 'wb_' || left(h, 48), 'succeeded', false, 'answer ' || i, '{"i":' || i || '}',
               i, 1, 0, now(), [i::FLOAT], 'r1', i % 3
        FROM (SELECT sha256(i::VARCHAR) AS h, i FROM range(3000) r(i))""")
    con, before, after = _upgraded(con, path, "results")
    assert after == before   # same columns in the same order, every value kept
    assert con.execute("SELECT is_generated FROM duckdb_columns() WHERE schema_name = "
                       "'warehouse_batch' AND table_name = 'results' AND column_name = "
                       "'custom_id'").fetchone() == (True,)
    con.close()


def test_version_24_stores_what_a_submit_shares_once_keeping_every_request(tmp_path):
    """A file at version 23 with requests stored by two submits (and one verbatim body from
    before version 11) is moved to request_rows + request_sets: the `requests` view shows
    every row as the table did, bodies byte for byte, and each submit's shared values are
    one row."""
    path = str(tmp_path / "v23.duckdb")
    con = _state_at_version(path, 23)
    con.execute("""INSERT INTO warehouse_batch.requests (request_hash, provider, endpoint,
            model, job_name, first_run_id, created_at, seq, prompt, body_prefix, body_suffix)
        SELECT sha256(i::VARCHAR), 'openai', '/v1/chat/completions', 'm',
               CASE WHEN i < 2000 THEN 'a' ELSE 'b' END, 'r' || (i // 2000),
               TIMESTAMP '2026-11-01' + INTERVAL (i // 2000) HOUR, i + 1,
               'prompt "' || i || '"\n', '{"messages":[{"content":', '}]}'
        FROM range(3000) r(i)""")
    con.execute("""INSERT INTO warehouse_batch.requests (request_hash, provider, endpoint,
            model, job_name, created_at, seq, body_text)
        VALUES ('old', 'anthropic', '/v1/messages', 'c', 'a', TIMESTAMP '2026-10-01', 3001,
                '{"verbatim":true}')""")
    con, before, after = _upgraded(con, path, "requests")
    assert after == before   # same columns in the same order, every value kept
    assert con.execute("SELECT body FROM warehouse_batch.requests WHERE seq = 1"
                       ).fetchone() == ('{"messages":[{"content":"prompt \\"0\\"\\n"}]}',)
    assert con.execute("SELECT count(*) FROM warehouse_batch.request_sets").fetchone() == (3,)
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = "
                       "'warehouse_batch' AND table_name = 'requests'").fetchone() == ("VIEW",)
    con.close()


def _hash_compressions(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    con.execute("CHECKPOINT")
    return {c for (c,) in con.execute(
        f"SELECT DISTINCT compression FROM pragma_storage_info('warehouse_batch.{table}') "
        "WHERE column_name = 'request_hash' AND segment_type = 'VARCHAR'").fetchall()}


def test_version_25_stores_the_hashes_a_collect_writes_uncompressed(tmp_path):
    """A file at version 24 with answers and attempts is rebuilt: every value is kept, and
    the request hashes of `results` and `attempts` (written by every collect) are stored
    uncompressed from then on; the hashes a submit writes stay compressed."""
    path = str(tmp_path / "v24.duckdb")
    con = _state_at_version(path, 24)
    con.execute("""INSERT INTO warehouse_batch.results (request_hash, status, retryable,
            response_text, response_body, input_tokens, attempts, failures, updated_at,
            embedding, run_id, run_failures)
        SELECT sha256(i::VARCHAR), 'succeeded', false, 'answer ' || i, '{"i":' || i || '}',
               i, 1, 0, now(), [i::FLOAT], 'r1', i % 3
        FROM range(3000) r(i)""")
    con.execute("""INSERT INTO warehouse_batch.attempts (batch_id, request_hash, outcome,
            retryable, collected_at, input_tokens, cache_write_1h_tokens)
        SELECT 'b' || (i // 1000), sha256(i::VARCHAR), 'succeeded', false, now(), i, 0
        FROM range(3000) r(i)""")
    con.execute("""INSERT INTO warehouse_batch.batch_requests (batch_id, request_hash)
        SELECT 'b' || (i // 1000), sha256(i::VARCHAR) FROM range(3000) r(i)""")
    assert _hash_compressions(con, "results") != {"Uncompressed"}
    attempts = sorted(con.execute("SELECT * FROM warehouse_batch.attempts").fetchall())
    con, before, after = _upgraded(con, path, "results")
    assert after == before   # same columns in the same order, every value kept
    assert sorted(con.execute("SELECT * FROM warehouse_batch.attempts").fetchall()) == attempts
    assert _hash_compressions(con, "results") == {"Uncompressed"}
    assert _hash_compressions(con, "attempts") == {"Uncompressed"}
    assert _hash_compressions(con, "batch_requests") != {"Uncompressed"}
    con.close()
