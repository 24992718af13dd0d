"""JSON reports pipelines can use (issue 10, item 7): every `--json` report carries the exit
code, elapsed seconds, the job's cost so far and timezone-aware timestamps; `status` shows
each batch's completed/failed/total requests as the provider reported them."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from helpers import Job, emulator_env

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _cli(job: Job, *args: str) -> tuple[int, dict]:
    p = subprocess.run(EXE + [*args[:1], job.path, "--db", job.db, "--json", "-q", *args[1:]],
                       env=emulator_env(job.emu), capture_output=True, text=True, timeout=120)
    return p.returncode, json.loads(p.stdout)


def _check_envelope(code: int, report: dict) -> None:
    assert report["exit_code"] == code
    started = dt.datetime.fromisoformat(report["started_at"])
    finished = dt.datetime.fromisoformat(report["finished_at"])
    assert started.tzinfo is not None and finished.tzinfo is not None
    assert started <= finished
    assert 0 <= report["elapsed_seconds"] <= (finished - started).total_seconds() + 0.01
    assert "cost_usd" in report


def test_every_json_report_has_exit_code_timing_and_cost(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    code, plan = _cli(job, "plan")
    _check_envelope(code, plan)
    assert code == 0 and plan["cost_usd"] == 0.0
    code, run = _cli(job, "run")
    _check_envelope(code, run)
    assert code == 75 and run["status"] == "pending"
    code, status = _cli(job, "status")
    _check_envelope(code, status)
    (batch,) = status["batches"]
    assert (batch["completed"], batch["failed"], batch["total"]) == (0, 0, 12)
    emulator.advance(3600)   # the batch ends
    code, collect = _cli(job, "collect")
    _check_envelope(code, collect)
    assert code == 0 and collect["cost_usd"] > 0   # gpt-4.1-mini is priced
    code, status = _cli(job, "status")
    (batch,) = status["batches"]
    assert (batch["completed"], batch["failed"], batch["total"]) == (12, 0, 12)
    assert status["cost_usd"] == collect["cost_usd"]
    assert dt.datetime.fromisoformat(batch["collected_at"]).tzinfo is not None
    code, cancel = _cli(job, "cancel")
    _check_envelope(code, cancel)


def test_an_error_report_has_the_same_fields(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    code, report = _cli(job, "collect", "--db", str(tmp_path / "typo.duckdb"))
    _check_envelope(code, report)
    assert code == 2 and report["error"] == "MissingDatabaseError"
    assert str(tmp_path / "typo.duckdb") in report["message"]


def test_progress_reads_each_providers_counts():
    from warehouse_batch.pollpath import progress

    assert progress({"total": 10, "completed": 7, "failed": 1}, 10) == \
        {"completed": 7, "failed": 1, "total": 10}
    assert progress({"processing": 2, "succeeded": 5, "errored": 1, "canceled": 1,
                     "expired": 1}, 10) == {"completed": 5, "failed": 3, "total": 10}
    assert progress(None, 10) == {"completed": None, "failed": None, "total": 10}
