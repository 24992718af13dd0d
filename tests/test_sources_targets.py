"""Sources and targets (issue 10, item 6): other DuckDB files attached read-only for the
SELECT (`attach=`), a catalog-qualified output name end to end, and a Parquet copy of the
output table after each write (`export=`). Refusals are in tests/hostile/cases_attach.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from helpers import Job, checksum, emulator_env, provider_calls, write_job
from warehouse_batch import api

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
CONFIG = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
          "system='Answer with one word.', prompt='Classify: {{ text }}', max_tokens=5")


def cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def make_crm(path: Path, customers: int) -> str:
    con = duckdb.connect(str(path))
    con.execute("CREATE OR REPLACE TABLE customers AS SELECT range + 1 AS id, "
                "'customer ' || (range + 1) AS name FROM range(?)", [customers])
    con.close()
    return str(path)


def test_an_attached_file_is_read_only_and_released(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=12)
    crm = make_crm(tmp_path / "crm.duckdb", 5)
    job.path = str(write_job(tmp_path, CONFIG + ", attach={'crm': 'crm.duckdb'}", """
        SELECT r.id, r.text || ' from ' || c.name AS text
        FROM reviews r JOIN crm.main.customers c ON c.id = r.id"""))
    before = checksum(crm)
    plan = api.plan(job.path, job.options())
    assert plan.rows_selected == 5 and plan.requests_to_send == 5
    report = job.run()
    assert report.exit_code == 0 and report.rows.succeeded == 5
    assert job.sql("SELECT text FROM enriched WHERE id = 2") == [("broken and terrible 1 from "
                                                                  "customer 2",)]
    assert checksum(crm) == before
    # released after the command: another process may write it, and the next run sees it
    con = duckdb.connect(crm)
    con.execute("INSERT INTO customers VALUES (6, 'customer 6')")
    con.close()
    again = job.run()
    assert again.rows.rows == again.rows.succeeded == 6
    assert again.submitted.requests_submitted == 1


def test_the_attached_catalog_is_read_only_even_for_a_view(tmp_path, emulator):
    """A view in the database file over the attached catalog binds while it is attached,
    and the SELECT still cannot write through it (DuckDB's READ_ONLY attachment)."""
    job = Job(tmp_path, emulator, rows=4)
    make_crm(tmp_path / "crm.duckdb", 4)
    con = duckdb.connect(job.db)
    con.execute("ATTACH '" + str(tmp_path / "crm.duckdb") + "' AS crm (READ_ONLY)")
    con.execute("CREATE VIEW named AS SELECT id, name AS text FROM crm.main.customers")
    con.close()
    job.path = str(write_job(tmp_path, CONFIG + ", attach={'crm': 'crm.duckdb'}",
                             "SELECT id, text FROM named"))
    assert job.run().rows.succeeded == 4


def test_a_catalog_qualified_name_works_end_to_end_through_the_cli(tmp_path, fast_emulator):
    db = str(tmp_path / "lake.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'r ' || range AS text "
                "FROM range(6)")
    con.close()
    job = write_job(tmp_path, CONFIG.replace("name='enriched'", "name='lake.main.t'"),
                    "SELECT id, text FROM reviews")
    env = emulator_env(fast_emulator)
    for command, code in (("plan", 0), ("run", 0), ("status", 0), ("collect", 0)):
        args = [command, str(job), "--db", db, "--json", "-q"]
        r = cli(args + (["--wait", "--poll-interval", "0.1"] if command == "run" else []), env)
        assert r.returncode == code, (command, r.stderr)
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM lake.main.t WHERE _status = 'succeeded'"
                       ).fetchone() == (6,)
    con.close()
    # the same job against another file is refused at plan and run, before anything is sent
    other = str(tmp_path / "w.duckdb")
    duckdb.connect(other).close()
    calls = len(provider_calls(fast_emulator))
    for command in ("plan", "run"):
        r = cli([command, str(job), "--db", other], env)
        assert r.returncode == 2 and f"{job}:2:10:" in r.stderr and "no catalog 'lake'" in r.stderr
    assert len(provider_calls(fast_emulator)) == calls


def parquet(path: Path) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT id, _status, response FROM read_parquet('{path}') "
                           "ORDER BY id").fetchall()
    finally:
        con.close()


def test_export_writes_parquet_after_each_output_write(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=6, extra=", export='exports/{name}.parquet'")
    target = tmp_path / "exports" / "enriched.parquet"
    assert not target.exists()
    api.plan(job.path, job.options())
    assert not target.exists()   # plan writes nothing
    api.submit(job.path, job.options())
    assert [r[1] for r in parquet(target)] == ["pending"] * 6
    emulator.advance(3600)
    api.collect(job.path, job.options())
    rows = parquet(target)
    assert [r[1] for r in rows] == ["succeeded"] * 6 and all(r[2] for r in rows)
    assert rows == job.sql("SELECT id, _status, response FROM enriched ORDER BY id")
    assert sorted(p.name for p in target.parent.iterdir()) == ["enriched.parquet"]


def test_export_to_a_folder_and_a_schema_qualified_name(tmp_path, fast_emulator):
    (tmp_path / "out").mkdir()
    job = Job(tmp_path, fast_emulator, rows=3, extra=", export='out'")
    Path(job.path).write_text(Path(job.path).read_text().replace("'enriched'",
                                                                 "'analytics.enriched'"))
    env = emulator_env(fast_emulator)
    r = cli(["run", job.path, "--db", job.db, "--wait", "--poll-interval", "0.1", "--json"],
            env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"]["succeeded"] == 3
    assert [s for _, s, _ in parquet(tmp_path / "out" / "enriched.parquet")] == \
        ["succeeded"] * 3


def test_an_export_that_cannot_be_written_is_a_located_error(tmp_path, fast_emulator):
    (tmp_path / "blocked").write_text("a file where the folder should be")
    job = Job(tmp_path, fast_emulator, rows=3, extra=", export='blocked/{name}.parquet'")
    r = cli(["run", job.path, "--db", job.db], emulator_env(fast_emulator))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{job.path}:" in r.stderr and "export: cannot write" in r.stderr
    assert job.sql("SELECT count(*) FROM enriched") == [(3,)]   # the table itself is written
    # the command's runs row is closed with the error, not left `running`
    (status, error), = job.sql("SELECT status, error FROM warehouse_batch.runs")
    assert status == "error" and "export: cannot write" in error
