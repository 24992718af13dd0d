"""Each run costs what changed: fingerprints, the incremental output table, cheap polling.

Against the emulator (manual clock) through the real SDK; no timing assertions: what is
checked is what was read, rendered, sent and written.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from helpers import EmulatorClock, Job, billed_counts, write_job
from warehouse_batch import api
from warehouse_batch.errors import JobFileError
from warehouse_batch.identity import canonical_json, custom_id_sql
from warehouse_batch.jsonl import line_sql
from warehouse_batch.db import connect
from warehouse_batch.source import prepare


def table_oid(job: Job, name: str = "enriched") -> int:
    """DuckDB's id of the table: a rebuild (CREATE OR REPLACE) gives a new one, changes made
    in place keep it."""
    return job.sql("SELECT table_oid FROM duckdb_tables() WHERE table_name = ?", [name])[0][0]


def rows_of(db: str, table: str = "enriched") -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(f"SELECT * EXCLUDE (_attempts) FROM {table} ORDER BY id").fetchall()
    finally:
        con.close()


def test_a_run_with_nothing_changed_renders_and_writes_nothing(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    first = job.run()
    assert first.rows_rendered == 12 and first.rows.succeeded == 12
    oid = table_oid(job)
    again = job.run()
    assert again.rows_rendered == 0
    assert again.submitted.requests_submitted == 0 and again.rows.succeeded == 12
    assert table_oid(job) == oid   # not rebuilt
    plan = api.plan(job.path, job.options())
    assert (plan.rows_rendered, plan.rows_done, plan.requests_to_send) == (0, 12, 0)


def test_changed_rows_alone_are_rendered_and_the_table_is_updated_in_place(tmp_path,
                                                                          emulator):
    job = Job(tmp_path, emulator)
    job.run()
    oid = table_oid(job)
    job.sql("INSERT INTO reviews VALUES (100, 'new and great'), (101, 'new and broken')")
    job.sql("UPDATE reviews SET text = 'edited: worst ever' WHERE id = 5")
    job.sql("DELETE FROM reviews WHERE id = 7")
    report = job.run()
    assert report.rows_rendered == 3 and report.submitted.requests_submitted == 3
    assert table_oid(job) == oid
    assert job.sql("SELECT count(*), count(*) FILTER (WHERE _status = 'succeeded') "
                   "FROM enriched") == [(13, 13)]
    assert job.sql("SELECT text, response FROM enriched WHERE id = 5") == \
        [("edited: worst ever", "negative")]
    assert job.sql("SELECT count(*) FROM enriched WHERE id = 7") == [(0,)]
    # the table maintained in place holds exactly what a rebuild from scratch holds
    copy = str(tmp_path / "copy.duckdb")
    shutil.copy(job.db, copy)
    rebuilt = api.run(job.path, api.Options(**{**job.options().__dict__, "db": copy,
                                               "full_refresh": True}))
    assert rebuilt.submitted.requests_submitted == 0
    assert rows_of(copy) == rows_of(job.db)


def test_a_changed_column_outside_the_prompt_updates_the_row_without_a_send(tmp_path,
                                                                            emulator):
    job = Job(tmp_path, emulator)
    job.sql("ALTER TABLE reviews ADD COLUMN note VARCHAR DEFAULT 'a'")
    Path(job.path).write_text(Path(job.path).read_text().replace(
        "SELECT id, text FROM reviews", "SELECT id, text, note FROM reviews"))
    job.run()
    job.sql("UPDATE reviews SET note = 'b' WHERE id = 3")
    report = job.run()
    assert report.rows_rendered == 1 and report.submitted.requests_submitted == 0
    assert job.sql("SELECT note, _status FROM enriched WHERE id = 3") == [("b", "succeeded")]


def test_a_poll_with_nothing_ended_reads_no_source_and_records_no_run(tmp_path, emulator):
    """The source is a CSV file that is removed once the batch is submitted: status, collect
    and run only ask the provider, and a collect once the batch ended needs no source
    either (its answers are written into the output rows in place)."""
    csv = tmp_path / "reviews.csv"
    csv.write_text("id,text\n" + "".join(f"{i},review number {i}\n" for i in range(1, 9)))
    job = Job(tmp_path, emulator)
    job.path = str(write_job(tmp_path, """
        name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id',
        prompt='Sentiment: {{ text }}', max_tokens=5""",
                             "SELECT id, text FROM read_csv('reviews.csv')"))
    submitted = api.submit(job.path, job.options())
    assert submitted.submitted.requests_submitted == 8
    runs = job.sql("SELECT count(*) FROM warehouse_batch.runs")
    csv.unlink()
    for command in (api.collect, lambda p, o: api.run(p, o)):
        report = command(job.path, job.options())
        assert report.exit_code == 75 and report.rows.pending == 8
        assert report.collected.batches_polled == 1 and report.rows_rendered == 0
    assert api.status(job.path, job.options()).rows.pending == 8
    assert job.sql("SELECT count(*) FROM warehouse_batch.runs") == runs
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                   "WHERE last_polled_at IS NOT NULL") == [(1,)]
    EmulatorClock(emulator).sleep(3600)
    collected = api.collect(job.path, job.options())
    assert collected.collected.batches_collected == 1 and collected.rows.succeeded == 8
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded' "
                   "AND response IS NOT NULL") == [(8,)]
    assert sum(billed_counts(emulator).values()) == 8


def test_a_poll_reads_the_source_again_when_the_job_file_changed(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    api.submit(job.path, job.options())
    job.write(prompt="Changed: {{ text }}")
    report = api.run(job.path, job.options())
    assert report.rows_rendered == 12 and report.submitted.requests_submitted == 12


@pytest.mark.parametrize("prompt", ["Review: {{ text }}", "Review: {{ text | upper }}"])
def test_body_bytes_match_the_upload_lines(tmp_path, emulator, prompt):
    """plan sizes batches from `body_bytes` plus a per-job overhead instead of building every
    line: the sum must be the bytes of the lines themselves (escapes, non-ASCII)."""
    job = Job(tmp_path, emulator, prompt=prompt)
    job.sql("INSERT INTO reviews VALUES (50, 'quote \" back\\\\slash tab\t nl\n ünïcødé 😀')")
    spec = api.load(job.path, job.options())
    con = connect(job.db)
    try:
        prepared = prepare(con, spec, job.provider())
        line = line_sql(prepared.provider, custom_id_sql("request_hash"),
                        prepared.body_sql("prompt"))
        rows = "wb_current JOIN wb_prompt USING (_rid)"
        got = con.execute(f"SELECT sum(strlen({line}) + 1), "
                          f"sum(body_bytes + {prepared.line_overhead()}) FROM {rows}"
                          ).fetchone()
        one = con.execute(f"SELECT {line} FROM {rows} ORDER BY _rid LIMIT 1").fetchone()[0]
    finally:
        con.close()
    assert got[0] == got[1]
    assert canonical_json(json.loads(one)) == one


def test_memory_limit_from_the_job_file_and_the_command_line(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", memory_limit='300MB'")
    assert api.load(job.path, job.options()).memory_limit == "300MB"
    assert api.load(job.path, job.options(memory_limit="2GB")).memory_limit == "2GB"
    (tmp_path / "x").mkdir()
    bad = Job(tmp_path / "x", emulator, extra=", memory_limit='lots'")
    with pytest.raises(JobFileError, match=r"memory_limit.*not a memory size"):
        api.load(bad.path, bad.options())


def test_running_out_of_the_memory_limit_is_a_clear_error_and_loses_nothing(tmp_path,
                                                                              emulator):
    """DuckDB failing within the memory limit exits 2 naming the limit and how to raise it
    (it was a traceback and exit 1); the answers already in the file stay."""
    import subprocess
    import sys

    from helpers import emulator_env

    job = Job(tmp_path, emulator)
    job.run()
    before = rows_of(job.db)
    for command in ("plan", "submit", "status"):
        done = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", command, job.path,
                               "--db", job.db, "--memory-limit", "1MB"],
                              env=emulator_env(emulator), capture_output=True, text=True)
        assert done.returncode == 2, (command, done.stderr)
        assert "ran out of memory within the limit of 1MB" in done.stderr, done.stderr
        assert "--memory-limit" in done.stderr and "Traceback" not in done.stderr
    assert rows_of(job.db) == before


def test_job_rows_record_the_documented_row_key_hash(tmp_path, emulator):
    from warehouse_batch import identity
    import json

    job = Job(tmp_path, emulator)
    job.run()
    recorded = job.sql("SELECT key_json, row_key_hash, input_fp IS NOT NULL, answered "
                       "FROM warehouse_batch.job_rows")
    assert len(recorded) == 12
    for key_json, khash, has_fp, answered in recorded:
        assert khash == identity.row_key_hash(json.loads(key_json)) and has_fp and answered


def test_job_rows_mark_only_succeeded_answers_answered(tmp_path, emulator):
    """`job_rows.answered` (what lets the next run skip a row) is set for the rows whose
    answer succeeded and for no other: a row that failed, retryably or for good, is looked
    at again by the next run."""
    job = Job(tmp_path, emulator, extra=", max_attempts=1")
    job.sql("UPDATE reviews SET text = 'flaky [[emu:error500]]' WHERE id = 4")
    job.sql("UPDATE reviews SET text = 'too long [[emu:error400]]' WHERE id = 5")
    report = job.run()
    assert report.rows.failed == 2 and report.rows.succeeded == 10
    answered = dict(job.sql("SELECT key_json, answered FROM warehouse_batch.job_rows"))
    assert len(answered) == 12
    assert {k for k, a in answered.items() if not a} == {'{"id":4}', '{"id":5}'}
