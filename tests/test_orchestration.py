"""`integrations.standing`: where a job stands, as the Dagster sensor and the Airflow trigger
see it (the orchestrators themselves are tested in tests/integrations/)."""
from __future__ import annotations

import pytest

from helpers import Job
from warehouse_batch import api
from warehouse_batch.errors import (EXIT_PENDING, ProviderError, ProviderErrorInfo, StateError,
                                    UnreachableError, WarehouseBatchError)
from warehouse_batch.integrations import standing
from warehouse_batch.integrations.standing import (DONE, NOT_STARTED, READY, RUNNING, later,
                                                   look)


@pytest.fixture(params=["cheap poll", "full look"])
def way(request, monkeypatch):
    """Each case both ways: through the CLI's cheap poll, and with it unable to decide."""
    if request.param == "full look":
        monkeypatch.setattr(standing, "try_poll", lambda req: None)
    return request.param


def test_a_job_from_not_started_to_done(tmp_path, emulator, way):
    job = Job(tmp_path, emulator, rows=5)
    options = job.options()
    assert look(job.path, options).state == NOT_STARTED
    api.submit(job.path, options)
    first = look(job.path, options)
    assert (first.state, first.batches_in_flight) == (RUNNING, 1)
    assert first.rows.pending == 5
    assert len(first.statuses) == 1 and set(first.statuses.values()) <= {
        "validating", "in_progress", "finalizing"}   # the provider's own word
    emulator.advance(3600)
    ready = look(job.path, options)
    assert ready.state == READY and "ended" in ready.reason
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(5,)]
    report = api.run(job.path, options)
    assert report.rows.succeeded == 5
    done = look(job.path, options)
    assert done.state == DONE and done.rows.succeeded == 5


def test_a_missing_database_is_not_started(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=2)
    options = job.options()
    options.db = str(tmp_path / "nothing-here.duckdb")
    assert look(job.path, options).state == NOT_STARTED
    assert not (tmp_path / "nothing-here.duckdb").exists()


def test_later_is_decided_by_the_exit_code():
    assert later(ProviderError("429", retryable=True))
    assert not later(ProviderError("401", retryable=False))
    assert not later(StateError("locked"))   # exit 2 today; the busy error is exit 75

    class Busy(WarehouseBatchError):
        exit_code = EXIT_PENDING
    assert later(Busy("w.duckdb is busy"))
    assert not later(RuntimeError("a bug"))


def test_provider_trouble_while_batches_run_means_look_again_later(tmp_path, emulator,
                                                                  monkeypatch):
    job = Job(tmp_path, emulator, rows=2)
    options = job.options()
    api.submit(job.path, options)
    monkeypatch.setattr(standing, "try_poll", lambda req: None)

    def unreachable(provider, batch):
        raise UnreachableError("connection refused")
    monkeypatch.setattr(standing, "retrieve", unreachable)
    seen = look(job.path, options)
    assert seen.state == RUNNING and "connection refused" in seen.reason

    def gone(provider, batch):
        raise ProviderError("no such batch", retryable=False, info=ProviderErrorInfo(status=404))
    monkeypatch.setattr(standing, "retrieve", gone)
    assert look(job.path, options).state == READY   # the next pass confirms it lost

    def refused(provider, batch):
        raise ProviderError("invalid key", retryable=False, info=ProviderErrorInfo(status=401))
    monkeypatch.setattr(standing, "retrieve", refused)
    with pytest.raises(ProviderError, match="invalid key"):
        look(job.path, options)


def test_rows_left_to_send_are_ready_but_rows_that_spent_their_attempts_are_not(
        tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=3)
    job.sql("UPDATE reviews SET text = text || ' [[emu:error500]]' WHERE id = 1")
    emulator.admin("POST", "/_emulator/config", {"create_429_rate": 1.0})
    report = api.submit(job.path, job.options(max_attempts=1))
    assert report.stopped and report.rows.pending == 3
    seen = look(job.path, job.options(max_attempts=1))
    assert seen.state == READY   # the create is to be tried again: the next pass sends them

    emulator.admin("POST", "/_emulator/config", {"create_429_rate": 0.0})
    report = job.run(max_attempts=1)
    assert (report.rows.succeeded, report.rows.failed) == (2, 1)
    # the failed row is retryable and its command's attempts are spent: a later command
    # sends it again, but a sensor tick is no reason to (it would resend it at every tick)
    done = look(job.path, job.options(max_attempts=1))
    assert done.state == DONE and done.rows.pending == 1, done   # pending for a new command
