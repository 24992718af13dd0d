"""Airflow: a deferrable operator that submits a job, waits in the triggerer, then collects.

    from warehouse_batch.airflow import WarehouseBatchOperator

    enrich = WarehouseBatchOperator(task_id="enrich_reviews",
                                    job="/opt/jobs/review_sentiment.sql", db="/data/shop.duckdb")
    dbt_build >> enrich

`execute` submits what is new (`api.submit`) and, while rows are pending, defers to
`WarehouseBatchTrigger`: the worker slot is freed and the triggerer polls cheaply every
`poll_interval` seconds (`standing.look`, in a thread: no source read, no SDK while batches
run, no DuckDB lock held while it waits). When a batch has ended (or there is other work for a
pass) the task resumes in `execute_complete`, which runs one pass (`api.run`: collect, send
again what needs it, write the output table) and returns the report as its XCom value, or
defers again while rows are still pending.

Anything that says "try again later" (exit 75: the DuckDB file locked by another process,
transient provider trouble on a call) reschedules the task (`AirflowRescheduleException`,
state `up_for_reschedule`, after `retry_seconds`) instead of failing it; it spends none of the
task's retries. Other library errors fail the task (a person must fix the job, the data or the
settings).

API keys and provider settings come from the environment of the worker and the triggerer
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`, ...): the trigger's arguments are stored in Airflow's
database, so no secret is passed through them.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowRescheduleException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from .. import api
from ..errors import WarehouseBatchError
from ..reports import RunReport
from .standing import RUNNING, cost_so_far, later, look

_sleep = asyncio.sleep   # the trigger's wait between looks (tests replace it)


def _options(job: str, db: str | None, vars: Mapping[str, Any] | None,
             max_attempts: int | None, memory_limit: str | None, allowed_paths: Sequence[str],
             allowed_hosts: Sequence[str], log: Callable[[str], None]) -> api.Options:
    """The library's options; what the task leaves unset comes from the environment and the
    job's project file, as for the CLI (`api.options_for`)."""
    return api.options_for(job, db=db, vars=dict(vars or {}), max_attempts=max_attempts,
                           memory_limit=memory_limit, allowed_paths=tuple(allowed_paths),
                           allowed_hosts=tuple(allowed_hosts), log=log)


class WarehouseBatchTrigger(BaseTrigger):
    """Waits, in the triggerer, until a pass of the job would move something: a batch ended,
    a batch is half-submitted or lost, rows are left to send with nothing in flight.

    Every `poll_interval` seconds it looks (`standing.look`, in a thread). While every batch
    runs it keeps waiting; a look that says "later" (the file busy, provider trouble) waits
    too. Yields one event: `{"status": "ready", "reason": ...}`, or `{"status": "error",
    "message": ...}` when the look fails in a way waiting cannot fix."""

    def __init__(self, *, job: str, db: str, vars: Mapping[str, Any] | None = None,
                 max_attempts: int | None = None, memory_limit: str | None = None,
                 allowed_paths: Sequence[str] = (), allowed_hosts: Sequence[str] = (),
                 poll_interval: float = 60.0) -> None:
        super().__init__()
        self.job, self.db, self.vars = job, db, dict(vars or {})
        self.max_attempts, self.memory_limit = max_attempts, memory_limit
        self.allowed_paths, self.allowed_hosts = list(allowed_paths), list(allowed_hosts)
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"job": self.job, "db": self.db, "vars": self.vars,
                 "max_attempts": self.max_attempts, "memory_limit": self.memory_limit,
                 "allowed_paths": self.allowed_paths, "allowed_hosts": self.allowed_hosts,
                 "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        options = _options(self.job, self.db, self.vars, self.max_attempts, self.memory_limit,
                           self.allowed_paths, self.allowed_hosts, self.log.debug)
        while True:
            await _sleep(self.poll_interval)   # first: a batch never ends the moment it starts
            try:
                standing = await asyncio.to_thread(look, self.job, options)
            except WarehouseBatchError as e:
                if later(e):
                    self.log.info("try again later: %s", e)
                    continue
                yield TriggerEvent({"status": "error", "message": str(e)})
                return
            if standing.state == RUNNING:
                self.log.info("%s: %s", self.job, standing.reason)
                continue
            yield TriggerEvent({"status": "ready", "state": standing.state,
                                "reason": standing.reason})
            return


class WarehouseBatchOperator(BaseOperator):
    """Runs a job file to the end without holding a worker while its batches run (see the
    module docstring). Returns the JSON report of the last pass (XCom `return_value`), with
    `exit_code` and `cost_usd`; rows that failed are reported there (and logged), not raised.

    `poll_interval`: seconds between the trigger's looks; `retry_seconds`: the wait before a
    task that found the file busy runs again; `timeout`: how long the task may stay deferred
    in all (None: no limit; a batch ends within the provider's window)."""

    template_fields: Sequence[str] = ("job", "db", "vars")

    def __init__(self, *, job: str, db: str | None = None,
                 vars: Mapping[str, Any] | None = None, max_attempts: int | None = None,
                 memory_limit: str | None = None, allowed_paths: Sequence[str] = (),
                 allowed_hosts: Sequence[str] = (), poll_interval: float = 60.0,
                 retry_seconds: float = 60.0, timeout: dt.timedelta | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job, self.db, self.vars = job, db, dict(vars or {})
        self.max_attempts, self.memory_limit = max_attempts, memory_limit
        self.allowed_paths, self.allowed_hosts = list(allowed_paths), list(allowed_hosts)
        self.poll_interval, self.retry_seconds = poll_interval, retry_seconds
        self.wait_timeout = timeout

    def execute(self, context: Any) -> dict[str, Any]:
        """Submit what is new, then wait in the triggerer (or finish: nothing pending)."""
        return self._after(self._call(api.submit))

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> dict[str, Any]:
        """Back from the trigger: collect, send again what needs it, and finish or wait."""
        if event.get("status") != "ready":
            raise AirflowException(f"warehouse-batch: {event.get('message', event)}")
        self.log.info("resuming: %s", event.get("reason"))
        return self._after(self._call(api.run))

    def _options(self) -> api.Options:
        return _options(self.job, self.db, self.vars, self.max_attempts, self.memory_limit,
                        self.allowed_paths, self.allowed_hosts, self.log.info)

    def _call(self, step: Callable[[str, api.Options], RunReport]) -> RunReport:
        """One library call; exit 75 reschedules the task, other library errors fail it."""
        try:
            return step(self.job, self._options())
        except WarehouseBatchError as e:
            if later(e):
                self.log.warning("try again later: %s", e)
                raise AirflowRescheduleException(
                    dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.retry_seconds)
                ) from e
            raise AirflowException(f"warehouse-batch: {e} (exit {e.exit_code})") from e

    def _after(self, report: RunReport) -> dict[str, Any]:
        """Defer while rows are pending; else the report, for XCom."""
        if report.pending:
            self.log.info("%s row(s) pending: waiting in the triggerer", f"{report.rows.pending:,}")
            self.defer(trigger=WarehouseBatchTrigger(
                job=self.job, db=self._options().db, vars=self.vars,
                max_attempts=self.max_attempts, memory_limit=self.memory_limit,
                allowed_paths=self.allowed_paths, allowed_hosts=self.allowed_hosts,
                poll_interval=self.poll_interval),
                method_name="execute_complete", timeout=self.wait_timeout)
        if report.rows.failed:
            self.log.warning("%s row(s) failed: see _status, _error and _failure in %s",
                             f"{report.rows.failed:,}", report.table)
        return {**report.to_dict(), "exit_code": report.exit_code,
                "cost_usd": cost_so_far(self._options(), report.job)}


__all__ = ["WarehouseBatchOperator", "WarehouseBatchTrigger"]
