"""warehouse-batch: SQL rows in, LLM batch answers out, as a DuckDB table.

The public API is one function per lifecycle step (see `warehouse_batch.api`):

    from warehouse_batch import Options, plan, run
    report = run("jobs/reviews.sql", Options(db="shop.duckdb"), wait=True)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import (CancelReport, Options, PlanReport, RunReport, StatusReport, cancel, collect,
                  load, plan, reconcile, run, status, submit)

__all__ = ["Options", "RunReport", "StatusReport", "CancelReport", "PlanReport", "plan",
           "submit", "status", "collect", "run", "cancel", "reconcile", "load", "__version__"]
