"""warehouse-batch in a dbt project (the `[dbt]` extra): `warehouse-batch dbt run --select …`
runs the project's enrichment jobs in dependency order (`runner`, `selection`), and
`model(dbt, session, job)` makes a job a node of `dbt build` itself, as a dbt-duckdb Python
model (`inbuild`). dbt's words in job files (`ref`, `source`, `env_var`) live in
`warehouse_batch.dbtwords`, which the core package uses without dbt installed.
"""
from __future__ import annotations

from .inbuild import model

__all__ = ["model"]
