"""warehouse_batch.airflow against real Airflow 3 (`dag.test()`) and the emulator.

Setup (see conftest.py): a temporary AIRFLOW_HOME with a SQLite metadata database made by
`initdb()`, and each test's DAG written into the DAGs folder, because `dag.test()` runs only
DAGs it has serialized from there. `dag.test()` then runs the task in this process, and when
it defers, runs the trigger in line until its first event, then resumes the task.

The DAG runs use `fast_emulator` (a batch ends as soon as it is looked at): the operator
submits, defers, the trigger's first look finds the batch ended, and the task resumes to
collect. The trigger's own waiting is tested with the manual-clock `emulator`: its wait
between looks is replaced by one that moves the emulator's clock, so nothing sleeps.
"""
from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys
import textwrap

import pytest
from airflow.models.taskreschedule import TaskReschedule
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState

from helpers import Job, emulator_env
from warehouse_batch import api, errors
from warehouse_batch.airflow import WarehouseBatchTrigger
from warehouse_batch.integrations import airflow as integration


@pytest.fixture
def provider_env(monkeypatch):
    """The worker's and triggerer's environment: the emulator's URL and key (the operator
    passes no secrets through the trigger's stored arguments)."""
    def use(emu) -> None:
        for k, v in emulator_env(emu).items():
            if k.startswith(("OPENAI_", "ANTHROPIC_")):
                monkeypatch.setenv(k, v)
    return use


def _dag(dags_folder, dag_id: str, job: Job, **operator_kw):
    """Write a DAG with one WarehouseBatchOperator into the DAGs folder; return it."""
    kw = {"poll_interval": 0, "retry_seconds": 0, **operator_kw}
    path = dags_folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(f"""
        import datetime as dt
        from airflow.sdk import DAG
        from warehouse_batch.airflow import WarehouseBatchOperator

        with DAG({dag_id!r}, schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
            WarehouseBatchOperator(task_id="enrich", job={job.path!r}, db={job.db!r},
                                   **{kw!r})
    """))
    return runpy.run_path(str(path))["dag"]


def _report(dag_run) -> dict:
    with create_session() as session:
        [xcom] = session.query(XComModel).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="enrich",
            key="return_value").all()
        return xcom.value


def test_dag_takes_a_job_from_nothing_to_every_row_answered(dags_folder, fast_emulator,
                                                            provider_env, tmp_path):
    provider_env(fast_emulator)
    job = Job(tmp_path, fast_emulator, rows=12)
    dag_run = _dag(dags_folder, "enrich_all", job).test()
    assert dag_run.state == DagRunState.SUCCESS
    report = _report(dag_run)
    # the value comes from execute_complete: the task deferred after submitting, and
    # resumed to collect (`api.run`) once the trigger saw the batch end
    assert report["command"] == "run" and report["exit_code"] == 0
    assert report["rows"] == {"rows": 12, "succeeded": 12, "failed": 0, "pending": 0}
    assert report["collected"]["batches_collected"] == 1 and report["cost_usd"] > 0
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded' "
                   "AND response IS NOT NULL") == [(12,)]
    assert job.batches_created() == 1


class _Busy(errors.WarehouseBatchError):
    """Stands in for the library's lock conflict: what matters is exit code 75."""

    exit_code = errors.EXIT_PENDING


def test_exit_75_reschedules_the_task_instead_of_failing_it(dags_folder, fast_emulator,
                                                            provider_env, tmp_path,
                                                            monkeypatch):
    provider_env(fast_emulator)
    job = Job(tmp_path, fast_emulator, rows=3)
    calls = []
    real_submit = api.submit

    def submit_busy_once(path, options):
        calls.append(path)
        if len(calls) == 1:
            raise _Busy(f"{job.db} is busy")
        return real_submit(path, options)

    monkeypatch.setattr(api, "submit", submit_busy_once)
    dag_run = _dag(dags_folder, "enrich_busy", job, retries=0).test()
    assert dag_run.state == DagRunState.SUCCESS   # with no retries allowed
    assert len(calls) == 2
    with create_session() as session:
        [ti] = [t for t in dag_run.get_task_instances(session=session)]
        reschedules = session.query(TaskReschedule).filter_by(ti_id=ti.id).count()
    assert reschedules == 1
    assert _report(dag_run)["rows"]["succeeded"] == 3


def test_a_user_error_fails_the_task(dags_folder, fast_emulator, provider_env, tmp_path):
    provider_env(fast_emulator)
    job = Job(tmp_path, fast_emulator, rows=3)
    job.write(extra=", max_tokn=5")
    dag_run = _dag(dags_folder, "enrich_broken", job, retries=0).test()
    assert dag_run.state == DagRunState.FAILED
    assert job.batches_created() == 0


def _write_from_another_process(db: str, table: str) -> None:
    """What dbt does beside us: open the file read-write in another process and write."""
    subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1])"
                    f".execute('CREATE TABLE {table} AS SELECT 1 AS x').close()", db],
                   check=True, capture_output=True, text=True, timeout=60)


def test_the_trigger_waits_without_holding_the_file(emulator, provider_env, tmp_path,
                                                    monkeypatch):
    provider_env(emulator)
    job = Job(tmp_path, emulator, rows=4)
    api.submit(job.path, api.Options(db=job.db))
    kind, kwargs = WarehouseBatchTrigger(job=job.path, db=job.db, poll_interval=0).serialize()
    assert kind == "warehouse_batch.integrations.airflow.WarehouseBatchTrigger"
    trigger = WarehouseBatchTrigger(**kwargs)   # as the triggerer rebuilds it
    waits = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        # between two looks another process can write the file: nothing of ours holds it
        _write_from_another_process(job.db, f"written_during_wait_{len(waits)}")
        if len(waits) == 3:
            emulator.advance(3600)   # the batch ends

    monkeypatch.setattr(integration, "_sleep", wait)
    event = asyncio.run(anext(trigger.run()))
    assert event.payload["status"] == "ready" and "ended" in event.payload["reason"]
    assert waits == [0, 0, 0]   # two looks found the batch running, the third it ended
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(4,)]
    assert ("written_during_wait_3",) in job.sql("SHOW TABLES")


def test_the_trigger_reports_an_error_waiting_cannot_fix(emulator, provider_env, tmp_path,
                                                         monkeypatch):
    provider_env(emulator)
    job = Job(tmp_path, emulator, rows=2)
    api.submit(job.path, api.Options(db=job.db))
    job.write(extra=", max_tokn=5")   # the job file broken while its batch runs
    monkeypatch.setattr(integration, "_sleep", lambda seconds: asyncio.sleep(0))
    event = asyncio.run(anext(WarehouseBatchTrigger(job=job.path, db=job.db).run()))
    assert event.payload["status"] == "error" and "max_tokn" in event.payload["message"]
