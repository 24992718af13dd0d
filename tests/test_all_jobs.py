"""`collect --all` and `run --all` (issue 11, item 7): one scheduled command acts on every job
a state database knows; a job whose file moved is reported, the others still run; the exit
code is the worst of the jobs' (as for any set of jobs)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from helpers import emulator_env, write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def two_jobs(tmp_path: Path) -> tuple[str, str, str]:
    """Two jobs in two folders over one warehouse, each with its own output table."""
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'review number ' || range AS text "
                "FROM range(5)")
    con.close()
    paths = []
    for folder, name in (("a", "labels_a"), ("b", "labels_b")):
        (tmp_path / folder).mkdir()
        paths.append(str(write_job(tmp_path / folder,
                                   f"name='{name}', provider='openai', model='gpt-4.1-mini', "
                                   f"unique_key='id', prompt='{folder}: {{{{ text }}}}', "
                                   "max_tokens=20", "SELECT id, text FROM reviews",
                                   name=f"{name}.sql")))
    return db, paths[0], paths[1]


def test_collect_all_collects_every_known_job(tmp_path, fast_emulator):
    db, a, b = two_jobs(tmp_path)
    env = emulator_env(fast_emulator, WAREHOUSE_BATCH_STATE_DB=str(tmp_path / "state.duckdb"))
    for job in (a, b):
        assert cli(["submit", job, "--db", db, "-q"], env).returncode == 0
    p = cli(["collect", "--all", "--db", db, "--json"], env, cwd=tmp_path / "a")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["command"] == "collect" and out["exit_code"] == 0
    assert [(Path(j["file"]).name, j["exit_code"]) for j in out["jobs"]] == \
        [("labels_a.sql", 0), ("labels_b.sql", 0)]
    assert all(j["report"]["rows"]["succeeded"] == 5 for j in out["jobs"])
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM labels_a WHERE _status = 'succeeded'").fetchone() \
        == con.execute("SELECT count(*) FROM labels_b WHERE _status = 'succeeded'").fetchone() \
        == (5,)
    con.close()


def test_run_all_exits_with_the_worst_code_and_reports_a_moved_file(tmp_path, emulator):
    db, a, b = two_jobs(tmp_path)
    env = emulator_env(emulator)
    assert cli(["submit", a, "--db", db, "-q"], env).returncode == 0
    emulator.advance(3600)   # job a's batch ends
    assert cli(["collect", a, "--db", db, "-q"], env).returncode == 0
    assert cli(["submit", b, "--db", db, "-q"], env).returncode == 0   # b's batch runs
    p = cli(["run", "--all", "--db", db, "--json"], env)
    out = json.loads(p.stdout)
    assert [j["exit_code"] for j in out["jobs"]] == [0, 75]
    assert p.returncode == out["exit_code"] == 75, p.stderr
    # job a's file moves: it is reported (exit 2, the worst), job b is still collected
    moved = Path(a).with_name("renamed.sql")
    Path(a).rename(moved)
    emulator.advance(3600)
    p = cli(["collect", "--all", "--db", db, "--json"], env)
    out = json.loads(p.stdout)
    assert p.returncode == out["exit_code"] == 2
    first, second = out["jobs"]
    assert first["file"] == a and first["exit_code"] == 2
    assert "no longer exists: it was moved, renamed or deleted" in first["error"]["message"]
    assert "UPDATE warehouse_batch.outputs SET job_file" in first["error"]["hint"]
    assert second["exit_code"] == 0 and second["report"]["rows"]["succeeded"] == 5
    assert f"{a}" in p.stderr and "no longer exists" in p.stderr
    # handed over as the hint says, the job is known again under its new path
    con = duckdb.connect(db)
    con.execute("UPDATE warehouse_batch.outputs SET job_file = ? WHERE job_file = ?",
                [str(moved), a])
    con.close()
    p = cli(["collect", "--all", "--db", db, "--json", "--exclude", "labels_b"], env)
    assert p.returncode == 0, p.stderr
    assert [j["file"] for j in json.loads(p.stdout)["jobs"]] == [str(moved)]


def test_all_needs_a_state_and_no_paths(tmp_path, fast_emulator):
    db, a, _ = two_jobs(tmp_path)
    env = emulator_env(fast_emulator)
    missing = cli(["collect", "--all", "--db", str(tmp_path / "nope.duckdb")], env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    empty = cli(["collect", "--all", "--db", db, "--json"], env)   # no state in it yet
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["jobs"] == []
    assert "knows no job yet" in empty.stderr
    con = duckdb.connect(db, read_only=True)   # looking created no state
    assert con.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = "
                       "'warehouse_batch'").fetchone() == (0,)
    con.close()
    both = cli(["run", a, "--all", "--db", db], env)
    assert both.returncode == 2 and "give job files or --all, not both" in both.stderr
