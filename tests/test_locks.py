"""Locks (issue 10, item 1): a DuckDB file another process holds is waited for up to
`--lock-timeout`, then the command exits 75 ("busy", `"retryable": true`), never 2. The wait
runs on the injected clock: a test holds the lock in a subprocess and releases it from the
clock's sleep, so nothing here sleeps."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from warehouse_batch import api
from warehouse_batch.errors import BusyError

from helpers import Job, emulator_env

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
HOLD = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
        "sys.stdin.read()")


def _opts(job: Job, **kw) -> api.Options:
    return dataclasses.replace(job.options(), **kw)


class Holder:
    """Another process holding a DuckDB file read-write until `release()`."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class ReleasingClock:
    """A clock whose `sleep` only advances time, and releases the holder on its n-th call."""

    def __init__(self, holder: Holder | None, release_after: int) -> None:
        self.t, self.sleeps, self.holder, self.release_after = 0.0, [], holder, release_after

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        if self.holder is not None and len(self.sleeps) == self.release_after:
            self.holder.release()


def test_a_held_file_is_waited_for_and_the_command_then_goes_through(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    holder = Holder(job.db)
    try:
        clock = ReleasingClock(holder, release_after=3)
        report = api.plan(job.path, _opts(job, clock=clock, lock_timeout=60))
        assert report.requests_to_send == 12
        assert len(clock.sleeps) == 3 and clock.t < 60
    finally:
        holder.release()


def test_a_file_held_past_the_timeout_is_busy_with_its_holder(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    holder = Holder(job.db)
    try:
        clock = ReleasingClock(None, 0)
        with pytest.raises(BusyError) as e:
            api.run(job.path, _opts(job, clock=clock, lock_timeout=5))
        assert clock.t == pytest.approx(5) and e.value.exit_code == 75
        assert "busy" in str(e.value) and f"PID {holder.proc.pid}" in str(e.value)
        assert e.value.to_dict()["retryable"] is True
    finally:
        holder.release()
    assert emulator.admin("GET", "/_emulator/requests")["data"] == []   # nothing was sent


def test_cli_busy_exits_75_with_retryable_json(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    holder = Holder(job.db)
    try:
        for command in ("plan", "run", "status", "collect"):
            p = subprocess.run(EXE + [command, job.path, "--db", job.db, "--json",
                                      "--lock-timeout", "0"],
                               env=emulator_env(emulator), capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 75, (command, p.stderr)
            assert "is busy" in p.stderr and "Traceback" not in p.stderr
            report = json.loads(p.stdout)
            assert report["retryable"] is True and report["error"] == "BusyError"
            assert report["path"] == job.db
    finally:
        holder.release()


def test_ten_concurrent_runs_and_collects_beside_a_writer_exit_only_0_or_75(tmp_path,
                                                                           fast_emulator):
    """What a `dbt build` beside `warehouse-batch run` looks like: a writer holds the file
    while ten run/collect processes start; none of them exits 2 (or 1): each waits and goes
    through, or gives up with 75 (busy or pending). Every row is answered at the end, and
    nothing was paid twice."""
    job = Job(tmp_path, fast_emulator)
    job.run(wait=False)   # the first submit, so collect has a job to work on
    holder = Holder(job.db)
    env = emulator_env(fast_emulator)
    procs = []
    try:
        for i in range(10):
            command = "run" if i % 2 == 0 else "collect"
            procs.append(subprocess.Popen(
                EXE + [command, job.path, "--db", job.db, "-q", "--lock-timeout", "30"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        holder.release()   # the writer finishes while they wait
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    finally:
        holder.release()
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [code for code, _ in results]
    assert set(codes) <= {0, 75}, results
    final = subprocess.run(EXE + ["run", job.path, "--db", job.db, "-q", "--wait",
                                  "--poll-interval", "0.01"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(12,)]
    from helpers import billed_counts
    assert max(billed_counts(fast_emulator).values()) == 1


def test_a_poll_with_a_state_db_never_opens_the_warehouse(tmp_path, emulator):
    """With a state database, `collect`/`run`/`status` that find every batch still running
    do not touch the warehouse file: they go through while another process holds it."""
    job = Job(tmp_path, emulator)
    state_db = str(tmp_path / "state.duckdb")
    first = job.run(wait=False, state_db=state_db)
    assert first.exit_code == 75
    env = {**emulator_env(emulator), "WAREHOUSE_BATCH_STATE_DB": state_db}
    holder = Holder(job.db)
    try:
        for command in ("collect", "run", "status"):
            p = subprocess.run(EXE + [command, job.path, "--db", job.db, "--json",
                                      "--lock-timeout", "0"], env=env, capture_output=True,
                               text=True, timeout=120)
            assert p.returncode == 75 and "busy" not in p.stderr, (command, p.stderr)
            report = json.loads(p.stdout)
            assert report["rows"]["pending"] == 12, report
        # the library's own poll path does the same
        report = api.collect(job.path, job.options(state_db=state_db, lock_timeout=0))
        assert report.rows.pending == 12 and report.collected.batches_in_progress == 1
        status = api.status(job.path, job.options(state_db=state_db, lock_timeout=0))
        assert status.rows.pending == 12 and status.batches[0]["total"] == 12
    finally:
        holder.release()


def test_a_poll_finds_a_state_db_named_only_in_the_job_file(tmp_path, emulator):
    """`state_db` in the job's config, nothing on the command line: the CLI's cheap poll
    finds the state file without parsing the job (it imports no parser) and still never
    opens the warehouse, which another process holds."""
    job = Job(tmp_path, emulator)
    job.write(extra=", state_db='state.duckdb'")
    env = emulator_env(emulator)
    first = subprocess.run(EXE + ["run", job.path, "--db", job.db, "-q"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 75, first.stderr
    assert (tmp_path / "state.duckdb").exists()
    holder = Holder(job.db)
    try:
        for command in ("collect", "run", "status"):
            p = subprocess.run(EXE + [command, job.path, "--db", job.db, "--json",
                                      "--lock-timeout", "0"], env=env, capture_output=True,
                               text=True, timeout=120)
            assert p.returncode == 75 and "busy" not in p.stderr, (command, p.stderr)
            assert json.loads(p.stdout)["rows"]["pending"] == 12
    finally:
        holder.release()
