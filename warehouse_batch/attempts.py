"""The attempt budget: `max_attempts` bounds the sends of a request within one command.

A request whose last failure was retryable (a 5xx, a timeout, a broken or missing answer) is
sent again by the next command that submits, whatever happened before: a night of provider
trouble must not leave rows failed for ever. Within one command it is sent at most
`max_attempts` times, so `run --wait` ends.

How "within one command" is counted: every batch records the run that created it
(`batches.run_id`), and `results` keeps, for each request, the run whose send produced its
latest outcome (`results.run_id`) and how many retryable failures that run's sends have had
(`results.run_failures`; merged in `sql/merge_results.sql`). A retryable failure is final
for this command when `results.run_id` is this command's run and `run_failures` has reached
`max_attempts`; for any other command it is sent again.

A permanent failure (a 4xx, a refusal, a truncated answer) stays failed until the request
changes (row, prompt, model, parameters), or the command runs with `retry_failed`: then a
permanent failure recorded by an earlier command is sent once more (a second permanent
failure in the same command is final).

The SQL that classifies rows (`sql/plan_rows.sql`, `sql/answers.sql`) reads the
command's run id and `retry_failed` from DuckDB session variables set here; unset (as for
`plan` and `status`) means "a new command": every retryable failure would be sent again.
"""
from __future__ import annotations

import duckdb


def set_command(con: duckdb.DuckDBPyConnection, run_id: str | None,
                retry_failed: bool = False) -> None:
    """Tell the classifying SQL which command it is working for (see the module docstring)."""
    # typed even when NULL: DuckDB 1.4 binds an untyped NULL variable as INTEGER, and then
    # casts run_id (VARCHAR) to INTEGER to compare them, which fails
    con.execute("SET VARIABLE wb_run_id = CAST(? AS VARCHAR)", [run_id])
    con.execute("SET VARIABLE wb_retry_failed = CAST(? AS BOOLEAN)", [bool(retry_failed)])
