"""Dagster: a resource, an asset per job file, and a sensor that collects when batches end.

    from dagster import Definitions
    from warehouse_batch.dagster import (WarehouseBatchResource, enrichment_asset,
                                         enrichment_sensor)

    reviews = enrichment_asset("enrich/review_sentiment.sql", deps=["stg_reviews"])
    defs = Definitions(
        assets=[reviews],
        sensors=[enrichment_sensor(reviews)],
        resources={"warehouse_batch": WarehouseBatchResource(db="shop.duckdb")},
    )

A materialisation is one pass of `api.run` without waiting: it collects whatever has ended,
submits what is new, writes the output table (pending rows marked) and returns, so a run never
holds a worker for the batch window. The sensor looks cheaply (`standing.look`: no source
read, no write lock held, the SDKs not imported while batches run) and, once a batch of the
job has ended (or rows are left to send with nothing in flight), requests the next
materialisation, which collects the answers. Each materialisation's metadata has the rows by
status, the requests it sent, the batches in flight and the cost so far.

Anything that says "try again later" (exit 75: the DuckDB file locked by another process,
transient provider trouble) is a `RetryRequested`, never a failure; the sensor skips the tick.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from dagster import (AssetExecutionContext, AssetKey, AssetsDefinition, ConfigurableResource,
                     DagsterRunStatus, DefaultSensorStatus, Failure, MaterializeResult,
                     RetryRequested, RunRequest, RunsFilter, SensorDefinition,
                     SensorEvaluationContext, SkipReason, asset, sensor)
from pydantic import Field

from .. import api
from ..errors import WarehouseBatchError
from .standing import READY, cost_so_far, later, look, summary

RESOURCE_KEY = "warehouse_batch"
JOB_FILE = "warehouse_batch/job_file"     # asset metadata: the job file (absolute path)
JOB_VARS = "warehouse_batch/vars"         # asset metadata: the `--var` values, as JSON
RUN_TAG = "warehouse_batch/asset"         # on the runs the sensor requests
_UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED,
               DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


class WarehouseBatchResource(ConfigurableResource):
    """Where and how jobs run: the DuckDB file, provider settings, limits (what the CLI's
    options set). API keys come from the process environment, or from `env` filled with
    `dagster.EnvVar(...)` so they are never written into the run's config."""

    db: Optional[str] = Field(default=None, description="the DuckDB file holding the sources "
                              "and the output tables (default: $WAREHOUSE_BATCH_DB, else the "
                              "job's project file, else warehouse.duckdb)")
    state_db: Optional[str] = Field(default=None, description="a DuckDB file of its own for "
                                    "warehouse-batch's state (default: the environment, the "
                                    "project file, else the job's state_db)")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="provider settings over the process environment (OPENAI_BASE_URL, "
                    "ANTHROPIC_API_KEY via EnvVar, ...)")
    memory_limit: Optional[str] = Field(default=None, description="DuckDB memory_limit, "
                                        "e.g. 2GB (default: the job's, else 512MB)")
    max_attempts: Optional[int] = Field(default=None, description="sends of a request per "
                                        "materialisation (default: the job's, else 3)")
    allowed_paths: list[str] = Field(default_factory=list, description="folders a job may "
                                     "read beyond its own and its project root")
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts a job file's "
                                     "base_url may name")
    retry_seconds: float = Field(default=60.0, description="wait before a materialisation "
                                 "that found the file busy (exit 75) runs again")
    max_retries: int = Field(default=30, description="how many times such a materialisation "
                             "is retried before it fails")

    def options(self, vars: Mapping[str, Any] | None = None,
                log: Any = None, job: str | None = None) -> api.Options:
        """The library's options for one call on `job` (its project file fills in what this
        resource leaves unset, as for the CLI)."""
        options = api.options_for(
            job or os.getcwd(), env={**os.environ, **self.env}, db=self.db,
            state_db=self.state_db, vars=dict(vars or {}), memory_limit=self.memory_limit,
            max_attempts=self.max_attempts, allowed_paths=tuple(self.allowed_paths),
            allowed_hosts=tuple(self.allowed_hosts))
        if log is not None:
            options.log = log
        return options


def enrichment_asset(job: str | os.PathLike[str], *, key: AssetKey | str | Sequence[str] |
                     None = None, deps: Sequence[Any] | None = None,
                     vars: Mapping[str, Any] | None = None, group_name: str | None = None,
                     description: str | None = None, resource_key: str = RESOURCE_KEY,
                     **asset_kwargs: Any) -> AssetsDefinition:
    """An asset materialised by the job file `job` (relative paths are resolved now, from
    the current directory): each materialisation collects what has ended, submits what is
    new, writes the output table and returns without waiting for the batches.

    `key` defaults to the file's stem (`enrich/reviews.sql` → `reviews`); `deps` are the
    upstream assets (a dbt model's key, say); `vars` are the job's `--var` values. Further
    keyword arguments go to `dagster.asset`."""
    path = str(Path(job).resolve())
    asset_key = AssetKey.from_coercible(key) if key is not None else AssetKey(Path(path).stem)
    job_vars = dict(vars or {})

    asset_kwargs.setdefault("kinds", {"duckdb"})
    metadata = {**asset_kwargs.pop("metadata", {}), JOB_FILE: path,
                JOB_VARS: json.dumps(job_vars, sort_keys=True)}

    @asset(key=asset_key, deps=deps, group_name=group_name,
           description=description or f"enriched by warehouse-batch from {path}",
           required_resource_keys={resource_key}, metadata=metadata, **asset_kwargs)
    def _enrich(context) -> MaterializeResult:   # type: ignore[no-untyped-def]
        # unannotated: Dagster checks the hint's object, and `annotations` makes it a string
        resource: WarehouseBatchResource = getattr(context.resources, resource_key)
        return materialize_job(path, resource.options(job_vars, log=context.log.info, job=path),
                               resource, context)

    return _enrich


def materialize_job(path: str, options: api.Options, resource: WarehouseBatchResource,
                    context: AssetExecutionContext) -> MaterializeResult:
    """One pass of the job (`api.run`, no wait) as a materialisation, with its metadata.
    Exit 75 → `RetryRequested`; any other error of the library → `Failure` (no retry: a
    person must fix the job, the data or the provider settings)."""
    try:
        report = api.run(path, options)
    except WarehouseBatchError as e:
        if later(e):
            context.log.warning(f"try again later: {e}")
            raise RetryRequested(max_retries=resource.max_retries,
                                 seconds_to_wait=resource.retry_seconds) from e
        raise Failure(description=str(e), allow_retries=False,
                      metadata={"error": type(e).__name__, "exit_code": e.exit_code}) from e
    metadata = summary(report, cost_so_far(options, report.job))
    if report.stopped:
        context.log.warning(f"the pass stopped early on provider trouble: {report.stopped}; "
                            "the sensor picks the job up again")
    if report.rows.failed:
        context.log.warning(f"{report.rows.failed:,} row(s) failed: see _status, _error and "
                            f"_failure in {report.table}")
    metadata["dagster/row_count"] = report.rows.rows
    return MaterializeResult(metadata={k: v for k, v in metadata.items() if v is not None})


def enrichment_sensor(enrichment: AssetsDefinition, *, name: str | None = None,
                      minimum_interval_seconds: int = 60, resource_key: str = RESOURCE_KEY,
                      default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING
                      ) -> SensorDefinition:
    """A sensor that requests a materialisation of `enrichment` (made by `enrichment_asset`)
    when it would move the job: a batch has ended (its answers are to be collected), a batch
    is half-submitted, the provider lost one, or rows are left to send with nothing in
    flight. It skips while every batch is still running, while such a materialisation is
    already queued or running, when the job is done, and before the job's first
    materialisation (start the job by materialising the asset)."""
    key = enrichment.key
    metadata = enrichment.specs_by_key[key].metadata
    path = _text(metadata[JOB_FILE])
    job_vars = json.loads(_text(metadata[JOB_VARS]))
    tag = key.to_user_string()

    @sensor(name=name or f"{key.to_python_identifier()}_sensor", target=enrichment,
            minimum_interval_seconds=minimum_interval_seconds,
            required_resource_keys={resource_key}, default_status=default_status)
    def _watch(context) -> RunRequest | SkipReason:   # type: ignore[no-untyped-def]
        resource: WarehouseBatchResource = getattr(context.resources, resource_key)
        try:
            standing = look(path, resource.options(job_vars, job=path))
        except WarehouseBatchError as e:
            if later(e):
                return SkipReason(f"try again later: {e}")
            raise
        if standing.state != READY:
            return SkipReason(f"{standing.state}: {standing.reason}")
        if _unfinished_run(context, tag):
            return SkipReason(f"{standing.reason}; a materialisation of {tag} is already "
                              "queued or running")
        context.log.info(f"{tag}: {standing.reason}: requesting a materialisation")
        return RunRequest(asset_selection=[key], tags={RUN_TAG: tag})

    return _watch


def _unfinished_run(context: SensorEvaluationContext, tag: str) -> bool:
    """Whether a run this sensor requested for the asset is still queued or running."""
    runs = context.instance.get_runs(
        filters=RunsFilter(statuses=_UNFINISHED, tags={RUN_TAG: tag}), limit=1)
    return bool(runs)


def _text(value: Any) -> str:
    """A metadata entry as text (Dagster may wrap it in a MetadataValue)."""
    return value if isinstance(value, str) else value.value


__all__ = ["WarehouseBatchResource", "enrichment_asset", "enrichment_sensor",
           "materialize_job"]
