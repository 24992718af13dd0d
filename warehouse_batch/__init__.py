"""warehouse-batch: SQL rows in, LLM batch answers out, as a DuckDB table.

The public API is one function per lifecycle step (see `warehouse_batch.api`):

    from warehouse_batch import Options, plan, run
    report = run("jobs/reviews.sql", Options(db="shop.duckdb"), wait=True)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["Options", "RunReport", "StatusReport", "CancelReport", "PlanReport", "plan",
           "submit", "status", "collect", "run", "cancel", "reconcile", "load", "__version__"]


def __getattr__(name: str) -> Any:
    """The public API, loaded from `api` on first use: importing any submodule runs this
    package first, and a poll (`pollpath`) must not pay for every stage (README: Polling)."""
    if name in __all__:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
