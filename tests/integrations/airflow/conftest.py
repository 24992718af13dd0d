"""A throwaway Airflow 3 installation for the tests, set up before Airflow is imported.

Airflow reads its configuration when `airflow` is first imported, so this runs at collection
time, before the test modules import `warehouse_batch.airflow`. The minimal setup that lets
`DAG.test()` run a deferrable task (found by trying less):

* `AIRFLOW_HOME` in a temporary folder (else Airflow writes `~/airflow`);
* the metadata database: SQLite in that folder, created by `airflow.utils.db.initdb()` once
  per session (`dag.test()` records the DAG run, task instances, reschedules, triggers and
  XComs there; no scheduler, triggerer or API server is started: `dag.test()` runs the task
  and then the trigger in line, in this process);
* `AIRFLOW__CORE__DAGS_FOLDER` in that folder, and each test's DAG written there as a file:
  `dag.test()` refuses a DAG that is not serialized, and it serializes the DAGs it finds in
  the DAGs folder (the default bundle), not the object it is called on;
* `AIRFLOW__CORE__LOAD_EXAMPLES=False`, so only those DAGs are parsed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="wb-airflow-home-"))
(_HOME / "dags").mkdir()
os.environ.update(AIRFLOW_HOME=str(_HOME), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                  AIRFLOW__CORE__DAGS_FOLDER=str(_HOME / "dags"),
                  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_HOME}/airflow.db")


@pytest.fixture(scope="session")
def dags_folder():
    """The DAGs folder of an initialised Airflow home (removed after the session)."""
    from airflow.utils import db

    db.initdb()
    try:
        yield _HOME / "dags"
    finally:
        shutil.rmtree(_HOME, ignore_errors=True)
