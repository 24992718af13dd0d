"""Where the state goes (issue 10): a job file may name its state database, but only inside
its own folder or project; it cannot make warehouse-batch create or write a file elsewhere."""
from __future__ import annotations

from . import BASE, Case


CASES = [
    Case("state-db-outside-the-project", BASE + ", state_db='/tmp/wb-hostile-state.duckdb'",
         message=r"state_db '/tmp/wb-hostile-state.duckdb' lies outside the folders",
         commands=("plan", "run", "submit", "status", "collect")),
    Case("state-db-climbing-out", BASE + ", state_db='../../wb-hostile-state.duckdb'",
         message=r"state_db .* lies outside the folders"),
    Case("state-db-not-a-string", BASE + ", state_db=['a.duckdb']",
         message=r"config key 'state_db' must be a DuckDB file path"),
]
