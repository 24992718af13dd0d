"""warehouse_batch.dagster against real Dagster, in process, and the emulator.

A job goes from nothing to every row answered the way a deployment runs it: the asset's first
materialisation submits and returns; the sensor skips while the batch runs; once the batch
ends it requests a materialisation, which collects; then it says the job is done. The
emulator here has a manual clock (`emulator` fixture): a batch ends only when the test moves
the clock, so nothing sleeps and "still running" is a real state, not a race.
"""
from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from helpers import Job, emulator_env
from warehouse_batch import api, errors
from warehouse_batch.dagster import (WarehouseBatchResource, enrichment_asset,
                                     enrichment_sensor)
from warehouse_batch.integrations import dagster as integration


def _resource(job: Job, **kw) -> WarehouseBatchResource:
    env = emulator_env(job.emu)
    return WarehouseBatchResource(
        db=job.db, env={k: v for k, v in env.items() if k.startswith(("OPENAI_", "ANTHROPIC_"))},
        **kw)


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    [event] = result.asset_materializations_for_node(key.to_python_identifier())
    return {k: v.value for k, v in event.metadata.items()}


def _tick(sensor: dg.SensorDefinition, resource, instance) -> list:
    """One sensor evaluation: its run requests, or its skip reason (as a one-item list)."""
    context = dg.build_sensor_context(instance=instance, resources={"warehouse_batch": resource})
    data = sensor.evaluate_tick(context)
    return data.run_requests or [data.skip_message]


def test_a_job_from_nothing_to_every_row_answered(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=12)
    resource = _resource(job)
    asset = enrichment_asset(job.path, deps=["stg_reviews"])
    sensor = enrichment_sensor(asset)
    instance = dg.DagsterInstance.ephemeral()

    assert asset.key == dg.AssetKey("job")
    assert dg.AssetKey("stg_reviews") in asset.asset_deps[asset.key]
    [skip] = _tick(sensor, resource, instance)
    assert "not_started" in skip   # the sensor never starts a job on its own

    first = dg.materialize([asset], resources={"warehouse_batch": resource}, instance=instance)
    assert first.success
    meta = _metadata(first, asset.key)
    assert (meta["rows"], meta["pending"], meta["succeeded"]) == (12, 12, 0)
    assert meta["requests_sent"] == 12 and meta["batches_created"] == 1
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(12,)]

    [skip] = _tick(sensor, resource, instance)   # the batch runs: nothing to do
    assert skip.startswith("running")
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(12,)]

    emulator.advance(3600)                         # the batch ends
    [request] = _tick(sensor, resource, instance)
    assert isinstance(request, dg.RunRequest)
    assert request.asset_selection == [asset.key]

    second = dg.materialize([asset], selection=request.asset_selection, tags=request.tags,
                            resources={"warehouse_batch": resource}, instance=instance)
    assert second.success
    meta = _metadata(second, asset.key)
    assert (meta["rows"], meta["succeeded"], meta["pending"], meta["failed"]) == (12, 12, 0, 0)
    assert meta["requests_sent"] == 0 and meta["batches_collected"] == 1
    assert meta["cost_usd"] > 0 and meta["dagster/row_count"] == 12
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded' "
                   "AND response IS NOT NULL") == [(12,)]

    [skip] = _tick(sensor, resource, instance)
    assert skip.startswith("done")


def test_the_sensor_waits_for_a_materialisation_already_requested(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=3)
    resource = _resource(job)
    asset = enrichment_asset(job.path, key=["enrich", "reviews"])
    sensor = enrichment_sensor(asset, name="reviews_sensor")
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([asset], resources={"warehouse_batch": resource},
                          instance=instance).success
    emulator.advance(3600)
    [request] = _tick(sensor, resource, instance)
    assert isinstance(request, dg.RunRequest)
    # a run not yet finished carrying the sensor's tag: the next tick does not ask again
    defs = dg.Definitions(assets=[asset], resources={"warehouse_batch": resource})
    instance.create_run_for_job(defs.resolve_implicit_global_asset_job_def(),
                                tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)
    [skip] = _tick(sensor, resource, instance)
    assert "already queued or running" in skip


class _Busy(errors.WarehouseBatchError):
    """Stands in for the library's lock conflict: what matters is exit code 75."""

    exit_code = errors.EXIT_PENDING


def test_exit_75_is_a_retry_not_a_failure(tmp_path, emulator, monkeypatch):
    job = Job(tmp_path, emulator, rows=3)
    resource = _resource(job, retry_seconds=0, max_retries=2)
    asset = enrichment_asset(job.path)
    calls = []
    real_run = api.run

    def run_busy_once(path, options):
        calls.append(path)
        if len(calls) == 1:
            raise _Busy("w.duckdb is busy")
        return real_run(path, options)

    monkeypatch.setattr(api, "run", run_busy_once)
    result = dg.materialize([asset], resources={"warehouse_batch": resource})
    assert result.success and len(calls) == 2
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retried) == 1
    assert _metadata(result, asset.key)["requests_sent"] == 3


def test_the_sensor_skips_a_tick_on_exit_75(tmp_path, emulator, monkeypatch):
    job = Job(tmp_path, emulator, rows=3)
    resource = _resource(job)
    asset = enrichment_asset(job.path)
    sensor = enrichment_sensor(asset)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([asset], resources={"warehouse_batch": resource},
                          instance=instance).success
    emulator.advance(3600)

    def busy(path, options):
        raise _Busy("w.duckdb is busy")

    monkeypatch.setattr(integration, "look", busy)
    [skip] = _tick(sensor, resource, instance)
    assert skip.startswith("try again later") and "busy" in skip
    monkeypatch.undo()
    [request] = _tick(sensor, resource, instance)
    assert isinstance(request, dg.RunRequest)


def test_a_user_error_fails_without_retry(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=3)
    job.path = str(tmp_path / "broken.sql")
    (tmp_path / "broken.sql").write_text("{{ config(name='x', provider='openai', "
                                         "model='gpt-4.1-mini', unique_key='id', "
                                         "prompt='{{ text }}', max_tokn=5) }}\n"
                                         "SELECT id, text FROM reviews\n")
    asset = enrichment_asset(job.path)
    result = dg.materialize([asset], resources={"warehouse_batch": _resource(job)},
                            raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("broken")
    assert "max_tokn" in failure.user_failure_data.description
    assert not [e for e in result.all_events
                if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


@pytest.fixture
def holder(tmp_path):
    """A second process holding a DuckDB file open for writing (as dbt would)."""
    procs = []

    def hold(path: str) -> None:
        p = subprocess.Popen([sys.executable, "-c",
                              "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                              "print('ready', flush=True); sys.stdin.read()", path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)

    yield hold
    for p in procs:
        p.stdin.close()
        p.wait()


@pytest.mark.skipif(not hasattr(errors, "BusyError"), reason="lock conflicts exit 75 once "
                    "the library raises BusyError (issue 10, item 1)")
def test_a_file_locked_by_another_process_is_retried_and_skipped(tmp_path, emulator, holder):
    job = Job(tmp_path, emulator, rows=3)
    resource = _resource(job, retry_seconds=0, max_retries=1)
    asset = enrichment_asset(job.path)
    sensor = enrichment_sensor(asset)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([asset], resources={"warehouse_batch": resource},
                          instance=instance).success
    emulator.advance(3600)
    holder(job.db)
    result = dg.materialize([asset], resources={"warehouse_batch": resource},
                            instance=instance, raise_on_error=False)
    retried = [e for e in result.all_events
               if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried   # busy: retried (and, with the lock held throughout, retries run out)
    [skip] = _tick(sensor, resource, instance)
    assert skip.startswith("try again later")


def test_a_resource_without_db_takes_the_jobs_project_file(tmp_path, emulator):
    """Left unset on the resource, the database and the state database come from the
    project file beside the job, as for the CLI."""
    job = Job(tmp_path, emulator, rows=4)
    (tmp_path / "warehouse-batch.toml").write_text(
        f'db = "{job.db}"\nstate_db = "state.duckdb"\n')
    env = emulator_env(emulator)
    resource = WarehouseBatchResource(
        env={k: v for k, v in env.items() if k.startswith(("OPENAI_", "ANTHROPIC_"))})
    asset = enrichment_asset(job.path)
    result = dg.materialize([asset], resources={"warehouse_batch": resource})
    assert result.success
    assert _metadata(result, asset.key)["rows"] == 4
    assert (tmp_path / "state.duckdb").exists()
    assert job.sql("SELECT count(*) FROM enriched") == [(4,)]
