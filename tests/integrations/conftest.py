"""Integration tests against real dbt, Dagster and Airflow, each in its own virtual environment.

These files are collected only inside an extra's environment: `tests/test_extras.py` (part of
the ordinary `pytest` run) builds `.venv-extras/<extra>` with `pip install -e '.[test,<extra>]'`
and runs `pytest tests/integrations/<extra>` there with WAREHOUSE_BATCH_EXTRA set. The main
environment cannot import those packages, so it must not collect these files. The
fixtures of `tests/conftest.py` (emulator, fast_emulator, job_dir, trap) apply here too.
"""
from __future__ import annotations

import os
from pathlib import Path

_EXTRA = os.environ.get("WAREHOUSE_BATCH_EXTRA")
collect_ignore_glob = (["*"] if not _EXTRA else
                       [p.name for p in Path(__file__).parent.iterdir()
                        if p.is_dir() and p.name != _EXTRA and not p.name.startswith("_")])

