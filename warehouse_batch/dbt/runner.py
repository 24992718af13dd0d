"""`warehouse-batch dbt run`: the enrichment jobs of a dbt project, selected as dbt selects.

A project's jobs are the `.sql` files under its jobs folder(s): `vars: {warehouse_batch:
{jobs: ...}}` in `dbt_project.yml` (a folder or a list of folders, relative to the project),
default `enrich/`. Each job's output table may be `ref`'d by another job by its name; that job
then runs after it. Jobs run one at a time in dependency order, each as `warehouse-batch run`
(or `run --wait`); a job whose upstream job failed or is still pending is skipped (its input
is not complete: enriching it now would pay for prompts built on missing answers). The command
exits with the worst exit code of the jobs it ran.
"""
from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import api
from ..dbtproject import DbtProject, DbtSettings, load_project
from ..dbtwords import DbtWords
from ..db import attach_alias, default_db_path
from ..errors import (EXIT_FAILED_ROWS, EXIT_INTERNAL, EXIT_OK, EXIT_PENDING, EXIT_PROVIDER,
                      EXIT_USER, ConfigurationError, JobFileError, Location, UserError,
                      WarehouseBatchError)
from ..keys import redact
from ..paths import make_scope
from ..spec import JobSpec, load_job, read_config
from ..sqlutil import quote_ident
from .selection import Graph, Node

DEFAULT_JOBS_DIR = "enrich"
# worst first: a bug, then what a person must fix, then "come back later", then failed rows
_SEVERITY = [EXIT_INTERNAL, EXIT_USER, EXIT_PROVIDER, EXIT_PENDING, EXIT_FAILED_ROWS, EXIT_OK]


def worst(codes: list[int]) -> int:
    """The exit code that says the most: see `_SEVERITY`."""
    return min(codes, key=lambda c: _SEVERITY.index(c) if c in _SEVERITY else 0,
               default=EXIT_OK)


@dataclass
class JobResult:
    """One job of a `dbt run`: what it is, how it ended, its own report."""

    job: str                         # path relative to the project
    name: str                        # output table
    exit_code: int | None = None     # None: skipped
    status: str = "skipped"          # done, pending, failed_rows, error, skipped
    depends_on: list[str] = field(default_factory=list)   # dbt models and sources
    reads_jobs: list[str] = field(default_factory=list)   # other jobs' tables it refs
    report: dict | None = None
    error: dict | None = None
    skipped_because: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class DbtRunReport:
    project: str
    db: str
    selected: list[str]
    jobs: list[JobResult] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    finished_at: dt.datetime | None = None
    elapsed_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The worst of the jobs' codes; a job skipped behind another is not done (75)."""
        return worst([j.exit_code for j in self.jobs if j.exit_code is not None]
                     + [EXIT_PENDING for j in self.jobs if j.status == "skipped"])

    def to_dict(self) -> dict:
        costs = [(j.report or {}).get("cost_usd") for j in self.jobs]
        known = [c for c in costs if isinstance(c, (int, float))]
        return {"exit_code": self.exit_code, "project": self.project, "db": self.db,
                "selected": self.selected, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "elapsed_seconds": round(self.elapsed_seconds, 3),
                "cost_usd": round(sum(known), 6) if known else None,
                "jobs": [j.to_dict() for j in self.jobs]}


@dataclass
class ProjectJobs:
    """A dbt project's enrichment jobs, loaded, with the selection graph over them."""

    project: DbtProject
    db: str
    specs: dict[str, JobSpec]                  # node id ("job:<path>") -> spec
    outputs: dict[str, str]                    # output name -> relation, for ref()
    graph: Graph


def project_for(settings: DbtSettings, env: dict | None = None) -> DbtProject:
    project, searched = load_project(settings, None, env)
    if project is None:
        raise UserError(f"no dbt project found (looked in {'; '.join(searched)})",
                        hint="run from the dbt project or pass --project-dir")
    return project


def job_files(project: DbtProject) -> list[Path]:
    """The `.sql` files under the project's jobs folder(s)."""
    setting = project.tool_config().get("jobs", DEFAULT_JOBS_DIR)
    folders = [setting] if isinstance(setting, str) else setting
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise JobFileError("vars.warehouse_batch.jobs must be a folder or a list of folders",
                           Location(str(project.project_file)))
    files: list[Path] = []
    for f in folders:
        folder = (project.root / f).resolve()
        if folder.is_file():
            files.append(folder)
        elif folder.is_dir():
            files.extend(sorted(folder.rglob("*.sql")))
        elif setting is not DEFAULT_JOBS_DIR:
            raise ConfigurationError(f"the jobs folder {folder} (vars.warehouse_batch.jobs in "
                                     f"{project.project_file}) does not exist")
    return list(dict.fromkeys(files))


def _relation(name: str) -> str:
    return ".".join(quote_ident(p) for p in name.split("."))


def load_project_jobs(settings: DbtSettings, db: str | None = None,
                      env: dict | None = None, allowed_paths: tuple[str, ...] = (),
                      allowed_hosts: tuple[str, ...] = ()) -> ProjectJobs:
    """Every job of the project, read in full (so a broken job is reported, with its
    location, before anything runs), and the graph of jobs and dbt nodes."""
    env = dict(os.environ if env is None else env)
    project = project_for(settings, env)
    if db is None:
        try:
            db = project.database_path()
        except ConfigurationError:
            db = default_db_path()
    files = job_files(project)
    outputs: dict[str, str] = {}
    for f in files:
        name = read_config(f).get("name")
        if isinstance(name, str):
            outputs[name] = _relation(name)
    graph = Graph()
    manifest = project.manifest
    for uid, node in {**manifest.get("nodes", {}), **manifest.get("sources", {})}.items():
        graph.add(Node(uid, "dbt", (node.get("name", ""),),
                       node.get("original_file_path", ""), tuple(node.get("tags") or ()),
                       set(manifest.get("parent_map", {}).get(uid, ()))))
    specs: dict[str, JobSpec] = {}
    by_output: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for f in files:
        rel = f.relative_to(project.root).as_posix() if f.is_relative_to(project.root) \
            else str(f)
        words = DbtWords(str(f), settings, env, outputs=outputs, catalog=attach_alias(db))
        scope = make_scope(f, env, allowed_paths, allowed_hosts)
        spec = load_job(f, scope=scope, words=words)
        node_id = f"job:{rel}"
        specs[node_id] = spec
        by_output[spec.name] = node_id
        refs[node_id] = list(words.job_refs)
        graph.add(Node(node_id, "job", (spec.name, f.stem), rel, tuple(spec.tags),
                       set(spec.depends_on)))
    for node_id, names in refs.items():
        graph.nodes[node_id].parents |= {by_output[n] for n in names if n in by_output}
    return ProjectJobs(project, db, specs, outputs, graph)


def run_project(settings: DbtSettings, select: tuple[str, ...] = (),
                exclude: tuple[str, ...] = (), *, db: str | None = None, wait: bool = False,
                max_wait: float | None = None, env: dict | None = None,
                allowed_paths: tuple[str, ...] = (), allowed_hosts: tuple[str, ...] = (),
                log: Callable[[str], None] = lambda m: None, dry_run: bool = False,
                state_db: str | None = None, lock_timeout: float | None = None
                ) -> DbtRunReport:
    """Run (`dry_run`: only list) every selected job in dependency order."""
    started = time.monotonic()
    jobs = load_project_jobs(settings, db, env, allowed_paths, allowed_hosts)
    chosen = jobs.graph.order(jobs.graph.select(select, exclude))
    report = DbtRunReport(project=jobs.project.name, db=jobs.db,
                          selected=[jobs.graph.nodes[i].path for i in chosen])
    blocked: dict[str, str] = {}   # node id -> why its downstream is skipped
    for node_id in chosen:
        node, spec = jobs.graph.nodes[node_id], jobs.specs[node_id]
        result = JobResult(job=node.path, name=spec.name, depends_on=list(spec.depends_on),
                           reads_jobs=[jobs.graph.nodes[p].path for p in sorted(node.parents)
                                       if p in jobs.specs])
        report.jobs.append(result)
        upstream = [p for p in sorted(jobs.graph.ancestors(node_id)) if p in blocked]
        if dry_run:
            result.status = "selected"
            continue
        if upstream:
            result.skipped_because = (f"upstream job {jobs.graph.nodes[upstream[0]].path} "
                                      f"{blocked[upstream[0]]}")
            blocked[node_id] = "was skipped"
            log(f"{node.path}: skipped ({result.skipped_because})")
            continue
        log(f"{node.path}: run")
        options = api.Options(db=jobs.db, env=env, dbt=settings, dbt_outputs=jobs.outputs,
                              allowed_paths=allowed_paths, allowed_hosts=allowed_hosts,
                              log=lambda m, p=node.path: log(f"{p}: {m}"), state_db=state_db)
        if lock_timeout is not None:
            options.lock_timeout = lock_timeout
        try:
            run = api.run(str(jobs.project.root / node.path), options, wait=wait,
                          max_wait=max_wait)
            result.report = run.to_dict()
            result.exit_code = run.exit_code
        except WarehouseBatchError as e:
            result.exit_code, result.error = e.exit_code, e.to_dict()
            log(f"{node.path}: error: {redact(str(e))}")
        except Exception as e:   # a bug: reported, and the other jobs still run
            result.exit_code = EXIT_INTERNAL
            result.error = {"error": type(e).__name__, "message": redact(str(e)),
                            "traceback": redact(traceback.format_exc())}
            log(f"{node.path}: internal error: {redact(traceback.format_exc())}")
        result.status = {EXIT_OK: "done", EXIT_PENDING: "pending",
                         EXIT_FAILED_ROWS: "failed_rows"}.get(result.exit_code, "error")
        if result.exit_code not in (EXIT_OK, EXIT_FAILED_ROWS):
            blocked[node_id] = "is pending" if result.exit_code == EXIT_PENDING else "failed"
    report.elapsed_seconds = time.monotonic() - started
    report.finished_at = dt.datetime.now(dt.timezone.utc)
    return report
