"""The CLI as a user runs it: real subprocesses, real DuckDB files, the emulator on loopback.
Covers crash safety (SIGKILL at each ledger step) and the errors that must send nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helpers import billed_counts, emulator_env, provider_calls, write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def make_job(tmp_path: Path, rows: int = 8, config_extra: str = "",
             sql: str = "SELECT id, text FROM reviews") -> tuple[str, str]:
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE OR REPLACE TABLE reviews AS SELECT range AS id, "
                f"'review number ' || range AS text FROM range({rows})")
    con.close()
    job = write_job(tmp_path, "name='enriched', provider='openai', model='gpt-4.1-mini', "
                              "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20"
                    + config_extra, sql)
    return str(job), db


def cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def table(db: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT id, _status, response FROM enriched ORDER BY id").fetchall()
    finally:
        con.close()


def test_run_json_and_exit_codes(tmp_path, fast_emulator):
    job, db = make_job(tmp_path)
    env = emulator_env(fast_emulator)
    plan = cli(["plan", job, "--db", db, "--json"], env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["requests_to_send"] == 8
    sub = cli(["submit", job, "--db", db, "--json", "-q"], env)
    assert sub.returncode == 0 and json.loads(sub.stdout)["submitted"]["requests_submitted"] == 8
    st = cli(["status", job, "--db", db, "--json"], env)
    report = json.loads(st.stdout)
    assert st.returncode == 75 and report["rows"]["pending"] == 8
    assert report["batches"][0]["provider_status"] == "completed"
    col = cli(["collect", job, "--db", db, "--json"], env)
    assert col.returncode == 0, col.stderr
    assert json.loads(col.stdout)["rows"]["succeeded"] == 8
    assert all(r[1] == "succeeded" and r[2] for r in table(db))


def test_help_lists_every_command():
    out = subprocess.run(EXE + ["--help"], capture_output=True, text=True).stdout
    for command in ("plan", "submit", "status", "collect", "run", "cancel", "reconcile",
                    "report", "check", "emulator"):
        assert command in out
    assert "75" in out


def reference_table(tmp_path: Path) -> list[tuple]:
    """The output table of the same job run with no crash, on a separate emulator and file."""
    from warehouse_batch.emulator import EmulatorConfig, start

    ref = tmp_path / "reference"
    ref.mkdir()
    with start(EmulatorConfig(port=0, clock="manual", validate_seconds=0, process_seconds=0,
                              finalize_seconds=0)) as emu:
        job, db = make_job(ref)
        assert cli(["run", job, "--db", db, "-q"], emulator_env(emu)).returncode == 0
    return table(db)


@pytest.mark.parametrize("state_db", [False, True], ids=["state-in-warehouse", "state-db"])
@pytest.mark.parametrize("point", ["after_intent", "after_upload_unrecorded", "after_upload",
                                   "after_create", "during_collect", "after_collect_commit"])
def test_sigkill_anywhere_then_run_finishes_without_paying_twice(tmp_path, fast_emulator, point,
                                                                 state_db):
    job, db = make_job(tmp_path)
    env = emulator_env(fast_emulator)
    if state_db:   # the ledger in its own file: the same crash safety
        env["WAREHOUSE_BATCH_STATE_DB"] = str(tmp_path / "state.duckdb")
    crashed = cli(["run", job, "--db", db], {**env, "WAREHOUSE_BATCH_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    done = cli(["run", job, "--db", db, "--wait", "--poll-interval", "0.01"], env)
    assert done.returncode == 0, done.stderr
    assert [r[1] for r in table(db)] == ["succeeded"] * 8
    assert table(db) == reference_table(tmp_path)   # the same table as with no crash
    billed = billed_counts(fast_emulator)
    assert len(billed) == 8 and max(billed.values()) == 1
    creates = [c for c in provider_calls(fast_emulator, "POST", "/v1/batches")
               if not c["path"].endswith("/cancel")]
    uploads = provider_calls(fast_emulator, "POST", "/v1/files")
    assert len(creates) == 1 and len(uploads) == 1
    if state_db:   # the warehouse holds the output table only; the state file the ledger
        con = duckdb.connect(db, read_only=True)
        assert con.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = "
                           "'warehouse_batch'").fetchone() == (0,)
        con.close()
        con = duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True)
        assert con.execute("SELECT DISTINCT state FROM batches").fetchall() == [("collected",)]
        con.close()


BAD_INPUTS = {
    "not a select": ("", "DELETE FROM reviews", "not a SELECT", 2),
    "two statements": ("", "SELECT id, text FROM reviews; SELECT 1", "2 SQL statements", 2),
    "unknown variable": (", system='s'", "SELECT id, text AS body FROM reviews",
                         "{{ text }}", 2),
    "missing key column": ("", "SELECT id AS rid, text FROM reviews", "unique_key column 'id'",
                           2),
    "null key": ("", "SELECT CASE WHEN id = 3 THEN NULL ELSE id END AS id, text FROM reviews",
                 "NULL", 2),
    "duplicate keys": ("", "SELECT id % 2 AS id, text FROM reviews", "not unique", 2),
    "malformed config": (", max_tokens=", "SELECT id, text FROM reviews", "config block", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_nothing_is_sent(tmp_path, fast_emulator, case):
    extra, sql, message, code = BAD_INPUTS[case]
    job, db = make_job(tmp_path, config_extra=extra, sql=sql)
    result = cli(["run", job, "--db", db], emulator_env(fast_emulator))
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "job.sql" in result.stderr
    assert provider_calls(fast_emulator) == []


@pytest.mark.parametrize("variable,value", [
    ("WAREHOUSE_BATCH_MEMORY_LIMIT", "lots"), ("WAREHOUSE_BATCH_LOCK_TIMEOUT", "-1"),
    ("WAREHOUSE_BATCH_DAILY_BUDGET_USD", "free")])
def test_a_bad_setting_in_the_environment_is_named_and_nothing_is_sent(
        tmp_path, fast_emulator, variable, value):
    job, db = make_job(tmp_path)
    for command in ("plan", "run"):
        result = cli([command, job, "--db", db], {**emulator_env(fast_emulator), variable: value})
        assert result.returncode == 2, (command, result.stderr)
        assert f"${variable}" in result.stderr and "Traceback" not in result.stderr
    assert provider_calls(fast_emulator) == []


def test_missing_api_key_sends_nothing(tmp_path, fast_emulator):
    job, db = make_job(tmp_path)
    env = emulator_env(fast_emulator)
    del env["OPENAI_API_KEY"]
    result = cli(["run", job, "--db", db], env)
    assert result.returncode == 3 and "OPENAI_API_KEY" in result.stderr
    assert provider_calls(fast_emulator) == []
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM warehouse_batch.batches").fetchone() == (0,)


def test_unreachable_base_url_sends_nothing(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    job, db = make_job(tmp_path)
    env = {**os.environ, "OPENAI_API_KEY": "x", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    result = cli(["run", job, "--db", db], env)
    assert result.returncode == 3, result.stderr
    assert "cannot reach" in result.stderr and str(port) in result.stderr
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM warehouse_batch.batches").fetchone() == (0,)


def test_reconcile_adopts_a_lost_create_and_sends_no_new_work(tmp_path, fast_emulator):
    job, db = make_job(tmp_path)
    env = emulator_env(fast_emulator)
    crashed = cli(["run", job, "--db", db], {**env, "WAREHOUSE_BATCH_CRASH_AT": "after_create"})
    assert crashed.returncode == -signal.SIGKILL
    con = duckdb.connect(db)
    con.execute("INSERT INTO reviews VALUES (100, 'a row added after the crash')")
    con.close()
    rec = cli(["reconcile", job, "--db", db, "--json"], env)
    report = json.loads(rec.stdout)
    assert report["submitted"]["batches_resumed"] == 1, rec.stderr
    assert report["submitted"]["requests_submitted"] == 8     # the adopted batch, not new work
    assert report["rows"] == {"rows": 9, "succeeded": 8, "failed": 0, "pending": 1}
    assert rec.returncode == 75
    creates = [c for c in provider_calls(fast_emulator, "POST", "/v1/batches")
               if not c["path"].endswith("/cancel")]
    assert len(creates) == 1


def test_cancel_and_status_json(tmp_path):
    from warehouse_batch.emulator import EmulatorConfig, start

    with start(EmulatorConfig(port=0, clock="manual", process_seconds=600)) as emu:
        job, db = make_job(tmp_path)
        env = emulator_env(emu)
        assert cli(["submit", job, "--db", db, "-q"], env).returncode == 0
        st = json.loads(cli(["status", job, "--db", db, "--json"], env).stdout)
        assert st["batches"][0]["state"] == "submitted" and st["rows"]["pending"] == 8
        cancelled = cli(["cancel", job, "--db", db, "--json"], env)
        assert cancelled.returncode == 0 and len(json.loads(cancelled.stdout)["cancelled"]) == 1
        emu.advance(3600)
        col = cli(["collect", job, "--db", db, "--json"], env)
        report = json.loads(col.stdout)
        assert report["collected"]["not_processed"] == 8 and col.returncode == 75


def test_emulator_command_serves_the_sdk_and_stops_on_sigterm(tmp_path):
    import openai

    proc = subprocess.Popen(EXE + ["emulator", "--port", "0", "--latency", "0",
                                   "--state-dir", str(tmp_path / "emu")],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].strip()
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        f = client.files.create(file=("in.jsonl", b'{"custom_id":"a","method":"POST",'
                                      b'"url":"/v1/chat/completions","body":{"model":"m",'
                                      b'"messages":[{"role":"user","content":"hi"}]}}\n'),
                                purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        assert client.batches.retrieve(batch.id).status == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0   # a clean shutdown, not a kill
