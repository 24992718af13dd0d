"""`check`'s budget and deadline alerts (issue 11, item 5): spend (billed + reserved) past 80%
of a job's budget or of the daily cap, and a job still pending past its `deadline`; silent on
a healthy run. Through the real CLI, over the state a real run leaves."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from helpers import Job, emulator_env
from warehouse_batch import api
from warehouse_batch.budget import parse_deadline
from warehouse_batch.errors import JobFileError

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def check(db: str, *args: str, env: dict | None = None) -> tuple[int, dict]:
    out = subprocess.run(EXE + ["check", "--db", db, "--json", *args], capture_output=True,
                         text=True, timeout=120, env=env)
    return out.returncode, json.loads(out.stdout)


def kinds(report: dict) -> list[str]:
    return sorted(a["kind"] for a in report["alerts"])


def plan_reservation(job: Job) -> float:
    out = subprocess.run(EXE + ["plan", job.path, "--db", job.db, "--json"],
                         capture_output=True, text=True, env=emulator_env(job.emu))
    return json.loads(out.stdout)["budget"]["reservation_usd"]


def test_spend_past_80_percent_of_a_job_budget_is_an_alert(tmp_path, emulator):
    job = Job(tmp_path, emulator, max_tokens=50)
    reservation = plan_reservation(job)
    job.write(extra=f", budget_usd={reservation / 0.9!r}", max_tokens=50)
    job.run(wait=False)                      # submitted: the worst case is reserved (90%)
    code, report = check(job.db)
    assert code == 5 and kinds(report) == ["budget"]
    (alert,) = report["alerts"]
    assert alert["job"] == "enriched" and alert["value"] == pytest.approx(0.9, abs=1e-3)
    assert "90% of the cap" in alert["message"] and "reserved" in alert["message"]
    text = subprocess.run(EXE + ["check", "--db", job.db], capture_output=True, text=True)
    assert text.returncode == 5 and "ALERT budget [enriched]" in text.stdout
    # collected: the reservation settles to what was billed, far below the alert line
    emulator.advance(3600)
    job.run(wait=False)
    (settled,), = job.sql("SELECT count(*) FROM warehouse_batch.batches "
                          "WHERE settled_at IS NOT NULL")
    assert settled == 1
    code, report = check(job.db)
    assert code == 0 and report["alerts"] == []


def test_spend_past_80_percent_of_the_daily_cap_is_an_alert(tmp_path, emulator):
    job = Job(tmp_path, emulator, max_tokens=50)
    reservation = plan_reservation(job)
    # submitted under a daily cap it fits (the command's day is the emulator's clock's)
    job.run(wait=False, daily_budget_usd=reservation * 1.1)
    (day,), = job.sql("SELECT DISTINCT budget_day FROM warehouse_batch.batches")
    # check counts the day of its own clock: the reservation was made on the emulator's day
    job.sql(f"UPDATE warehouse_batch.batches SET budget_day = "
            f"DATE '{dt.datetime.now(dt.timezone.utc).date()}'")
    code, report = check(job.db, "--daily-budget-usd", repr(reservation * 1.1))
    assert code == 5 and kinds(report) == ["daily_budget"]
    assert report["alerts"][0]["job"] == "all jobs"
    # without the flag, check takes the cap the latest submit used (recorded in the state)
    assert kinds(check(job.db)[1]) == ["daily_budget"]
    # the environment (or the project file) gives it too; a larger cap is not alarmed
    env = emulator_env(emulator, WAREHOUSE_BATCH_DAILY_BUDGET_USD=repr(reservation * 2))
    assert check(job.db, env=env)[0] == 0
    assert check(job.db, "--daily-budget-usd", repr(reservation * 1.3))[0] == 0
    # yesterday's spend does not count against today's cap
    job.sql("UPDATE warehouse_batch.batches SET budget_day = budget_day - 1")
    assert check(job.db)[0] == 0


def test_a_job_pending_past_its_deadline_is_an_alert(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", deadline='06:00'")
    job.run(wait=False)                      # submitted: every row pending, recorded now
    assert check(job.db)[0] == 0   # recorded after the last 06:00 UTC
    # the same rows, recorded by a run on the first of January: past the latest 06:00 UTC
    job.sql("UPDATE warehouse_batch.job_rows SET run_id = 'r20260101T000000_abcdef'")
    code, report = check(job.db)
    assert code == 5 and kinds(report) == ["deadline"]
    (alert,) = report["alerts"]
    assert alert["job"] == "enriched" and alert["value"] == 12
    assert "12 row(s) still pending" in alert["message"] and "06:00" in alert["message"]
    # an ISO instant: alarmed once it has passed, not before
    for deadline, expected in (("2099-01-01T00:00:00Z", 0), ("2026-06-01T08:00:00+02:00", 5)):
        job.write(extra=f", deadline={deadline!r}")
        api.submit(job.path, job.options())  # a submit records what the job file says now
        assert check(job.db)[0] == expected
    # once the rows are answered, nothing is pending: silent
    emulator.advance(3600)
    job.run(wait=False)
    assert check(job.db)[0] == 0


def test_check_is_silent_on_a_healthy_run_with_a_budget_and_a_deadline(tmp_path,
                                                                      fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", budget_usd=5, deadline='00:00'")
    report = job.run(wait=False, daily_budget_usd=5.0)
    assert report.rows.succeeded == 12
    code, health = check(job.db)
    assert code == 0 and health["alerts"] == []
    assert job.sql("SELECT budget_usd, deadline FROM warehouse_batch.job_budgets") == \
        [(5.0, "00:00")]


def test_deadlines_are_a_time_of_day_or_an_instant():
    now = dt.datetime(2026, 11, 30, 7, 30)
    daily = parse_deadline("06:00")
    assert daily.last_due(now) == dt.datetime(2026, 11, 30, 6, 0)
    assert daily.last_due(dt.datetime(2026, 11, 30, 5, 59)) == dt.datetime(2026, 11, 29, 6)
    assert parse_deadline("6:05:30").time_of_day == dt.time(6, 5, 30)
    instant = parse_deadline("2026-11-30T08:00:00+01:00")
    assert instant.instant == dt.datetime(2026, 11, 30, 7, 0)       # UTC
    assert instant.last_due(now) == dt.datetime(2026, 11, 30, 7, 0)
    assert parse_deadline("2026-12-01T06:00Z").last_due(now) is None
    assert parse_deadline("2026-12-01 06:00").instant == dt.datetime(2026, 12, 1, 6)
    for bad in ("24:00", "06:60", "soon", "", 6):
        with pytest.raises(JobFileError):
            parse_deadline(bad)
