"""The library: one function per lifecycle step. The CLI, Dagster, Airflow and dbt call these.

Every function opens the DuckDB file for one phase of work and closes it again, so no lock is
held while a batch runs for hours; a file another process holds is waited for up to
`Options.lock_timeout`, then `BusyError` (exit 75). Inside a process that already holds the
file (dbt-duckdb), pass its connection as `Options.connection`; `Options.state_db` keeps the
state in a file of its own, so the warehouse is opened only to read sources and write the
output table (`db.Target`). Every function is safe to repeat and safe after a crash:
`run` first finishes whatever an earlier process left half-done.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import duckdb

from . import budget, notify
from .attempts import set_command
from .clock import Backoff, Clock, SystemClock, trouble_backoff
from .collect import collect_ready, note_lost, poll
from . import project
from .db import (DB_ENV, DEFAULT_DB, MEMORY_ENV, STATE_DB_ENV, Target, attach_alias,
                 default_db_path, default_lock_timeout, default_state_db, reading, require_exists, session, warehouse_released)
from .dbtproject import DbtSettings
from .dbtwords import DbtWords
from .errors import (LookupUndecidedError,
                     ProviderError, UnreachableError, WarehouseBatchError)
from .jobrows import mark_answered, record_job_rows
from .keys import redact
from .jsonl import line_sql, write_payload
from .lightpoll import retrieve
from .ledger import (BatchProviders, is_not_found, known_batch_ids, lost_batches, mark_lost,
                     record_poll, submitted_batches,
                     unfinished_batches, update_batch)
from .output import (count_rows, drop_output, succeeded_since_sql, update_answers,
                     write_output)
from .ownership import (check_output, claim_output, record_job_hash, refuse_foreign,
                        resolve_output, stored_job_hash, stored_shape, tables_read)
from .paths import make_scope
from .pollfacts import remember
from .pollpath import job_batches, record_polls, recorded_output, state_row_counts
from .plan import PlanReport, build_plan
from .estimate import refuse_overlong
from .classify import SEND_CATEGORIES, classify
from .realtime import (TryReport, build_try_send, close_batch, pick_rows, price_plan,
                       send_unfinished, tried_rows)
from .providers.base import LedgerBatch, get_provider
from .reports import (CollectReport, RowCounts, RunReport, StatusReport, Timed, job_cost,
                      new_run_id)
from .scratch import scratch_dir
from .source import prepare
from .spec import JobSpec, load_job
from .state import SCHEMA, now_utc
from .submit import (can_advance, create_intents, discard_input, recover_orphans,
                     resume_unfinished, submit_work)


@dataclass
class Options:
    """How to run a job; everything a CLI flag can set."""

    db: str = field(default_factory=default_db_path)
    vars: dict[str, Any] = field(default_factory=dict)
    max_attempts: int | None = None
    batch_max_requests: int | None = None
    batch_max_bytes: int | None = None
    batch_max_tokens: int | None = None
    enqueued_token_limit: int | None = None
    full_refresh: bool = False
    retry_failed: bool = False            # send permanent failures again (attempts.py)
    env: Mapping[str, str] | None = None
    allowed_paths: tuple[str, ...] = ()   # folders a job may read beyond its own (paths.py)
    allowed_hosts: tuple[str, ...] = ()   # hosts a job file's base_url may name (paths.py)
    memory_limit: str | None = None       # DuckDB memory_limit (db.memory_settings)
    clock: Clock = field(default_factory=SystemClock)
    log: Callable[[str], None] = lambda message: None
    # a DuckDB connection owned by the caller (e.g. dbt-duckdb's session): every command then
    # works on a cursor of it and never opens, closes or re-attaches the warehouse (db.Target)
    connection: duckdb.DuckDBPyConnection | None = None
    state_db: str | None = field(default_factory=default_state_db)   # the state's own file
    lock_timeout: float = field(default_factory=default_lock_timeout)  # then exit 75
    create_db: bool = False               # submit/run may create a missing --db file
    dbt: DbtSettings = field(default_factory=DbtSettings)   # where ref()/source() look
    dbt_outputs: dict[str, str] = field(default_factory=dict)   # other jobs' tables by name
    allow_hooks: bool = False             # shell commands in a job's on_complete/on_failure

    # USD per UTC day (of `clock`) for every job in the state database (budget.py)
    daily_budget_usd: float | None = field(default_factory=budget.default_daily_budget)


def options_for(job_path: str, env: Mapping[str, str] | None = None, **given: Any) -> Options:
    """`Options` for a job as the command line builds them when a flag is not given: the
    environment (`env`, default the process's), then the project file found from the job's
    folder (`warehouse-batch.toml` / `[tool.warehouse-batch]`), then the defaults. For
    callers that are not the CLI (Dagster, Airflow) and run many jobs in one long process:
    the process's environment is read, never changed. `given` fields win over both (None
    counts as not given)."""
    merged = dict(os.environ if env is None else env)
    project.defaults(merged, start=Path(job_path).resolve().parent)
    fields = {k: v for k, v in given.items() if v is not None}
    fields.setdefault("db", merged.get(DB_ENV) or DEFAULT_DB)
    fields.setdefault("state_db", merged.get(STATE_DB_ENV) or None)
    fields.setdefault("memory_limit", merged.get(MEMORY_ENV) or None)
    return Options(env=merged, **fields)


def target(options: Options, spec: JobSpec | None = None) -> Target:
    """Where the command's data lives (`db.Target`): the options' database, connection and
    state database (else the job's `state_db`), and how long to wait for a busy file."""
    state_db = options.state_db or (getattr(spec, "state_db", None) if spec else None)
    return Target(db=options.db, connection=options.connection, state_db=state_db,
                  lock_timeout=options.lock_timeout, clock=options.clock)


def tables_named(spec: JobSpec) -> list[str]:
    """The tables (not files) the job's SELECT names: a job that names none may start a new
    database; one that does needs its --db to exist (else it is most likely a typo)."""
    con = duckdb.connect(":memory:")
    try:
        refs = tables_read(con, spec.sql)
    finally:
        con.close()
    return sorted(".".join(p for p in ref if p) for ref in refs
                  if not any(c in ref[2] for c in "./*\\"))   # 'x.csv', '/d/x': files


def load(job_path: str, options: Options | None = None) -> JobSpec:
    """Read a job file and apply option overrides (attempts, chunk limits)."""
    options = options or Options()
    scope = make_scope(job_path, options.env, options.allowed_paths, options.allowed_hosts,
                       allow_hooks=options.allow_hooks)
    # a ref() into another catalog than the warehouse's is refused (on a caller's connection
    # the caller, e.g. dbt, built the refs itself)
    catalog = (attach_alias(options.db)
               if options.db != ":memory:" and options.connection is None else None)
    words = DbtWords(job_path, options.dbt, options.env or os.environ,
                     outputs=dict(options.dbt_outputs), catalog=catalog)
    spec = load_job(job_path, vars=options.vars, scope=scope, words=words)
    for name in ("max_attempts", "batch_max_requests", "batch_max_bytes", "batch_max_tokens",
                 "enqueued_token_limit", "memory_limit"):
        value = getattr(options, name)
        if value is not None:
            setattr(spec, name, value)
    return spec


def plan(job_path: str, options: Options | None = None) -> PlanReport:
    """What `run` would send, and why. Sends nothing and writes nothing."""
    options = options or Options()
    spec = load(job_path, options)
    provider = get_provider(spec, options.env)
    where = target(options, spec)
    require_exists(where, create=True, tables=lambda: [] if options.create_db
                   else tables_named(spec))
    if options.db != ":memory:" and not Path(options.db).exists():
        options.log(f"{options.db} does not exist: planning against an empty database; plan "
                    "creates no file")
    with session(where, create=False, memory_limit=spec.memory_limit,
                 warehouse="read") as con:
        set_command(con, None, options.retry_failed)
        check_output(con, spec)
        budget.require_price(con, spec, provider.name)
        prepared = prepare(con, spec, provider, options.log)
        report = build_plan(con, prepared)
        report.budget = budget.plan_view(con, spec, provider.name, _caps(spec, options),
                                         cache_tokens=report.cache_write_tokens)
        price_plan(con, prepared, report)   # real-time sends at real-time prices
        report.cost_usd = job_cost(con, spec.name)   # spent so far (the CLI's --json)
        report.depends_on = list(spec.depends_on)
        return report


_notified = notify.failures_notified(load, target, Options)   # on_failure (notify.py)


@_notified
def submit(job_path: str, options: Options | None = None) -> RunReport:
    """Submit everything that needs sending, then return (never waits for batches)."""
    return _step(job_path, options or Options(), "submit", collect=False)


@_notified
def collect(job_path: str, options: Options | None = None) -> RunReport:
    """Ingest every batch that has ended, rebuild the output table; submits nothing."""
    return _step(job_path, options or Options(), "collect", submit=False)


@_notified
def run(job_path: str, options: Options | None = None, *, wait: bool = False,
        max_wait: float | None = None, backoff: Backoff | None = None) -> RunReport:
    """Collect what is ready, submit what is needed, collect again; with `wait`, repeat
    (sleeping with exponential backoff) until every row is terminal or `max_wait` passes.

    Transient provider trouble (429, 5xx, timeouts, dropped connections, on any call) ends a
    pass early with the ledger consistent; with `wait` the next pass comes after a backoff
    that honours the provider's `retry-after`, without it the report says why it stopped
    (exit 75)."""
    options = options or Options()
    report = _step(job_path, options, "run")
    if not wait:
        return report
    report.finished_at = None
    backoff = backoff or Backoff()
    trouble = trouble_backoff()
    started = options.clock.now()
    while report.pending:
        if report.submitted.held and not report.collected.batches_in_progress \
                and not report.submitted.batches_waiting and report.stopped is None:
            options.log("the rows left are held back by a budget cap: not waiting for it")
            break   # a cap is not waited out: nothing running will free it
        if report.stopped is not None:
            delay = trouble.delay_for(report.retry_after)
            why = f"provider trouble ({report.stopped}); trying again in {delay:.0f}s"
        else:
            delay = backoff.next_delay()
            why = f"{report.rows.pending:,} rows pending; next poll in {delay:.0f}s"
        if max_wait is not None and options.clock.now() + delay - started > max_wait:
            options.log(f"stopping after {max_wait:.0f}s; rows still pending: "
                        f"{report.rows.pending}")
            break
        options.log(why)
        options.clock.sleep(delay)
        had_trouble = report.stopped is not None
        report.stopped = None
        moved = _pass(job_path, options, report, full=had_trouble)
        if report.stopped is None:
            trouble.reset()
            if moved or had_trouble:
                backoff.reset()
    report.finish()
    return report


def _step(job_path: str, options: Options, command: str, *, submit: bool = True,
          collect: bool = True) -> RunReport:
    """A command's first (often only) pass, with its report and its `runs` row."""
    spec = load(job_path, options)
    report = RunReport(run_id=new_run_id(), job=spec.name, command=command, table=spec.name)
    report.start()
    _pass(job_path, options, report, first=True, submit=submit, collect=collect)
    report.finish()
    return report


def _pass(job_path: str, options: Options, report: RunReport, *, first: bool = False,
          submit: bool = True, collect: bool = True, full: bool = False) -> bool:
    """One pass: collect ended batches, submit new work, collect again, bring the output
    table up to date.

    A pass that only needs to poll (`collect`, or `run` while batches are in flight and none
    has ended, nothing unfinished and the job file unchanged) asks the provider and records
    what it said, and nothing else (`_poll_only`). Otherwise the source is read (once), new
    work submitted, and the output table updated by what changed. Returns whether anything
    moved (a later pass of `run --wait` only polls unless something ended or is left to
    submit, or `full` is set: the previous pass was cut short).

    A transient provider error ends the pass early (`report.stopped` says why; the ledger is
    consistent after every call, so the next pass carries on); any other error is raised.
    Either way the output table is brought up to date before the pass ends: it is always
    there and current, pending rows showing as pending.
    """
    spec = load(job_path, options)
    provider = get_provider(spec, options.env)
    since = now_utc()
    where = target(options, spec)
    require_exists(where, create=submit,
                   tables=lambda: [] if options.create_db else tables_named(spec))
    if collect and not full and not options.full_refresh \
            and not (submit and options.retry_failed) \
            and _poll_only(spec, provider, options, report, may_send=submit, first=first):
        return False
    with session(where, memory_limit=spec.memory_limit) as con:
        set_command(con, report.run_id, options.retry_failed)
        prepared = None
        keep_rows = True if options.full_refresh and first else None
        if first:
            # every check runs before anything is written: a refused job leaves no trace.
            # A command that sends nothing (collect) reads no source: answers are written
            # into the output rows in place.
            check_output(con, spec)
            if submit:
                budget.require_price(con, spec, provider.name)
                prepared = prepare(con, spec, provider, options.log, keep_rows=keep_rows)
                refuse_overlong(con, prepared)   # rows no model can answer: refused at once
                report.rows_rendered += prepared.rendered
            claim_output(con, spec)
        _record_run(con, report, spec)   # once per command (a poll-only pass records none)
        before = report.collected.batches_collected
        error: WarehouseBatchError | None = None
        try:
            if collect:
                with warehouse_released(con):   # provider calls: the warehouse is not held
                    _merge(report.collected, collect_ready(con, provider, spec.name,
                                                           options.log))
            report.polls += 1
            if not submit:
                report.collected.warnings += _left_half_done(con, spec.name)
            moved = report.collected.batches_collected > before
            if moved:   # rows answered now need no rendering by the prepare below
                mark_answered(con, spec.name, succeeded_since_sql(since))
            if not first and not full and not moved \
                    and not can_advance(con, provider, spec.name) \
                    and submitted_batches(con, spec.name):
                return False
            if first and options.full_refresh:
                con.execute(f"DELETE FROM {SCHEMA}.job_rows WHERE job_name = ?", [spec.name])
                drop_output(con, spec)
            if prepared is None and submit:
                prepared = prepare(con, spec, provider, options.log)
                refuse_overlong(con, prepared)
                report.rows_rendered += prepared.rendered
            if submit:
                with warehouse_released(con):
                    submitted = submit_work(con, prepared, report.run_id, options.log,
                                            _caps(spec, options))
                    record_job_rows(con, spec.name, report.run_id, prepared.rows)
                    _merge(report.submitted, submitted)
                    if send_unfinished(con, provider, spec.name, options.clock,
                                       report.submitted, report.collected, options.log):
                        mark_answered(con, spec.name, succeeded_since_sql(since))
                    if collect and (submitted.batches_created or submitted.batches_resumed):
                        _merge(report.collected, collect_ready(con, provider, spec.name,
                                                               options.log))
        except ProviderError as e:
            if not _transient(e, first):
                error = e
            else:
                report.stopped, report.retry_after = redact(str(e)), e.info.retry_after
                report.transient_errors += 1
                options.log(f"provider trouble: {report.stopped}")
        except WarehouseBatchError as e:
            error = e
        except BaseException as e:   # a bug or an interrupt: still leave the table current
            _write_after_error(con, report, spec, provider, prepared, since, e, options)
            raise
        if error is not None:
            _write_after_error(con, report, spec, provider, prepared, since, error, options)
            raise error
        try:
            report.rows = _bring_output_up_to_date(con, spec, provider, prepared, since,
                                                   options)
        except WarehouseBatchError as e:   # e.g. the export copy could not be written
            _finish_run(con, report, error=e)
            raise
        record_job_hash(con, spec, spec.fingerprint())
        _remember(con, spec, options)   # so the next poll need not read the job in full
        _finish_run(con, report)
        report.cost_usd = job_cost(con, spec.name)
        due = notify.after_pass(con, spec, report, options.env)
    notify.deliver(due, where, report, options.env, options.log)   # no file held
    return True


def _left_half_done(con: duckdb.DuckDBPyConnection, job_name: str) -> list[str]:
    """For `collect`, which sends nothing: the job's batches a crash (or a stopped pass) left
    before they were created or while a real-time send was under way, which only a command
    that sends (`run`, `submit`) finishes. Without this, `collect` would only say "come back
    later" about rows it will never move."""
    warnings = []
    for batch in unfinished_batches(con, job_name):
        if batch.mode == "realtime":
            (answered,) = con.execute(f"SELECT count(*) FROM {SCHEMA}.realtime_lines "
                                      "WHERE batch_id = ?", [batch.batch_id]).fetchone()
            what = (f"was cut short while it was sent in real time ({answered:,} of "
                    f"{batch.request_count:,} request(s) answered; their answers are kept)")
        else:
            what = f"was left half done ({batch.state}) before the provider had it"
        warnings.append(f"batch {batch.batch_id} {what}; `collect` sends nothing: `run` or "
                        "`submit` finishes it")
    return warnings


def _bring_output_up_to_date(con: duckdb.DuckDBPyConnection, spec: JobSpec, provider: Any,
                             prepared: Any, since: dt.datetime, options: Options) -> RowCounts:
    """The output table after a pass: from the prepared rows when the source was read,
    else by updating the answers collected since the pass began (preparing only when the
    table is not there)."""
    if prepared is not None:
        return write_output(con, prepared, since)
    counts = update_answers(con, spec, provider, since)
    if counts is None:
        prepared = prepare(con, spec, provider, options.log, keep_rows=True)
        counts = write_output(con, prepared, since)
    return counts


def _poll_only(spec: JobSpec, provider: Any, options: Options, report: RunReport, *,
               may_send: bool, first: bool) -> bool:
    """Cheap polling: when the job has batches in flight, nothing half-submitted, an output
    table, and (for a command that may send) a job file unchanged since the source was last
    read, ask the provider for each batch and, if none has ended, record what it said and
    return True having done nothing else: no source read, no output rebuild, no `runs` row,
    and the file opened read-only except for the brief ledger update. Returns False (the
    caller does a full pass) when anything ended or the provider no longer knows a batch (the
    full pass confirms and records it); transient provider trouble ends the poll as it ends a
    full pass (`report.stopped`)."""
    where = target(options, spec)
    with reading(where, spec.memory_limit) as con:
        if con is None:
            return False
        try:
            table = resolve_output(con, spec)
        except WarehouseBatchError:
            return False
        batches = submitted_batches(con, spec.name)
        built = (recorded_output(con, table.key) if where.state_db
                 else stored_shape(con, spec))   # a poll never opens the warehouse
        if not batches or (may_send and unfinished_batches(con, spec.name)) \
                or (may_send and budget.held(con, spec.name)) or built is None \
                or (may_send and stored_job_hash(con, spec) != spec.fingerprint()):
            return False
    providers = BatchProviders(provider)
    polled = []
    for batch in batches:
        try:
            remote = retrieve(providers.for_batch(batch), batch)   # SDK unless running
        except ProviderError as e:
            if is_not_found(e) or not _transient(e, first):
                return False   # the full pass confirms a lost batch, or reports the error
            report.stopped, report.retry_after = redact(str(e)), e.info.retry_after
            report.transient_errors += 1
            options.log(f"provider trouble: {report.stopped}")
            break
        if remote.ended:
            return False
        polled.append((batch, remote))
    with session(where, memory_limit=spec.memory_limit, warehouse="none") as con:
        record_polls(con, polled)
        set_command(con, report.run_id, options.retry_failed)
        if where.state_db:
            report.rows = state_row_counts(con, spec.name)
        else:
            _remember(con, spec, options)
            report.rows = count_rows(con, table, spec.max_attempts)
        report.cost_usd = job_cost(con, spec.name)
    report.polls += 1
    report.collected.batches_polled += len(polled)
    report.collected.batches_in_progress = len(polled)
    report.collected.statuses.update({r.provider_batch_id: r.status for _, r in polled})
    if report.stopped is None:
        options.log(f"{len(polled)} batch(es) in progress, none ended: nothing else to do")
    return True


def _caps(spec: JobSpec, options: Options) -> budget.Caps:
    """The budget caps of this command: the job's, the daily one, today by its clock."""
    return budget.Caps.of(spec, options.daily_budget_usd, options.clock)


def _remember(con: duckdb.DuckDBPyConnection, spec: JobSpec, options: Options) -> None:
    """Record what a later poll needs of this job (`pollfacts`): the CLI's cheap poll
    (`pollpath`) then neither parses the job file nor imports the pipeline."""
    out = resolve_output(con, spec)
    remember(con, spec, (out.schema, out.table), options.vars, options.max_attempts,
             options.env)


def _transient(error: ProviderError, first: bool) -> bool:
    """Whether a provider error is trouble to wait out rather than one a person must fix.
    An unreachable provider on a command's first pass is more often a wrong base URL or no
    network than a blip: it stops the command (exit 3)."""
    if not error.retryable:
        return False
    return not (first and isinstance(error, UnreachableError))


def _write_after_error(con: duckdb.DuckDBPyConnection, report: RunReport, spec: JobSpec,
                       provider: Any, prepared: Any, since: dt.datetime, error: BaseException,
                       options: Options) -> None:
    """Bring the output table up to date and close the `runs` row when a pass stops on an
    error, so the table stays current; never masks the error itself."""
    try:
        if prepared is not None:
            report.rows = write_output(con, prepared, since)
        else:
            report.rows = update_answers(con, spec, provider, since) or report.rows
        _finish_run(con, report, error=error)
    except Exception as e:   # the original error is the one to report
        options.log(f"could not bring the output table up to date after the error: {e}")


_LATEST = {"batches_in_progress", "batches_waiting", "waiting", "held"}   # snapshots


def _merge(total: Any, part: Any) -> None:
    """Add one pass's report into the command's running report."""
    for f in dataclasses.fields(total):
        a, b = getattr(total, f.name), getattr(part, f.name)
        if f.name in _LATEST:
            setattr(total, f.name, b)
        elif isinstance(a, int):
            setattr(total, f.name, a + b)
        elif isinstance(a, list):
            a.extend(b)
        elif isinstance(a, dict):
            a.update(b)


def _record_run(con: duckdb.DuckDBPyConnection, report: RunReport, spec: JobSpec) -> None:
    con.execute(f"""INSERT OR IGNORE INTO {SCHEMA}.runs (run_id, job_name, job_file, command, provider,
        model, started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')""",
                [report.run_id, spec.name, spec.path, report.command, spec.provider, spec.model,
                 now_utc()])


def _finish_run(con: duckdb.DuckDBPyConnection, report: RunReport,
                error: BaseException | str | None = None) -> None:
    status = "error" if error else report.to_dict()["status"]
    if error is None and report.stopped is not None:
        error = report.stopped   # kept as the reason (status `pending`)
    con.execute(f"""UPDATE {SCHEMA}.runs SET finished_at = ?, status = ?, rows_selected = ?,
        rows_done = ?, requests_submitted = ?, batches_submitted = ?, results_collected = ?,
        error = ? WHERE run_id = ?""",
                [now_utc(), status, report.rows.rows, report.rows.succeeded,
                 report.submitted.requests_submitted, report.submitted.batches_created,
                 report.collected.succeeded + report.collected.failed,
                 redact(str(error)) if error is not None else None, report.run_id])


# -- status, cancel, reconcile -----------------------------------------------------------------

def status(job_path: str, options: Options | None = None, refresh: bool = True) -> StatusReport:
    """Where the job stands: each batch (polled from the provider unless `refresh` is off)
    and the rows by status, as the output table shows them. Ingests nothing and reads no
    source: the file is opened read-only, and read-write only to record the polls."""
    options = options or Options()
    spec = load(job_path, options)
    provider = get_provider(spec, options.env)
    warnings: list[str] = []
    timed = Timed()
    timed.start()
    where = target(options, spec)
    require_exists(where)
    with reading(where, spec.memory_limit) as con:
        readable = con is not None
        batches = submitted_batches(con, spec.name) if readable and refresh else []
    polled, gone = [], []
    providers = BatchProviders(provider)
    for batch in batches:
        try:
            polled.append((batch, retrieve(providers.for_batch(batch), batch)))
        except ProviderError as e:
            if not is_not_found(e):
                raise
            gone.append(batch)   # confirmed (a second call) before it is marked lost
    if polled or gone or not readable:
        # with a state db status reads the state only: rows are counted from it
        with session(where, memory_limit=spec.memory_limit, warehouse="none") as con:
            for batch, remote in polled:
                record_poll(con, batch, remote)
            if not where.state_db:
                _remember(con, spec, options)
            late = gone if readable else (submitted_batches(con, spec.name) if refresh else [])
            for batch in late:
                if poll(con, providers.for_batch(batch), batch) is None:
                    lost = CollectReport()
                    note_lost(con, batch, lost)
                    warnings.extend(lost.warnings)
            return _status_report(con, spec, warnings, timed)
    with reading(where, spec.memory_limit) as con:
        if con is None:   # a poll found no state: nothing was ever submitted
            return StatusReport(spec.name, [], RowCounts(), warnings, started_at=timed.started_at)
        return _status_report(con, spec, warnings, timed)


def _status_report(con: duckdb.DuckDBPyConnection, spec: JobSpec, warnings: list[str],
                   timed: Timed) -> StatusReport:
    report = StatusReport(spec.name, *_standing(con, spec), warnings,
                          held=budget.held(con, spec.name))
    report.started_like(timed)
    report.finish(job_cost(con, spec.name))
    return report


def _standing(con: duckdb.DuckDBPyConnection, spec: JobSpec) -> tuple[list[dict], RowCounts]:
    """The job's batches (ledger rows) and its rows by status: the output table's counts,
    or, before it exists, the last submit's rows against the answer cache."""
    batches = job_batches(con, spec.name)
    if stored_shape(con, spec) is not None:
        set_command(con, None, False)
        return batches, count_rows(con, resolve_output(con, spec), spec.max_attempts)
    row = con.execute(f"""SELECT count(*),
            count(*) FILTER (WHERE r.status = 'succeeded'),
            count(*) FILTER (WHERE r.status = 'failed' AND NOT r.retryable)
        FROM {SCHEMA}.job_rows j LEFT JOIN {SCHEMA}.results r USING (request_hash)
        WHERE j.job_name = ?""", [spec.name]).fetchone()
    return batches, RowCounts(rows=row[0], succeeded=row[1], failed=row[2],
                              pending=row[0] - row[1] - row[2])


@dataclass
class CancelReport:
    job: str
    cancelled: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    not_cancelled: list[str] = field(default_factory=list)   # unproven: maybe not ours
    lost: list[str] = field(default_factory=list)             # the provider no longer knows it
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def cancel(job_path: str, options: Options | None = None) -> CancelReport:
    """Cancel the job's batches on the provider (each through the provider recorded for it).
    Finished answers stay collectable: run `collect` afterwards. Batches never created are
    abandoned (their rows are sent again by the next run). A batch adopted by shape and not
    yet proven ours is never cancelled (it may be another job's); a batch the provider no
    longer knows is marked lost rather than failing the command."""
    options = options or Options()
    spec = load(job_path, options)
    providers = BatchProviders(get_provider(spec, options.env))
    report = CancelReport(spec.name)
    where = target(options, spec)
    require_exists(where)
    with session(where) as con, scratch_dir() as tmp:
        refuse_foreign(con, spec)
        for batch in unfinished_batches(con, spec.name):
            provider = providers.for_batch(batch)
            if batch.mode == "realtime":   # keep the answers it got; the rest go next run
                close_batch(con, provider, batch, CollectReport())
                report.abandoned.append(batch.batch_id)
                continue
            found = None
            if batch.state == "creating":   # it may exist: cancel it rather than forget it
                payload = write_payload(con, line_sql(provider, "r.custom_id", "r.body"),
                                        batch.batch_id, Path(tmp))
                try:
                    found = provider.find_batch(batch, payload, known_batch_ids(con))
                except LookupUndecidedError as e:
                    report.not_cancelled.append(batch.batch_id)
                    report.warnings.append(f"batch {batch.batch_id} not cancelled: {e}")
                    continue
            if found is None:
                update_batch(con, batch.batch_id, state="abandoned", error="cancelled by user")
                report.abandoned.append(batch.batch_id)
                report.warnings += filter(None, [discard_input(provider, batch)])
                continue
            update_batch(con, batch.batch_id, state="submitted",
                         provider_batch_id=found.provider_batch_id, submitted_at=now_utc(),
                         proven=None if found.proven else False)
        for batch in submitted_batches(con, spec.name):
            if batch.proven is False:
                report.not_cancelled.append(batch.provider_batch_id)
                report.warnings.append(
                    f"batch {batch.provider_batch_id} not cancelled: it was adopted by its "
                    "shape and is not proven ours (it may be another job's); it is checked "
                    "when it ends")
                continue
            provider = providers.for_batch(batch)
            try:
                remote = provider.cancel(batch)
            except ProviderError as e:
                if not is_not_found(e):
                    raise
                report.warnings.append(mark_lost(con, batch, provider.name, str(e)))
                report.lost.append(batch.batch_id)
                continue
            update_batch(con, batch.batch_id, provider_status=remote.status)
            report.cancelled.append(remote.provider_batch_id)
    return report


@_notified
def reconcile(job_path: str, options: Options | None = None) -> RunReport:
    """Finish what a crashed process left: rebuild missing ledger rows, resume half-submitted
    batches (finding lost creates by their tag) and ingest ended ones; list the job's `lost`
    batches (the provider no longer knows them; their requests go with the next run) in
    `collected.lost`. Sends no new work."""
    options = options or Options()
    spec = load(job_path, options)
    provider = get_provider(spec, options.env)
    report = RunReport(run_id=new_run_id(), job=spec.name, command="reconcile", table=spec.name)
    report.start()
    where = target(options, spec)
    require_exists(where)
    with session(where) as con:
        set_command(con, report.run_id, options.retry_failed)
        check_output(con, spec)
        prepared = prepare(con, spec, provider, options.log)
        claim_output(con, spec)
        _record_run(con, report, spec)
        with scratch_dir() as tmp:
            recover_orphans(con, prepared, Path(tmp), report.submitted)
            if unfinished_batches(con, spec.name):
                provider.preflight()
                resume_unfinished(con, prepared, Path(tmp), report.submitted, options.log)
        # a real-time send a crash cut short: the requests without a stored answer
        send_unfinished(con, provider, spec.name, options.clock, report.submitted,
                        report.collected, options.log)
        _merge(report.collected, collect_ready(con, provider, spec.name, options.log))
        # every lost batch of the job, with its reason (their requests go with the next run)
        known = {b["batch_id"] for b in report.collected.lost}
        report.collected.lost.extend(b for b in lost_batches(con, spec.name)
                                     if b["batch_id"] not in known)
        report.rows = write_output(con, prepared)
        _finish_run(con, report)
        report.finish(job_cost(con, spec.name))
        due = notify.after_pass(con, spec, report, options.env)
    notify.deliver(due, where, report, options.env, options.log)   # no file held
    return report


def try_rows(job_path: str, options: Options | None = None, *, rows: int = 3,
             sample: bool = False) -> TryReport:
    """Send `rows` rows of the job (the SELECT's first, or a random `sample`) through the
    provider's real-time API and return them with their answers, to check a prompt before
    paying for a batch. The output table and the job's row records (`job_rows`) are not
    touched; the answers go into the results cache under their request hashes like any
    other (a later run sends those rows no more). Rows already answered, or in flight in a
    batch, are not sent again: their cached answer (or none yet) is shown."""
    options = options or Options()
    spec = load(job_path, options)
    provider = get_provider(spec, options.env)
    where = target(options, spec)
    require_exists(where, create=True,
                   tables=lambda: [] if options.create_db else tables_named(spec))
    run = RunReport(run_id=new_run_id(), job=spec.name, command="try", table=spec.name)
    report = TryReport(spec.name, provider.name, spec.model, run.run_id)
    with session(where, memory_limit=spec.memory_limit) as con:
        set_command(con, run.run_id, False)
        check_output(con, spec)
        prepared = prepare(con, spec, provider, options.log, keep_rows=True)
        pick_rows(con, rows, sample)
        _record_run(con, run, spec)
        try:
            classify(con, prepared)
            if build_try_send(con, SEND_CATEGORIES):
                create_intents(con, prepared, run.run_id, "realtime")
            with warehouse_released(con):
                send_unfinished(con, provider, spec.name, options.clock, run.submitted,
                                run.collected, options.log)
            report.requests_sent = run.submitted.requests_realtime
        except WarehouseBatchError as e:
            _finish_run(con, run, error=e)
            raise
        report.rows = tried_rows(con, run.run_id)
        _finish_run(con, run)
        report.cost_usd = job_cost(con, spec.name)
    return report


__all__ = ["Options", "RunReport", "StatusReport", "CancelReport", "PlanReport", "LedgerBatch",
           "TryReport", "plan", "submit", "collect", "run", "status", "cancel", "reconcile",
           "try_rows", "load"]
