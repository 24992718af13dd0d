"""Output tables belong to the job file that created them: claimed on the first run, written
and dropped only by that file, refused to every other one before anything is sent, handed
over with one documented UPDATE, and backfilled for databases written before ownership
existed. (The hostile names themselves are in tests/hostile/cases_outputs.py.)"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from warehouse_batch import api
from warehouse_batch.db import connect
from warehouse_batch.errors import JobFileError
from warehouse_batch.ownership import tables_read

from helpers import Job, billed_counts, provider_calls


def owners(job: Job) -> list[tuple]:
    return job.sql("SELECT table_schema, table_name, job_file, job_name, origin "
                   "FROM warehouse_batch.outputs ORDER BY ALL")


def table_state(job: Job, table: str = "enriched") -> tuple:
    """Everything a refused job must leave alone: the output table, answers, runs, ledger."""
    return (job.sql(f"SELECT * FROM {table} ORDER BY ALL"),
            job.sql("SELECT request_hash, response_text FROM warehouse_batch.results "
                    "ORDER BY ALL"),
            job.sql("SELECT count(*) FROM warehouse_batch.runs"),
            job.sql("SELECT batch_id, state FROM warehouse_batch.batches ORDER BY ALL"),
            owners(job))


def second_job_file(job: Job, folder: str = "other_team") -> str:
    """A copy of the job file elsewhere: same `name`, another file."""
    other = Path(job.tmp) / folder / "job.sql"
    other.parent.mkdir()
    shutil.copy(job.path, other)
    return str(other)


def test_first_run_claims_the_table_and_later_runs_work(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    connect(job.db).close()
    assert owners(job) == []
    api.plan(job.path, job.options())
    assert owners(job) == [], "plan writes nothing, not even a claim"
    assert job.run().exit_code == 0
    assert owners(job) == [("main", "enriched", str(Path(job.path).resolve()), "enriched",
                            "claimed")]
    again = job.run(wait=False)
    assert again.exit_code == 0 and again.submitted.requests_submitted == 0
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(12,)]
    assert len(owners(job)) == 1


def test_the_same_file_by_another_path_is_the_same_owner(tmp_path, emulator, monkeypatch):
    job = Job(tmp_path, emulator)
    job.run()
    link = tmp_path / "linked.sql"
    link.symlink_to(job.path)
    monkeypatch.chdir(tmp_path)
    for path in ("job.sql", "./linked.sql", str(link)):
        assert api.collect(path, job.options()).exit_code == 0
    assert len(owners(job)) == 1


def test_a_second_job_file_with_the_same_name_is_refused_and_changes_nothing(tmp_path,
                                                                            emulator):
    job = Job(tmp_path, emulator)
    job.run()
    before, calls = table_state(job), len(provider_calls(emulator))
    other = second_job_file(job)
    for step in (api.plan, api.submit, api.collect, api.reconcile, api.cancel):
        with pytest.raises(JobFileError) as e:
            step(other, job.options())
        assert "belongs to another job file" in str(e.value), step
        assert str(Path(job.path).resolve()) in str(e.value)
        assert e.value.location.file == other and e.value.location.line == 2
    with pytest.raises(JobFileError):
        api.run(other, job.options(full_refresh=True))
    assert table_state(job) == before
    assert len(provider_calls(emulator)) == calls, "the refused job sent nothing"
    # the owner is unaffected
    assert job.run(wait=False).exit_code == 0


def test_handing_the_table_over_is_one_update(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    other = second_job_file(job)
    with pytest.raises(JobFileError) as e:
        api.plan(other, job.options())
    update = e.value.hint.split("run: ", 1)[1]
    job.sql(update)
    report = api.run(other, job.options())
    assert report.exit_code == 0 and report.submitted.requests_submitted == 0
    assert owners(job)[0][2] == str(Path(other).resolve())
    with pytest.raises(JobFileError, match="belongs to another job file"):
        api.plan(job.path, job.options())


def test_full_refresh_by_the_owner_rebuilds_and_sends_nothing(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.sql("UPDATE enriched SET response = 'scribbled'")
    before = job.batches_created()
    report = job.run(wait=False, full_refresh=True)
    assert report.rows.succeeded == 12 and job.batches_created() == before
    assert job.sql("SELECT count(*) FROM enriched WHERE response = 'scribbled'") == [(0,)]
    assert max(billed_counts(emulator).values()) == 1


def test_status_cancel_and_collect_keep_working_for_the_owner(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    api.submit(job.path, job.options())
    assert api.status(job.path, job.options()).rows.pending == 12
    assert len(api.cancel(job.path, job.options()).cancelled) == 1
    emulator.advance(3600)
    report = api.collect(job.path, job.options())
    assert report.rows.rows == 12 and report.exit_code in (0, 75)
    assert owners(job)[0][2] == str(Path(job.path).resolve())


@pytest.mark.parametrize("name, table", [
    ("analytics.enriched", ("analytics", "enriched")),   # a new schema, created on write
    ("w.enriched", ("main", "enriched")),                 # the file's own catalog
    ("W.Main.Enriched", ("main", "enriched")),
])
def test_qualified_names_in_the_files_own_catalog(tmp_path, emulator, name, table):
    job = Job(tmp_path, emulator)
    Path(job.path).write_text(Path(job.path).read_text().replace("'enriched'", repr(name)))
    assert job.run().exit_code == 0
    assert owners(job)[0][:2] == table
    assert job.sql(f"SELECT count(*) FROM {'.'.join(table)}") == [(12,)]


def test_changing_only_the_letter_case_keeps_the_table(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    Path(job.path).write_text(Path(job.path).read_text().replace("'enriched'", "'Enriched'"))
    assert api.collect(job.path, job.options()).rows.rows == 12
    assert job.sql("SELECT count(*) FROM duckdb_tables() WHERE lower(table_name) = "
                   "'enriched'") == [(1,)]


def downgrade_to_v4(job: Job) -> None:
    """Make the file look as a version without ownership left it (005 adds the table, 010
    columns to it; both are applied again on the next open)."""
    job.sql("DROP TABLE warehouse_batch.outputs")
    job.sql("DELETE FROM warehouse_batch.schema_migrations WHERE version IN (5, 10)")


@pytest.mark.parametrize("recorded", ["absolute", "relative"])
def test_an_upgraded_database_keeps_working_for_the_owner(tmp_path, emulator, recorded,
                                                          monkeypatch):
    job = Job(tmp_path, emulator)
    job.run()
    other = second_job_file(job)
    downgrade_to_v4(job)
    if recorded == "relative":   # runs.job_file holds the path as typed, in the job's folder
        job.sql("UPDATE warehouse_batch.runs SET job_file = 'job.sql'")
        monkeypatch.chdir(tmp_path)
    job.sql("CREATE TABLE unrelated AS SELECT 1 AS x")
    connect(job.db).close()   # the upgrade: migration 005 backfills from runs
    assert [o[:2] + o[3:] for o in owners(job)] == [("main", "enriched", "enriched",
                                                     "backfilled")]
    with pytest.raises(JobFileError, match="belongs to another job file"):
        api.plan(other, job.options())
    report = job.run(wait=False)
    assert report.exit_code == 0 and report.submitted.requests_submitted == 0
    assert owners(job) == [("main", "enriched", str(Path(job.path).resolve()), "enriched",
                            "claimed")]


def test_an_upgraded_database_backfills_the_latest_job_file_per_table(tmp_path, emulator):
    """Before ownership, two job files could share a name; the latest writer keeps it."""
    job = Job(tmp_path, emulator)
    job.run()
    downgrade_to_v4(job)
    job.sql("""INSERT INTO warehouse_batch.runs (run_id, job_name, job_file, command,
        started_at, status) VALUES ('older', 'ENRICHED', '/old/place.sql', 'run',
        TIMESTAMP '2000-01-01', 'succeeded'), ('gone', 'never_written', '/x.sql', 'run',
        TIMESTAMP '2000-01-01', 'error')""")
    connect(job.db).close()
    assert [o[2] for o in owners(job)] == [job.path]


@pytest.mark.parametrize("sql, reads", [
    ("SELECT * FROM t", {("", "", "t")}),
    ('SELECT * FROM "Main"."T" JOIN w.s.u ON true', {("", "main", "t"), ("w", "s", "u")}),
    ("WITH t AS (SELECT 1) SELECT * FROM t, x", {("", "", "x")}),
    ("SELECT * FROM read_csv('f.csv'), range(3)", set()),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM b UNION SELECT id FROM c)",
     {("", "", "a"), ("", "", "b"), ("", "", "c")}),
    ("SELECT * FROM query_table('Secret')", {("", "", "secret")}),
    ("FROM t SELECT x", {("", "", "t")}),
])
def test_tables_read_lists_every_table_reference(tmp_path, sql, reads):
    con = connect(str(tmp_path / "x.duckdb"))
    try:
        assert tables_read(con, sql) == reads
    finally:
        con.close()


def test_sql_sqlglot_cannot_read_is_listed_by_duckdb(tmp_path):
    from warehouse_batch.ownership import _tables_by_duckdb

    con = connect(str(tmp_path / "x.duckdb"))
    try:
        assert _tables_by_duckdb(con, 'SELECT * FROM "Main".T, w.s.u, v') == \
            {("", "main", "t"), ("w", "s", "u"), ("", "", "v")}
    finally:
        con.close()
