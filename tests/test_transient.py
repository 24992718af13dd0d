"""Transient provider trouble and the per-command attempt budget (issue 8, items 2-4).

* 429s (with `retry-after`), 5xx, timeouts and dropped connections on any call back off and
  carry on inside `run --wait`; without `--wait` the command exits 75 with the reason.
* `max_attempts` bounds the sends of a request within one command: the next command sends a
  retryable failure again; permanent failures wait for `--retry-failed`.
* The output table is written, pending rows included, even when a pass stops on an error.

Time is the emulator's manual clock (`EmulatorClock`): nothing here sleeps.
"""
from __future__ import annotations

import email.utils
import random
import subprocess
import sys
import time

import duckdb
import pytest

from helpers import Job, billed_counts, creates, emulator_env, provider_calls, write_job
from warehouse_batch import api
from warehouse_batch.clock import Backoff
from warehouse_batch.providers.base import MAX_RETRY_AFTER, retry_after_seconds

PROVIDERS = pytest.mark.parametrize("provider, model", [
    ("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash")])


def _statuses(emu, method: str, path_prefix: str) -> list[int]:
    return [c["status"] for c in provider_calls(emu, method, path_prefix)]


# -- transient trouble inside run --wait ---------------------------------------------------------

@pytest.mark.parametrize("provider, model", [
    ("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5"),
    ("azure_openai", "gpt-4o-mini-batch"), ("gemini", "gemini-2.5-flash")])
def test_rate_limited_creates_and_flaky_requests_end_with_every_row_succeeded(
        tmp_path, emulator, provider, model):
    emulator.admin("POST", "/_emulator/config", {"create_429_rate": 0.5, "create_retry_after": 20,
                                                 "failure_rate": 0.1})
    messages: list[str] = []
    azure = ({"AZURE_OPENAI_ENDPOINT": emulator.azure_endpoint, "AZURE_OPENAI_API_KEY": "k"}
             if provider == "azure_openai" else {})
    # max_attempts=5: at a 10% failure rate a row fails 3 sends in a row once in 1,000 (and
    # then ends failed for this command, to be sent by the next); 5 makes that 1 in 100,000
    job = Job(tmp_path, emulator, rows=40, provider=provider, model=model,
              extra=", batch_max_requests=8, max_attempts=5", **azure)

    report = job.run(log=messages.append)

    assert report.exit_code == 0 and report.rows.succeeded == 40, report.to_dict()
    statuses = [c["status"] for c in creates(emulator)]
    assert statuses.count(429) > 0 and statuses.count(200) >= 5   # 5 chunks, some retried
    assert report.transient_errors == statuses.count(429)
    # the 429's retry-after (20 s) was honoured, not the 2 s trouble backoff
    waits = [float(m.split("trying again in ")[1].rstrip("s")) for m in messages
             if "trying again in" in m]
    assert waits and min(waits) >= 20
    billed = billed_counts(emulator)
    assert len(billed) == 40 and max(billed.values()) == 1   # nothing paid twice
    assert job.sql("SELECT count(*) FROM warehouse_batch.attempts "
                   "WHERE outcome = 'errored'")[0][0] > 0   # the 10% did fail, and went again
    # a 429 is not an ambiguous create: no batch is created twice, none is abandoned
    assert job.sql("SELECT DISTINCT state FROM warehouse_batch.batches") == [("collected",)]


# The first poll asks twice (a plain GET, then the SDK: lightpoll), so 3 failed GETs make
# 2 failed polls.
FAULTS = {
    "openai": [{"method": "GET", "path": "/v1/batches/*", "status": 503, "count": 3,
                "x_should_retry": False},
               {"method": "GET", "path": "/v1/files/*/content", "status": 429, "count": 1,
                "retry_after": 45, "x_should_retry": False}],
    "anthropic": [{"method": "GET", "path": "/v1/messages/batches/*", "status": 529,
                   "count": 3, "x_should_retry": False},
                  {"method": "GET", "path": "/v1/messages/batches/*/results", "status": 429,
                   "count": 1, "retry_after": 45, "x_should_retry": False}],
    "gemini": [{"method": "GET", "path": "/v1beta/batches/*", "status": 503, "count": 3},
               {"method": "GET", "path": "/v1beta/files/*:download", "status": 429, "count": 1,
                "retry_after": 45}],
}


@PROVIDERS
def test_poll_and_download_trouble_mid_run_is_waited_out(tmp_path, emulator, provider, model):
    job = Job(tmp_path, emulator, provider=provider, model=model)
    api.submit(job.path, job.options())
    for fault in FAULTS[provider]:
        emulator.admin("POST", "/_emulator/faults", fault)
    messages: list[str] = []

    report = job.run(log=messages.append)

    assert report.exit_code == 0 and report.rows.succeeded == 12, report.to_dict()
    assert report.transient_errors == 3 and report.stopped is None
    assert emulator.admin("GET", "/_emulator/faults")["data"] == []   # every fault was hit
    assert any("trying again in" in m and "429" in m for m in messages)
    assert job.sql("SELECT status, error FROM warehouse_batch.runs WHERE command = 'run'") \
        == [("succeeded", None)]


def test_a_retry_after_on_create_is_honoured_by_the_next_pass(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/faults", {"method": "POST", "path": "/v1/batches",
                                                 "status": 429, "retry_after": 300})
    job = Job(tmp_path, emulator)

    report = job.run()

    assert report.exit_code == 0 and report.rows.succeeded == 12
    limited, created = creates(emulator)
    assert (limited["status"], created["status"]) == (429, 200)
    assert created["time"] - limited["time"] >= 300   # not the 2 s trouble backoff
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches") == [(1,)]


def test_a_pass_cut_short_is_followed_by_a_full_pass_not_just_a_poll(tmp_path, emulator):
    """New rows whose submit was cut short by trouble go at the next pass, not only once a
    running batch ends."""
    job = Job(tmp_path, emulator)
    api.submit(job.path, job.options())
    job.sql("INSERT INTO reviews SELECT range + 100, 'new text ' || range FROM range(3)")
    emulator.admin("POST", "/_emulator/faults", {"method": "GET", "path": "/v1/batches",
                                                 "status": 503, "x_should_retry": False})

    report = job.run()

    assert report.exit_code == 0 and report.rows.succeeded == 15
    first, second = creates(emulator)
    (fault,) = [c for c in provider_calls(emulator, "GET", "/v1/batches") if c["status"] == 503]
    assert second["time"] - fault["time"] < 60   # the first batch takes 70 s to end


# -- without --wait: exit 75, the reason, and the table ------------------------------------------

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)


def _job_file(tmp_path, provider: str = "openai", rows: int = 6, extra: str = ""):
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute(f"CREATE OR REPLACE TABLE reviews AS SELECT range AS id, 'review ' || range "
                f"AS text FROM range({rows})")
    con.close()
    model = "gpt-4.1-mini" if provider == "openai" else "claude-haiku-4-5"
    job = write_job(tmp_path, f"name='enriched', provider='{provider}', model='{model}', "
                              "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20"
                    + extra, "SELECT id, text FROM reviews")
    return str(job), db


def _table(db: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT id, _status, _failure FROM enriched ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_rate_limited_create_exits_75_with_the_reason_and_a_pending_table(
        tmp_path, fast_emulator, provider, command):
    fast_emulator.admin("POST", "/_emulator/config", {"create_429_rate": 1.0})
    job, db = _job_file(tmp_path, provider)
    env = emulator_env(fast_emulator)

    stopped = _cli([command, job, "--db", db], env)

    assert stopped.returncode == 75, stopped.stderr
    assert "429" in stopped.stderr and "rate limit" in stopped.stderr.lower()
    assert "transient" in stopped.stderr and "error:" not in stopped.stderr
    assert _table(db) == [(i, "pending", None) for i in range(6)]   # written, all pending
    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT status, error LIKE '%429%' FROM warehouse_batch.runs").fetchall() \
        == [("pending", True)]
    con.close()

    fast_emulator.admin("POST", "/_emulator/config", {"create_429_rate": 0.0})
    done = _cli(["run", job, "--db", db, "--json"], env)
    assert done.returncode == 0, done.stderr
    assert [s for _, s, _ in _table(db)] == ["succeeded"] * 6


def test_transient_trouble_on_any_call_exits_75_never_3(tmp_path, fast_emulator):
    job, db = _job_file(tmp_path)
    env = emulator_env(fast_emulator)
    assert _cli(["submit", job, "--db", db], env).returncode == 0
    for command in ("collect", "status", "run"):
        # a poll asks up to three times: the CLI's plain GET (pollpath), the library's
        # (lightpoll), then the SDK, whose failure is the one reported
        fast_emulator.admin("POST", "/_emulator/faults", {
            "method": "GET", "path": "/v1/batches/*", "status": 500, "count": 3,
            "x_should_retry": False})
        p = _cli([command, job, "--db", db, "--json"], env)
        assert p.returncode == 75, (command, p.stderr)
        assert "HTTP 500" in p.stderr and "transient" in p.stderr
    assert _table(db) == [(i, "pending", None) for i in range(6)]
    assert _cli(["run", job, "--db", db], env).returncode == 0


def test_a_refused_key_still_exits_3(tmp_path, fast_emulator):
    job, db = _job_file(tmp_path)
    p = _cli(["run", job, "--db", db], emulator_env(fast_emulator, OPENAI_API_KEY="sk-wrong-x"))
    assert p.returncode == 3 and "refused the API key" in p.stderr


# -- attempts are a per-command budget -----------------------------------------------------------

@PROVIDERS
def test_retryable_failures_that_used_max_attempts_are_sent_again_by_the_next_run(
        tmp_path, emulator, provider, model):
    job = Job(tmp_path, emulator, rows=6, provider=provider, model=model,
              extra=", max_attempts=2")
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 1.0})

    first = job.run()

    assert first.exit_code == 4 and first.rows.failed == 6   # bounded within the command
    assert job.sql("SELECT DISTINCT _status, _failure, _attempts FROM enriched") \
        == [("failed", "retryable", 2)]
    assert api.plan(job.path, job.options()).rows_retry == 6
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 0.0})

    second = job.run()

    assert second.exit_code == 0 and second.rows.succeeded == 6
    assert second.submitted.requests_submitted == 6
    assert job.sql("SELECT DISTINCT _status, _failure, _attempts FROM enriched") \
        == [("succeeded", None, 3)]


def test_each_command_spends_at_most_max_attempts_on_a_request(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=3, extra=", max_attempts=2")
    job.sql("UPDATE reviews SET text = 'flaky [[emu:error500]]' WHERE id = 2")
    for run in (1, 2):
        report = job.run()
        assert report.exit_code == 4 and report.rows.failed == 1
        assert job.sql("SELECT failures, run_failures FROM warehouse_batch.results "
                       "WHERE status = 'failed'") == [(2 * run, 2)]


def test_a_collect_after_the_budget_is_spent_shows_the_row_pending(tmp_path, emulator):
    """The row failed for the run that spent its attempts; for any later command it is work
    still to do (the next submit sends it)."""
    job = Job(tmp_path, emulator, rows=3, extra=", max_attempts=1")
    job.sql("UPDATE reviews SET text = 'flaky [[emu:error500]]' WHERE id = 2")
    assert job.run().exit_code == 4
    later = api.collect(job.path, job.options())
    assert later.exit_code == 75 and later.rows.pending == 1
    assert job.sql("SELECT _status, _failure FROM enriched WHERE id = 2") \
        == [("pending", "retryable")]
    assert api.status(job.path, job.options()).rows.pending == 1


@PROVIDERS
def test_permanent_failures_wait_for_retry_failed(tmp_path, emulator, provider, model):
    job = Job(tmp_path, emulator, rows=4, provider=provider, model=model)
    job.sql("UPDATE reviews SET text = 'too long [[emu:error400]]' WHERE id = 3")
    assert job.run().exit_code == 4
    assert job.sql("SELECT _status, _failure FROM enriched WHERE id = 3") \
        == [("failed", "permanent")]
    assert job.run().submitted.requests_submitted == 0   # stays failed
    assert api.plan(job.path, job.options(retry_failed=True)).rows_retry == 1

    again = job.run(retry_failed=True)

    assert again.submitted.requests_submitted == 1   # sent once more, and only once
    assert again.exit_code == 4 and job.sql(
        "SELECT _status, _failure, _attempts FROM enriched WHERE id = 3") \
        == [("failed", "permanent", 2)]


def test_retry_failed_flag_on_the_command_line(tmp_path, fast_emulator):
    job, db = _job_file(tmp_path, rows=3)
    con = duckdb.connect(db)
    con.execute("UPDATE reviews SET text = 'bad [[emu:error400]]' WHERE id = 1")
    con.close()
    env = emulator_env(fast_emulator)
    assert _cli(["run", job, "--db", db], env).returncode == 4
    n = len(creates(fast_emulator))
    assert _cli(["run", job, "--db", db], env).returncode == 4
    assert len(creates(fast_emulator)) == n
    assert _cli(["run", job, "--db", db, "--retry-failed"], env).returncode == 4
    assert len(creates(fast_emulator)) == n + 1
    assert _table(db)[1] == (1, "failed", "permanent")


# -- units: retry-after and the backoff ------------------------------------------------------------

def test_retry_after_headers_are_read_as_the_sdks_read_them():
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < retry_after_seconds({"retry-after": date}) <= 120
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    assert retry_after_seconds({"retry-after": "-5"}) == 0.0
    assert retry_after_seconds({"retry-after": "999999"}) == MAX_RETRY_AFTER


def test_backoff_never_waits_less_than_retry_after():
    b = Backoff(initial=2, factor=2, maximum=300, jitter=0.5, rng=random.Random(1))
    assert 2 <= b.delay_for(None) <= 3
    assert 60 <= b.delay_for(60) <= 90
    assert 8 <= b.delay_for(1) <= 12   # the backoff still grows when retry-after is short


def test_the_emulator_knob_is_checked():
    from warehouse_batch.emulator import EmulatorConfig

    cfg = EmulatorConfig()
    for bad in ({"create_429_rate": 1.5}, {"create_429_rate": -0.1},
                {"create_retry_after": "soon"}):
        with pytest.raises(ValueError):
            cfg.update(bad)
    cfg.update({"create_429_rate": 0.5, "create_retry_after": 2})
    assert (cfg.create_429_rate, cfg.create_retry_after) == (0.5, 2.0)
