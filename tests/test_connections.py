"""Connections that share (issue 10, item 1): the library on a caller's own DuckDB connection
(as inside dbt-duckdb's process), the state in a DuckDB file of its own, and the warehouse
file opened only when a command needs it."""
from __future__ import annotations

import threading

import duckdb
import pytest

from warehouse_batch import api
from warehouse_batch.db import Target, materialise_read_only, session

from helpers import Job, write_job


def _databases(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT database_name, path, readonly FROM duckdb_databases() "
                       "WHERE NOT internal ORDER BY 1").fetchall()


def test_a_job_runs_on_the_callers_connection_while_it_holds_the_file(tmp_path, emulator):
    """The caller (think dbt-duckdb) holds the warehouse open read-write for the whole time:
    opening the file again would fail ("open in another process" / "different
    configuration"). On its connection every command works, and the caller's connection is
    left as it was: open, its database attached the same way, no uncommitted transaction."""
    job = Job(tmp_path, emulator)
    caller = duckdb.connect(job.db)
    caller.execute("SET force_compression = 'uncompressed'")   # the caller's own choice
    before = _databases(caller)
    try:
        with pytest.raises(duckdb.Error):   # what the library would hit on its own
            duckdb.connect(job.db, config={"memory_limit": "100MB"})
        plan = api.plan(job.path, job.options(connection=caller))
        assert plan.requests_to_send == 12
        report = job.run(connection=caller)
        assert report.rows.succeeded == 12 and report.exit_code == 0
        status = api.status(job.path, job.options(connection=caller))
        assert status.rows.succeeded == 12
        again = api.run(job.path, job.options(connection=caller))
        assert again.submitted.requests_submitted == 0 and again.exit_code == 0
        # the caller sees the output and the state through its own connection, unchanged
        assert caller.execute("SELECT count(*) FROM enriched WHERE _status = 'succeeded'"
                              ).fetchone() == (12,)
        assert caller.execute("SELECT count(*) FROM warehouse_batch.results").fetchone() \
            == (12,)
        assert _databases(caller) == before
        caller.execute("BEGIN TRANSACTION")   # no transaction of ours was left open
        caller.execute("ROLLBACK")
        # the library set nothing on the caller's session that it did not undo
        assert caller.execute("SELECT current_setting('file_search_path')").fetchone() \
            in ((""), ("",), (None,))
        assert caller.execute("SELECT current_setting('force_compression')").fetchone() \
            == ("uncompressed",)
    finally:
        caller.close()


def test_two_jobs_on_one_callers_connection_at_once_do_not_conflict(tmp_path, emulator):
    """dbt-duckdb with threads > 1 runs two Python models at the same time on cursors of one
    connection. Two passes writing the state at once would be a DuckDB write-write conflict
    ("Catalog write-write conflict on create"); the library's work on a caller's connection
    is serialised in the process, so both jobs go through, each with its own answers."""
    first = Job(tmp_path, emulator, rows=12)
    other = tmp_path / "b"
    other.mkdir()
    second = Job(other, emulator, db=first.db)   # the same warehouse and table
    second.path = str(write_job(other, """
        name='enriched_b', provider='openai', model='gpt-4.1-mini', unique_key='id',
        prompt='{{ text }}', max_tokens=5""", "SELECT id, text FROM reviews WHERE id <= 7"))
    caller = duckdb.connect(first.db)
    results: dict[str, object] = {}

    def one(job: Job) -> None:
        try:
            results[job.path] = api.run(job.path, job.options(connection=caller))
        except BaseException as e:   # surfaced below, in the test's thread
            results[job.path] = e

    threads = [threading.Thread(target=one, args=(j,)) for j in (first, second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        caller.close()
    assert all(isinstance(r, api.RunReport) for r in results.values()), results
    emulator.advance(3600)
    assert first.run().rows.succeeded == 12
    assert second.run().rows.succeeded == 7


def test_the_select_runs_in_a_rolled_back_transaction_with_its_own_types(tmp_path):
    """On a caller's connection the database is never re-attached read-only: the SELECT runs
    on a second cursor inside a transaction that is rolled back, and its rows reach the temp
    table with the SELECT's own types (an ENUM stays an ENUM, a HUGEINT a HUGEINT)."""
    db = str(tmp_path / "w.duckdb")
    caller = duckdb.connect(db)
    caller.execute("CREATE TYPE mood AS ENUM ('calm', 'cross')")
    caller.execute("CREATE TABLE t AS SELECT range AS id, 'calm'::mood AS m, "
                   "range::HUGEINT AS h FROM range(5000)")
    try:
        with session(Target(db=db, connection=caller)) as con:
            materialise_read_only(con, "wb_x", "SELECT * FROM t")
            types = dict(con.execute("SELECT column_name, data_type FROM "
                                     "information_schema.columns WHERE table_name = 'wb_x'"
                                     ).fetchall())
            assert types["h"] == "HUGEINT" and types["m"].startswith("ENUM")
            assert con.execute("SELECT count(*), sum(h) FROM wb_x").fetchone() == \
                (5000, sum(range(5000)))
            # the reading transaction is gone: the caller's file is writable at once
            caller.execute("INSERT INTO t VALUES (9999, 'cross', 1)")
        # the temp table was the session cursor's own: the caller does not see it
        with pytest.raises(duckdb.CatalogException):
            caller.execute("SELECT * FROM wb_x")
    finally:
        caller.close()


# -- the state in its own file -----------------------------------------------------------------

def _digest(path: str) -> str:
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _state(state_db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(state_db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_with_a_state_db_the_warehouse_holds_only_sources_and_the_output(tmp_path, emulator):
    """`state_db`: the ledger and the answer cache live in their own file (tables in its
    `main` schema); `plan` and `status` never write the warehouse file; the output table is
    the same as with the state inside the warehouse."""
    job = Job(tmp_path, emulator)
    state_db = str(tmp_path / "state.duckdb")
    before = _digest(job.db)
    plan = api.plan(job.path, job.options(state_db=state_db))
    assert plan.requests_to_send == 12 and _digest(job.db) == before
    first = job.run(wait=False, state_db=state_db)
    assert first.exit_code == 75 and first.submitted.requests_submitted == 12
    settled = _digest(job.db)
    status = api.status(job.path, job.options(state_db=state_db))
    assert status.rows.pending == 12 and _digest(job.db) == settled
    report = job.run(state_db=state_db)
    assert report.rows.succeeded == 12 and report.exit_code == 0
    assert job.sql("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = "
                   "'warehouse_batch'") == [(0,)]
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(12,)]
    assert _state(state_db, "SELECT count(*) FROM results WHERE status = 'succeeded'") \
        == [(12,)]
    assert _state(state_db, "SELECT DISTINCT state FROM batches") == [("collected",)]
    again = api.run(job.path, job.options(state_db=state_db))
    assert again.submitted.requests_submitted == 0 and again.exit_code == 0


def test_a_state_db_in_the_job_file_is_used_and_kept_inside_the_job_scope(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", state_db='wb_state.duckdb'")
    report = job.run()
    assert report.rows.succeeded == 12
    assert _state(str(tmp_path / "wb_state.duckdb"), "SELECT count(*) FROM results") == [(12,)]
    from warehouse_batch.errors import JobFileError
    job.write(extra=", state_db='/tmp/elsewhere/wb_state.duckdb'")
    with pytest.raises(JobFileError, match="state_db .* outside the folders"):
        api.plan(job.path, job.options())


def test_a_warehouse_still_holding_the_state_schema_is_not_silently_shadowed(tmp_path,
                                                                             emulator):
    from warehouse_batch.errors import StateError
    job = Job(tmp_path, emulator)
    job.run()   # the state in the warehouse
    with pytest.raises(StateError, match="still holds the state schema"):
        api.plan(job.path, job.options(state_db=str(tmp_path / "state.duckdb")))


WRITER = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
          "c.execute('CREATE OR REPLACE TABLE dbt_model AS SELECT 1 AS x'); c.close()")


@pytest.mark.parametrize("state_db", [True, False], ids=["state-db", "state-in-warehouse"])
def test_with_a_state_db_the_warehouse_is_free_during_provider_calls(tmp_path, emulator,
                                                                     monkeypatch, state_db):
    """While warehouse-batch uploads, creates and downloads (calls that may take minutes),
    another process (dbt building a model) can write the warehouse when the state lives in
    its own file; with the state in the warehouse it cannot (the ledger is written there)."""
    import subprocess
    import sys

    from warehouse_batch.providers.openai import OpenAIProvider

    job = Job(tmp_path, emulator)
    outcomes: list[tuple[str, int]] = []

    def other_writer(step):
        def wrapped(self, *args, **kw):
            p = subprocess.run([sys.executable, "-c", WRITER, job.db], capture_output=True)
            outcomes.append((step.__name__, p.returncode))
            return step(self, *args, **kw)
        return wrapped

    for name in ("upload", "create", "download_results"):
        monkeypatch.setattr(OpenAIProvider, name, other_writer(getattr(OpenAIProvider, name)))
    options = {"state_db": str(tmp_path / "state.duckdb")} if state_db else {}
    report = job.run(**options)
    assert report.rows.succeeded == 12
    assert {name for name, _ in outcomes} == {"upload", "create", "download_results"}
    if state_db:
        assert all(code == 0 for _, code in outcomes), outcomes
        assert job.sql("SELECT x FROM dbt_model") == [(1,)]
    else:
        assert all(code != 0 for _, code in outcomes), outcomes
