"""Many jobs in one command (issue 10, item 5): folders, globs and several paths, each job in
turn, one exit code and one JSON report; --select/--exclude; sets refused before anything
runs. Real CLI subprocesses against the emulator."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helpers import emulator_env, provider_calls, write_job
from warehouse_batch.errors import (EXIT_FAILED_ROWS, EXIT_INTERNAL, EXIT_OK, EXIT_PENDING,
                                    EXIT_PROVIDER, EXIT_USER)
from warehouse_batch.jobset import most_severe

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
REPO = Path(__file__).resolve().parent.parent


def cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def make_db(tmp_path: Path, rows: int = 5) -> str:
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE OR REPLACE TABLE reviews AS SELECT range AS id, "
                f"'review number ' || range AS text FROM range({rows})")
    con.close()
    return db


def job(folder: Path, name: str, extra: str = "", sql: str = "SELECT id, text FROM reviews",
        file: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_job(folder, f"name={name!r}, provider='openai', model='gpt-4.1-mini', "
                             "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20"
                     + extra, sql, name=file or f"{name}.sql")


def tables(db: str) -> set[str]:
    con = duckdb.connect(db, read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                          "WHERE schema_name = 'main'").fetchall()}
    finally:
        con.close()


def test_run_examples_reviews_runs_every_job_in_the_folder(tmp_path, fast_emulator):
    db = str(tmp_path / "shop.duckdb")
    r = cli(["run", str(REPO / "examples" / "reviews") + "/", "--db", db, "--wait",
             "--poll-interval", "0.1", "--json", "-q"], emulator_env(fast_emulator))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["command"] == "run" and report["exit_code"] == 0
    assert [Path(j["file"]).name for j in report["jobs"]] == [
        "review_embeddings.sql", "review_labels.sql", "review_sentiment.sql"]
    assert all(j["report"]["rows"]["succeeded"] == j["report"]["rows"]["rows"] > 0
               for j in report["jobs"])
    assert {"review_embeddings", "review_labels", "review_sentiment"} <= tables(db)


def test_a_folder_takes_only_the_job_files_directly_inside(tmp_path, fast_emulator):
    db = make_db(tmp_path)
    jobs = tmp_path / "enrich"
    job(jobs, "b_first")
    job(jobs, "a_second")
    (jobs / "model.sql").write_text("{{ config(materialized='table') }}\nSELECT 1\n")
    (jobs / "plain.sql").write_text("SELECT 1\n")
    (jobs / "prompt.j2").write_text("Summarise: {{ text }}")
    job(jobs / "nested", "nested_job")
    job(jobs, "hidden", file=".hidden.sql")
    r = cli(["run", str(jobs), "--db", db, "--json", "-q"], emulator_env(fast_emulator))
    assert r.returncode in (0, 75), r.stderr
    report = json.loads(r.stdout)
    assert [j["job"] for j in report["jobs"]] == ["a_second", "b_first"]   # sorted by file
    assert {Path(s["file"]).name for s in report["skipped"]} == {"model.sql", "plain.sql"}
    assert "no provider" in next(s["reason"] for s in report["skipped"]
                                 if s["file"].endswith("model.sql"))
    assert {"a_second", "b_first"} <= tables(db) and "nested_job" not in tables(db)
    assert "hidden" not in tables(db)


def test_quoted_globs_are_expanded_and_several_paths_run_in_order(tmp_path, fast_emulator):
    db = make_db(tmp_path)
    env = emulator_env(fast_emulator)
    for n in ("one", "two", "three"):
        job(tmp_path / "jobs", n)
    r = cli(["plan", str(tmp_path / "jobs" / "t*.sql"), str(tmp_path / "jobs" / "one.sql"),
             "--db", db, "--json"], env)
    assert r.returncode == 0, r.stderr
    assert [j["job"] for j in json.loads(r.stdout)["jobs"]] == ["three", "two", "one"]
    none = cli(["plan", str(tmp_path / "jobs" / "x*.sql"), "--db", db], env)
    assert none.returncode == EXIT_USER and "no file matches" in none.stderr
    missing = cli(["plan", str(tmp_path / "nope"), str(tmp_path / "jobs"), "--db", db], env)
    assert missing.returncode == EXIT_USER and "no such job file or folder" in missing.stderr


def test_two_jobs_writing_one_table_are_refused_before_anything_runs(tmp_path, fast_emulator):
    db = make_db(tmp_path)
    job(tmp_path / "jobs", "first", file="a.sql")
    second = job(tmp_path / "jobs", "W.main.First", file="b.sql")   # the same table
    before = tables(db)
    r = cli(["run", str(tmp_path / "jobs"), "--db", db], emulator_env(fast_emulator))
    assert r.returncode == EXIT_USER
    assert f"{second}:2:10:" in r.stderr and "both write the output table main.first" in r.stderr
    assert provider_calls(fast_emulator) == [] and tables(db) == before


def test_select_and_exclude_by_tag_and_name(tmp_path, fast_emulator):
    db = make_db(tmp_path)
    env = emulator_env(fast_emulator)
    jobs = tmp_path / "jobs"
    job(jobs, "reviews_sentiment", ", tags=['nightly']")
    job(jobs, "reviews_topics", ", tags=['nightly', 'slow']")
    job(jobs, "other")

    def planned(*args: str) -> list[str]:
        r = cli(["plan", str(jobs), "--db", db, "--json", *args], env)
        assert r.returncode == 0, r.stderr
        return [j["job"] for j in json.loads(r.stdout)["jobs"]]

    assert planned("--select", "tag:nightly") == ["reviews_sentiment", "reviews_topics"]
    assert planned("--select", "tag:nightly", "--exclude", "tag:slow") == ["reviews_sentiment"]
    assert planned("--select", "other", "--select", "reviews_t*") == ["other", "reviews_topics"]
    assert planned("--exclude", "reviews_*") == ["other"]
    typo = cli(["plan", str(jobs), "--db", db, "--select", "tag:nighty"], env)
    assert typo.returncode == EXIT_USER and "did you mean 'tag:nightly'" in typo.stderr
    one = cli(["plan", str(jobs / "other.sql"), "--db", db, "--select", "other", "--json"], env)
    assert one.returncode == 0 and json.loads(one.stdout)["jobs"][0]["job"] == "other"


def test_a_failing_job_does_not_stop_the_others_and_the_exit_code_is_the_worst(
        tmp_path, fast_emulator):
    db = make_db(tmp_path)
    jobs = tmp_path / "jobs"
    job(jobs, "a_good")
    job(jobs, "b_null_keys", sql="SELECT NULL::INT AS id, text FROM reviews")
    (jobs / "c_broken.sql").write_text("{{ config(name='c', provider='openai', modle='x') }}\n"
                                       "SELECT 1 AS id\n")
    job(jobs, "d_good")
    r = cli(["run", str(jobs), "--db", db, "--wait", "--poll-interval", "0.1", "--json", "-q"],
            emulator_env(fast_emulator))
    assert r.returncode == EXIT_USER, r.stderr
    report = json.loads(r.stdout)
    codes = {j["job"]: j["exit_code"] for j in report["jobs"]}
    assert codes == {"a_good": 0, "b_null_keys": 2, "c_broken": 2, "d_good": 0}
    broken = next(j for j in report["jobs"] if j["job"] == "c_broken")
    assert broken["error"]["location"]["line"] == 1 and "modle" in broken["error"]["message"]
    assert {"a_good", "d_good"} <= tables(db)
    assert "error: " + str(jobs / "c_broken.sql") in r.stderr


@pytest.mark.parametrize("codes, worst", [
    ([0, 4], EXIT_FAILED_ROWS), ([4, 75, 0], EXIT_PENDING), ([75, 3], EXIT_PROVIDER),
    ([3, 2, 75], EXIT_USER), ([2, 1], EXIT_INTERNAL), ([], EXIT_OK), ([0, 0], EXIT_OK)])
def test_the_most_severe_exit_code_wins(codes, worst):
    assert most_severe(codes) == worst


def test_a_pending_job_makes_the_set_pending(tmp_path, emulator):
    """The emulator's manual clock keeps the second job's batch running: exit 75."""
    db = make_db(tmp_path)
    env = emulator_env(emulator)
    jobs = tmp_path / "jobs"
    job(jobs, "done_one")
    assert cli(["submit", str(jobs / "done_one.sql"), "--db", db, "-q"], env).returncode == 0
    emulator.advance(3600)
    assert cli(["collect", str(jobs / "done_one.sql"), "--db", db, "-q"], env).returncode == 0
    job(jobs, "pending_one", ", system='Be brief.'")   # other requests: not cached
    r = cli(["run", str(jobs), "--db", db, "--json", "-q"], env)
    assert r.returncode == EXIT_PENDING, r.stderr
    assert [j["exit_code"] for j in json.loads(r.stdout)["jobs"]] == [0, EXIT_PENDING]


def test_vars_are_shared_each_job_takes_the_ones_it_uses(tmp_path, fast_emulator):
    db = make_db(tmp_path)
    env = emulator_env(fast_emulator)
    jobs = tmp_path / "jobs"
    job(jobs, "with_var", sql="SELECT id, text FROM reviews WHERE id < {{ var('n') }}")
    job(jobs, "without")
    r = cli(["plan", str(jobs), "--db", db, "--var", "n=2", "--json"], env)
    assert r.returncode == 0, r.stderr
    selected = {j["job"]: j["report"]["rows_selected"] for j in json.loads(r.stdout)["jobs"]}
    assert selected == {"with_var": 2, "without": 5}
    unused = cli(["plan", str(jobs), "--db", db, "--var", "m=2"], env)
    assert unused.returncode == EXIT_USER and "--var m is not used by any of the jobs" in \
        unused.stderr
