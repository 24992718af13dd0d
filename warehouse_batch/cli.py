"""The `warehouse-batch` command: each subcommand is one library call plus error translation.

Exit codes (also in the README):
  0  done: every selected row has an answer
  1  internal error (a bug: please report it)
  2  user error: the job file, the data, or the command line needs fixing
  3  provider error a person must fix: missing/refused API key, no permission, unreachable
     provider, a request the provider refused
  4  done, but some rows failed (see the _status, _error and _failure columns)
  5  `check` found alerts (each is printed; --json lists them)
  75 work still pending: batches are running, or the provider had transient trouble
     (429, 5xx, timeouts); run `collect` or `run` again later
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import click

from . import __version__, jobset
from . import project as project_file
from .clock import Backoff
from .db import (check_lock_timeout, check_memory_limit, default_db_path, default_lock_timeout,
                 default_state_db)
from .errors import (EXIT_INTERNAL, EXIT_PENDING, EXIT_USER, BusyError, UserError,
                     WarehouseBatchError)
from .keys import redact
from .pollpath import PollRequest, try_poll, try_status
from .reports import RunReport, iso_now, stamp

if TYPE_CHECKING:
    from . import api


def _api() -> ModuleType:
    """The library (`warehouse_batch.api`), imported by the commands that need it."""
    from . import api   # here, not at the top, for start-up time: a poll skips it (pollpath)
    return api


# when this command started (ISO, monotonic): every --json report carries its timing
_STARTED: list = [iso_now(), time.monotonic()]


def _stamped(d: dict, exit_code: int, cost_usd: Any = None) -> dict:
    """`d` with the fields every --json report carries: exit_code, started_at, finished_at
    (ISO 8601, UTC), elapsed_seconds of the whole command, cost_usd so far."""
    return stamp(d, exit_code, _STARTED[0], time.monotonic() - _STARTED[1], cost_usd)


def _emit(obj: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        d = obj.to_dict() if hasattr(obj, "to_dict") else obj
        d = _stamped(d, getattr(obj, "exit_code", 0), getattr(obj, "cost_usd", None))
        click.echo(redact(json.dumps(d, indent=2, default=str)))
    else:
        human()


def _logger(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.strftime('%H:%M:%S')}] {redact(message)}", err=True)
    return log


def _parse_vars(values: tuple[str, ...]) -> dict[str, Any]:
    """`--var KEY=VALUE` pairs: VALUE is JSON when it parses (3, true, null, "text"), else
    text. The job binds each as a SQL literal (sqlvars.py), never as SQL."""
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--var")
        k, v = item.split("=", 1)
        if not k:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--var")
        if k in out:
            raise click.BadParameter(f"{k} is given twice", param_hint="--var")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _checked(check: Callable[[str], Any]) -> Callable:
    """A click callback that runs `check` on a given value (None passes through) and turns
    its ValueError into click's usage error."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return callback


_memory_limit = _checked(check_memory_limit)
_lock_timeout = _checked(check_lock_timeout)


def _check_usd(value: str) -> float:
    from .budget import check_usd
    return check_usd(value)


_usd = _checked(_check_usd)
_daily_budget = click.option(
    "--daily-budget-usd", callback=_usd, default=None, metavar="USD",
    help="cap on what every job of the state database may spend per UTC day (billed + "
         "reserved worst case); a batch that would cross it is not created [default: "
         "$WAREHOUSE_BATCH_DAILY_BUDGET_USD, else the project file's daily_budget_usd, else "
         "none]")


dbt_options = [
    click.option("--project-dir", default=None, metavar="DIR",
                 help="the dbt project ref()/source() resolve in [default: $DBT_PROJECT_DIR, "
                      "else the nearest dbt_project.yml above the job file or here]"),
    click.option("--profiles-dir", default=None, metavar="DIR",
                 help="where profiles.yml is [default: $DBT_PROFILES_DIR, else here, else "
                      "the project, else ~/.dbt]"),
    click.option("--target", default=None, metavar="NAME",
                 help="the dbt target [default: $DBT_TARGET, else the profile's]"),
]


def job_options(f: Callable) -> Callable:
    """Options every job command takes."""
    decorators = [
        click.argument("jobs", nargs=-1, metavar="[JOB|FOLDER|GLOB]..."),
        click.option("--select", "selects", multiple=True, metavar="tag:TAG|NAME",
                     help="with several jobs: only those with this tag or name (job file "
                          "stem or output name; * and ? match); repeatable"),
        click.option("--exclude", "excludes", multiple=True, metavar="tag:TAG|NAME",
                     help="with several jobs: leave out those with this tag or name; "
                          "repeatable"),
        click.option("--db", default=None, metavar="PATH",
                     help="DuckDB file holding the sources, the state and the output table "
                          "[default: $WAREHOUSE_BATCH_DB or ./warehouse.duckdb]"),
        click.option("--var", "vars_", multiple=True, metavar="KEY=VALUE",
                     help="a value for {{ var('KEY') }} (bound as a SQL literal) or vars.KEY in "
                          "templates (JSON or text); repeatable"),
        click.option("--json", "as_json", is_flag=True, help="print a JSON report on stdout"),
        click.option("-q", "--quiet", is_flag=True, help="no progress messages on stderr"),
        click.option("--max-attempts", type=click.IntRange(min=1), default=None,
                     help="retryable failures allowed per request [default: job's, else 3]"),
        click.option("--batch-max-requests", type=click.IntRange(min=1), default=None,
                     help="requests per provider batch [default: provider limit]"),
        click.option("--batch-max-bytes", type=click.IntRange(min=1), default=None,
                     help="bytes per provider batch [default: provider limit]"),
        click.option("--batch-max-tokens", type=click.IntRange(min=1), default=None,
                     help="estimated input tokens per batch"),
        click.option("--enqueued-token-limit", type=click.IntRange(min=1), default=None,
                     help="the provider's enqueued-token limit for the model: chunks stay "
                          "under it and batches wait while it is full [default: the job's, "
                          "else as learned from the provider]"),
        click.option("--allow-path", "allow_paths", multiple=True, metavar="DIR",
                     help="a folder the job may read besides its own and its project root "
                          "(also $WAREHOUSE_BATCH_ALLOWED_PATHS); repeatable"),
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
                     help="a host a base_url in the job file may name; API keys go nowhere "
                          "else (also $WAREHOUSE_BATCH_ALLOWED_HOSTS); repeatable"),
        click.option("--allow-hooks", is_flag=True,
                     help="let the job file's on_complete/on_failure run a shell command "
                          "(also $WAREHOUSE_BATCH_ALLOW_HOOKS=1); a project file's hooks "
                          "need no allowance"),
        click.option("--state-db", default=None, metavar="PATH",
                     help="DuckDB file holding the warehouse_batch state, attached when "
                          "needed, so the --db file is opened only to read sources and write "
                          "the output table [default: $WAREHOUSE_BATCH_STATE_DB, else the "
                          "job's state_db, else the state lives in --db]"),
        click.option("--lock-timeout", callback=_lock_timeout, default=None, metavar="SECONDS",
                     help="wait this long for a file another process holds, then exit 75 "
                          "(busy) [default: $WAREHOUSE_BATCH_LOCK_TIMEOUT, else 10]"),
        _daily_budget,
        click.option("--memory-limit", callback=_memory_limit, default=None, metavar="SIZE",
                     help="memory DuckDB may use before spilling to disk, e.g. 2GB "
                          "[default: the job's memory_limit, else "
                          "$WAREHOUSE_BATCH_MEMORY_LIMIT, else 512MB]; spills go to "
                          "$WAREHOUSE_BATCH_TEMP_DIR, else <db>.tmp"),
        *dbt_options,
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _options(db, vars_, quiet, max_attempts, batch_max_requests, batch_max_bytes,
             batch_max_tokens, enqueued_token_limit=None, allow_paths=(), allow_hosts=(),
             memory_limit=None, state_db=None, lock_timeout=None, create_db=False,
             project_dir=None, profiles_dir=None, target=None, daily_budget_usd=None,
             **extra) -> api.Options:
    from .dbtproject import DbtSettings   # here, as _api(): the cheap poll imports neither
    opts = _api().Options(vars=_parse_vars(vars_), max_attempts=max_attempts,
                       dbt=DbtSettings(project_dir, profiles_dir, target),
                       state_db=state_db or default_state_db(), create_db=create_db,
                       lock_timeout=(default_lock_timeout() if lock_timeout is None
                                     else lock_timeout),
                       memory_limit=memory_limit,
                       enqueued_token_limit=enqueued_token_limit,
                       batch_max_requests=batch_max_requests, batch_max_bytes=batch_max_bytes,
                       batch_max_tokens=batch_max_tokens, allowed_paths=tuple(allow_paths),
                       allowed_hosts=tuple(allow_hosts), log=_logger(quiet), **extra)
    if db:
        opts.db = db
    if daily_budget_usd is not None:
        opts.daily_budget_usd = daily_budget_usd
    return opts


def _poll_request(command: str, job: str, db, vars_, quiet, max_attempts, allow_paths=(),
                  allow_hosts=(), memory_limit=None, state_db=None, lock_timeout=None,
                  **ignored) -> PollRequest:
    """The cheap poll's view of the options (see `pollpath`); the chunk limits and the
    enqueued-token limit do not bear on a poll."""
    return PollRequest(job=job, db=db or default_db_path(), command=command,
                       vars=_parse_vars(vars_), max_attempts=max_attempts,
                       allowed_paths=tuple(allow_paths), allowed_hosts=tuple(allow_hosts),
                       memory_limit=memory_limit, log=_logger(quiet),
                       state_db=state_db or default_state_db(),
                       lock_timeout=(default_lock_timeout() if lock_timeout is None
                                     else lock_timeout))


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse nan and inf, which FloatRange lets through (and sleep() cannot take)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number of seconds, got {value}")
    return value


def _guard(as_json: bool, fn: Callable[[], int | None]) -> None:
    """Run a command body; translate library errors into a message and an exit code."""
    try:
        code = fn() or 0
    except WarehouseBatchError as e:
        if as_json:
            click.echo(redact(json.dumps(_stamped(e.to_dict(), e.exit_code), indent=2,
                                         default=str)))
        if isinstance(e, BusyError):   # another process holds the file: come back later
            click.echo(f"busy: {redact(str(e))}", err=True)
        elif e.exit_code == EXIT_PENDING:   # transient provider trouble: nothing to fix
            click.echo(f"stopped: the provider had transient trouble: {redact(str(e))}\n"
                       "  nothing needs fixing; run the same command again later", err=True)
        else:
            click.echo(f"error: {redact(str(e))}", err=True)
        sys.exit(e.exit_code)
    except (click.exceptions.Exit, click.ClickException):
        raise   # click prints a usage error (exit 2) itself, e.g. a --var given twice
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("interrupted; state is saved: run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so, keep the traceback for the report
        import traceback
        click.echo(redact(traceback.format_exc()), err=True, nl=False)
        click.echo(f"internal error: {redact(str(e))}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code)


def _project() -> project_file.Project | None:
    """The project file's defaults, filled into this process's environment (a flag still
    wins over both; see `project.py`)."""
    return project_file.defaults(os.environ)


def _drive(command: str, paths: tuple[str, ...], as_json: bool, selects: tuple[str, ...],
           excludes: tuple[str, ...], kw: dict, one: Callable[[str, dict], Any],
           human: Callable[[Any], None],
           notes: Callable[[Any], None] = lambda report: None, all_jobs: bool = False) -> None:
    """Run a job command on what the command line names: one job file as before (its own
    report and exit code), or a set of jobs (folders, globs, several paths, the project's
    job folder) each in turn (`_run_set`). `one(path, kw)` runs one job and returns its
    report; `human` prints a report, `notes` writes what goes to stderr even with --json."""
    def body() -> int:
        project = _project()
        names = list(paths)
        if all_jobs:
            return _run_known(command, names, as_json, selects, excludes, kw, one, human, notes)
        if not names:
            if project is None or not project.jobs:
                raise UserError(
                    "no job file given", hint="name job files, folders or globs, or set "
                    "jobs = \"enrich/\" in warehouse-batch.toml")
            names = project.jobs
        if not jobset.is_set(names) and not selects and not excludes:
            report = one(names[0], kw)
            _emit(report, as_json, lambda: human(report))
            notes(report)
            return getattr(report, "exit_code", 0)
        return _run_set(command, names, as_json, selects, excludes, kw, one, human, notes)
    _guard(as_json, body)


def _run_known(command: str, names: list[str], as_json: bool, selects: tuple[str, ...],
               excludes: tuple[str, ...], kw: dict, one: Callable[[str, dict], Any],
               human: Callable[[Any], None], notes: Callable[[Any], None]) -> int:
    """`--all`: every job the state database knows (`knownjobs`), as a set; a job whose
    file has moved is reported as an error of its own (exit 2) and the others still run."""
    from .knownjobs import known_jobs
    if names:
        raise UserError("give job files or --all, not both")
    known = known_jobs(kw["db"] or default_db_path(), kw["state_db"] or default_state_db(),
                       default_lock_timeout() if kw["lock_timeout"] is None
                       else kw["lock_timeout"])
    if not known:
        _logger(kw["quiet"])("the state database knows no job yet: nothing to do")
        if as_json:
            click.echo(json.dumps({"command": command, "exit_code": 0, "jobs": [],
                                   "skipped": []}, indent=2))
        return 0
    moved = [jobset.Member(j.job_file, error=j.moved()) for j in known if not j.exists]
    return _run_set(command, [j.job_file for j in known if j.exists], as_json, selects,
                    excludes, kw, one, human, notes, missing=moved)


def _run_set(command: str, names: list[str], as_json: bool, selects: tuple[str, ...],
             excludes: tuple[str, ...], kw: dict, one: Callable[[str, dict], Any],
             human: Callable[[Any], None], notes: Callable[[Any], None],
             missing: list[jobset.Member] | None = None) -> int:
    """Every job of the set in turn. Refused before anything runs: a --select/--exclude
    that matches nothing, a --var no job uses, two jobs writing one output table. A job
    that fails does not stop the others; the exit code is the most severe of theirs
    (`jobset.SEVERITY`)."""
    from .paths import make_scope
    from .spec import load_job

    files, skipped = jobset.expand(names) if names else ([], [])
    vars = _parse_vars(kw["vars_"])
    db = kw["db"] or default_db_path()
    env = dict(os.environ)

    def load(path: str, vars: dict) -> Any:
        scope = make_scope(path, env, kw["allow_paths"], kw["allow_hosts"],
                           allow_hooks=kw.get("allow_hooks", False))
        return load_job(path, vars, scope, require_all_vars=False)

    if not files and not missing:
        raise UserError(f"no job files in {', '.join(names)}",
                        hint="a folder stands for the *.sql job files directly inside it "
                             "(their config names a provider)")
    loaded = jobset.load_set(files, load, vars)
    if missing:   # in path order among the others
        loaded = sorted(loaded + list(missing), key=lambda m: m.file)
    members = jobset.select(loaded, selects, excludes)
    if not members:
        raise UserError("--select/--exclude left no job to run")
    jobset.refuse_clashes(members, db)
    log = _logger(kw["quiet"])
    for s in skipped:
        log(f"skipped {s.file}: {s.reason}")
    results = []
    for m in members:
        log(f"job {m.file}")
        entry: dict[str, Any] = {"file": m.file, "job": m.name}
        if m.error is None:
            job_kw = dict(kw, vars_=tuple(f"{k}={json.dumps(v)}" for k, v in m.vars.items()))
            try:
                report = one(m.file, job_kw)
            except WarehouseBatchError as e:
                m.error = e
            except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
                raise
            except Exception as e:   # a bug: say so for this job, carry on with the others
                import traceback
                click.echo(redact(traceback.format_exc()), err=True, nl=False)
                entry.update(exit_code=EXIT_INTERNAL,
                             error={"error": type(e).__name__, "message": redact(str(e))})
                results.append(entry)
                continue
            else:
                entry.update(exit_code=getattr(report, "exit_code", 0), report=report.to_dict())
                if not as_json:
                    click.echo(f"== {m.file}")
                    human(report)
                notes(report)
        if m.error is not None:
            entry.update(exit_code=m.error.exit_code, error=m.error.to_dict())
            said = redact(str(m.error))
            click.echo(f"error: {said}" if said.startswith(m.file) else
                       f"error: {m.file}: {said}", err=True)
        results.append(entry)
    code = jobset.most_severe(r["exit_code"] for r in results)
    if as_json:
        click.echo(redact(json.dumps({"command": command, "exit_code": code, "jobs": results,
                                      "skipped": [s.to_dict() for s in skipped]},
                                     indent=2, default=str)))
    else:
        click.echo(f"{len(results)} job(s): " + ", ".join(
            f"{Path(r['file']).name} exit {r['exit_code']}" for r in results) +
            f"; exit {code}")
    return code



@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="warehouse-batch")
def main() -> None:
    """Turn a SQL query into LLM batch jobs and bring the answers back as a DuckDB table.

    \b
    A job is one .sql file: a {{ config(...) }} block, then one SELECT.
      warehouse-batch plan   reviews.sql     # what would be sent, and why; sends nothing
      warehouse-batch run    reviews.sql --wait
      warehouse-batch submit reviews.sql     # submit and exit (for pipelines)
      warehouse-batch collect reviews.sql    # later: ingest finished batches
    \b
    Exit codes: 0 done, 2 fix the job/data/command, 3 provider problem,
    4 done with permanently failed rows, 75 work still pending or a file busy (come back
    later).
    """
    _STARTED[:] = [iso_now(), time.monotonic()]


_create_db = click.option(
    "--create-db", is_flag=True,
    help="start a new database when --db does not exist, even if the job reads tables "
         "(plan: plan against an empty one, creating nothing); without it a missing --db is "
         "refused unless the job reads only files")

_retry_failed = click.option(
    "--retry-failed", is_flag=True,
    help="send rows that failed permanently (4xx, refusals, truncation) once more; rows "
         "whose last failure was retryable are always sent again")


@main.command()
@job_options
@_retry_failed
@_create_db
def plan(jobs, as_json, retry_failed, selects, excludes, **kw) -> None:
    """Show what a run would send: rows new/changed/done, batches, one rendered request."""
    def one(job: str, kw: dict) -> Any:
        return _api().plan(job, _options(**kw, retry_failed=retry_failed))
    _drive("plan", jobs, as_json, selects, excludes, kw, one, _print_plan)


def _print_plan(r) -> None:
    rows = [
        ("rows selected", r.rows_selected), ("already answered", r.rows_done),
        ("in flight", r.rows_in_flight), ("failed (final)", r.rows_failed),
        ("new", r.rows_new), ("changed", r.rows_changed), ("retryable failures", r.rows_retry),
        ("never answered", r.rows_unsent), ("duplicates collapsed", r.duplicates_collapsed),
    ]
    click.echo(f"job {r.job}: {r.provider} / {r.model} (templates rendered in {r.render_mode})")
    for label, n in rows:
        click.echo(f"  {label:<22}{n:>12,}")
    click.echo(f"  {'requests to send':<22}{r.requests_to_send:>12,}  in {r.batches} batch(es), "
               f"{r.bytes_to_send / 1e6:,.1f} MB, ~{r.est_input_tokens:,} input tokens")
    if getattr(r, "send_mode", "batch") == "realtime":   # realtime.price_plan
        click.echo(f"  {'real-time':<22}{'yes':>12}  (fewer than realtime_below="
                   f"{r.realtime_below:,}: sent through the synchronous API at full price)")
    if r.enqueued_token_limit is not None:
        click.echo(f"  {'enqueued-token limit':<22}{r.enqueued_token_limit:>12,}  "
                   f"({r.waves} wave(s) of batches)")
    if r.requests_over_limit:
        click.echo(f"  {'too large to send':<22}{r.requests_over_limit:>12,}  (each alone passes "
                   "the enqueued-token limit: they will fail)")
    est = r.estimate or {}
    if est:
        click.echo(f"  {'token estimate':<22}{_estimate_basis(est)}")
    if r.est_input_cost_usd is not None:
        per = est.get("output_per_answer", 0)
        how = {"learned": "learned", "typical": "typical, not yet learned",
               "max_tokens": "max_tokens", "none": "no output"}.get(est.get("output_basis"), "")
        click.echo(f"  {'expected cost':<22}${r.est_cost_usd:,.4f}  (input "
                   f"${r.est_input_cost_usd:,.4f} + output ${r.est_output_cost_usd:,.4f}: "
                   f"~{r.est_output_tokens:,} tokens, {per:,.1f} per answer, {how}; "
                   f"{'real-time' if r.send_mode == 'realtime' else 'batch'} prices)")
        if r.worst_case_cost_usd is not None:
            click.echo(f"  {'worst case':<22}${r.worst_case_cost_usd:,.4f}  (every answer "
                       f"uses all of max_tokens: output ${r.max_output_cost_usd:,.4f})")
        else:
            click.echo(f"  {'worst case':<22}unbounded (no max_tokens)")
    _print_budget(r.budget)
    if r.sample_request:
        click.echo("one request:")
        click.echo(json.dumps(r.sample_request, indent=2, ensure_ascii=False))


def _estimate_basis(est: dict) -> str:
    """How plan's token figures were estimated, in words (estimate.Estimator)."""
    per_char = est.get("tokens_per_char") or 0
    ratio = (f"{1 / per_char:.2f} characters per token + {est.get('overhead', 0):.1f} tokens "
             "per request" if per_char else "")
    if est.get("input_basis") == "learned":
        return f"learned from {est.get('learned_from', 0):,} billed request(s): {ratio}"
    return f"documented ratio, nothing learned yet: {ratio}"


def _print_budget(b) -> None:
    """plan's budget lines: the reservation the next submit makes, what is left of each cap."""
    if b is None:
        return
    from .budget import usd
    if b.reservation_usd is not None:
        click.echo(f"  {'reservation':<22}{usd(b.reservation_usd):>12}  (worst case of "
                   f"{b.batches} batch(es) at batch prices: input + max_tokens x requests)")
    for c in b.caps:
        which = f"daily cap {c['day']}" if c["cap"] == "daily" else "job budget"
        click.echo(f"  {which:<22}{usd(max(c['left_usd'], 0)):>12} left of {usd(c['cap_usd'])} "
                   f"({usd(c['billed_usd'])} billed + {usd(c['reserved_usd'])} reserved)")
    if b.batches_held:
        click.echo(f"  {'would be held back':<22}{b.batches_held:>12,}  batch(es): they would "
                   f"cross the {b.held_by} cap")
    if b.held:
        click.echo(f"  held back now: {b.held['message']}")
    if b.note:
        click.echo(f"  note: {b.note}")


def _print_run(r: RunReport) -> None:
    s, c, rows = r.submitted, r.collected, r.rows
    click.echo(f"job {r.job} ({r.command}, run {r.run_id})")
    click.echo(f"  submitted   {s.requests_submitted:,} requests in {s.batches_created} new "
               f"batch(es); resumed {s.batches_resumed}")
    click.echo(f"  collected   {c.batches_collected} batch(es): {c.succeeded:,} succeeded, "
               f"{c.failed:,} failed, {c.not_processed:,} not processed; "
               f"{c.batches_in_progress} still running")
    click.echo(f"  table {r.table}: {rows.rows:,} rows, {rows.succeeded:,} succeeded, "
               f"{rows.failed:,} failed, {rows.pending:,} pending")
    for w in s.warnings + c.warnings + [n["warning"] for n in r.notifications
                                         if n.get("warning")]:
        click.echo(f"  warning: {redact(w)}", err=True)
    if s.waiting:
        click.echo(f"  waiting     {s.batches_waiting} batch(es) for enqueued-token capacity: "
                   f"{s.waiting[-1]}", err=True)
    if s.held:
        click.echo(f"  held back   {s.held['message']}", err=True)
    if r.stopped is None and rows.pending and r.command != "submit":
        click.echo("  work is still pending: run `collect` (or `run --wait`) later", err=True)


def _lifecycle(name: str, doc: str, extra: list[Callable] | None = None):
    def command(jobs, as_json, selects, excludes, **kw):
        run_kw = {k: kw.pop(k) for k in ("wait", "max_wait", "poll_interval") if k in kw}
        full_refresh = kw.pop("full_refresh", False)
        retry_failed = kw.pop("retry_failed", False)
        create_db = kw.pop("create_db", False)
        all_jobs = kw.pop("all_jobs", False)

        def one(job: str, kw: dict) -> Any:
            report = None
            if name in ("collect", "run") and not (run_kw.get("wait") or full_refresh
                                                   or retry_failed):
                report = try_poll(_poll_request(name, job, **kw))   # None: more than a poll is needed
            if report is None:
                opts = _options(**kw, full_refresh=full_refresh, retry_failed=retry_failed,
                                create_db=create_db)
                fn = getattr(_api(), name)
                if name == "run":
                    report = fn(job, opts, wait=run_kw["wait"], max_wait=run_kw["max_wait"],
                                backoff=Backoff(initial=run_kw["poll_interval"]))
                else:
                    report = fn(job, opts)
            return report

        def notes(report: RunReport) -> None:
            if report.stopped is not None:
                click.echo(f"stopped: the provider had transient trouble: "
                           f"{redact(report.stopped)}\n  nothing needs fixing; run the same "
                           "command again later (or `run --wait`)", err=True)
        _drive(name, jobs, as_json, selects, excludes, kw, one, _print_run, notes,
               all_jobs=all_jobs)

    command.__doc__ = doc
    command.__name__ = name
    for d in reversed(extra or []):
        command = d(command)
    return main.command(name=name)(job_options(command))


_full_refresh = click.option("--full-refresh", is_flag=True,
                             help="drop and rebuild the output table and forget which rows "
                                  "changed; cached answers are reused, nothing is paid twice")
_lifecycle("submit", "Submit every row that needs an answer, then exit (no waiting).",
           [_full_refresh, _retry_failed, _create_db])
_all_jobs = click.option(
    "--all", "all_jobs", is_flag=True,
    help="every job the state database knows (--state-db, else --db's state), e.g. for one "
         "cron line; a job whose file has moved is reported (exit 2)")
_lifecycle("collect",
           "Ingest every batch that has ended and rebuild the output table. Sends nothing.",
           [_all_jobs])
_lifecycle("reconcile",
           "Finish what a crashed process left (lost uploads and creates), then collect.")
_lifecycle("run",
           "Collect what is ready, submit what is needed, collect again. With --wait, keep "
           "polling (exponential backoff with jitter) until every row is answered or failed.",
           [_full_refresh, _retry_failed, _create_db, _all_jobs,
            click.option("--wait", is_flag=True, help="poll until every row is terminal"),
            click.option("--max-wait", type=click.FloatRange(min=0), default=None,
                         callback=_finite,
                         metavar="SECONDS",
                         help="with --wait: give up polling after this long (exit 75)"),
            click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True),
                         default=10.0, show_default=True, callback=_finite,
                         metavar="SECONDS", help="first delay between polls; doubles to 600")])


# -- try: a few rows through the real-time API (realtime.py) ----------------------------------
@main.command(name="try")
@job_options
@click.option("--rows", "n_rows", type=click.IntRange(min=1, max=1000), default=3,
              show_default=True, help="how many rows to send")
@click.option("--sample", is_flag=True,
              help="a random sample of the rows instead of the SELECT's first ones")
@_create_db
def try_(jobs, as_json, selects, excludes, n_rows, sample, create_db, **kw) -> None:
    """Send a few rows through the provider's real-time API (full price) and print them with
    their answers, to check a prompt before the batch. The output table is not touched; the
    answers are cached, so a later run does not pay for those rows again."""
    def one(job: str, kw: dict) -> Any:
        return _api().try_rows(job, _options(**kw, create_db=create_db), rows=n_rows,
                               sample=sample)
    _drive("try", jobs, as_json, selects, excludes, kw, one, _print_try)


def _print_try(r) -> None:
    sent = sum(1 for row in r.rows if row["source"] == "sent")
    click.echo(f"job {r.job}: {r.provider} / {r.model}: {len(r.rows)} row(s), {sent} answered "
               f"now through the real-time API ({r.requests_sent} request(s) sent), "
               f"{len(r.rows) - sent} from the cache or in flight")
    for i, row in enumerate(r.rows, 1):
        prompt = (row["prompt"] or "").replace("\n", " ")
        click.echo(f"[{i}] {json.dumps(row['key'], ensure_ascii=False)}")
        click.echo(f"    prompt  {prompt[:200]}{'…' if len(prompt) > 200 else ''}")
        if row["status"] == "succeeded":
            answer = (row["answer"] if row["embedding_dimensions"] is None
                      else f"embedding of {row['embedding_dimensions']} dimensions")
            click.echo(f"    answer  {answer}")
        elif row["status"] == "failed":
            click.echo(f"    failed  {redact(row['error'] or '')}")
        else:
            click.echo("    pending in a batch not yet ended")
        click.echo(f"            ({row['source']}; {row['input_tokens'] or 0} input, "
                   f"{row['output_tokens'] or 0} output tokens)")


@main.command()
@job_options
@click.option("--no-refresh", is_flag=True, help="report the ledger without asking the provider")
def status(jobs, as_json, selects, excludes, no_refresh, **kw) -> None:
    """Show the job's batches (as the provider reports them) and its rows by status."""
    def one(job: str, kw: dict) -> Any:
        report = None
        if not no_refresh:
            report = try_status(_poll_request("status", job, **kw))   # None: more than a poll is needed
        if report is None:
            report = _api().status(job, _options(**kw), refresh=not no_refresh)
        return report

    def human(report) -> None:
        click.echo(f"job {report.job}: {report.rows.rows:,} rows, {report.rows.succeeded:,} "
                   f"succeeded, {report.rows.failed:,} failed, {report.rows.pending:,} "
                   "pending")
        for b in report.batches:
            click.echo(f"  {b['batch_id']}  {b['provider_batch_id'] or '-':<36} "
                       f"{b['state']:<10} {b['provider_status'] or '-':<11} "
                       f"{b['request_count']:>8,} requests")
        for w in report.warnings:
            click.echo(f"  warning: {w}", err=True)
        if report.held:
            click.echo(f"  held back: {report.held['message']}")
    _drive("status", jobs, as_json, selects, excludes, kw, one, human)


@main.command()
@job_options
def cancel(jobs, as_json, selects, excludes, **kw) -> None:
    """Cancel the job's running batches. Answers already produced stay collectable."""
    def human(report) -> None:
        click.echo(f"cancelled {len(report.cancelled)} batch(es), abandoned "
                   f"{len(report.abandoned)} never-created one(s); run `collect` to keep the "
                   "partial answers")

    def notes(report) -> None:
        for w in report.warnings:
            click.echo(f"  warning: {w}", err=True)

    def one(job: str, kw: dict) -> Any:
        return _api().cancel(job, _options(**kw))
    _drive("cancel", jobs, as_json, selects, excludes, kw, one, human, notes)


@main.command()
@click.option("--db", default=None, metavar="PATH", help="the DuckDB file holding the state "
              "[$WAREHOUSE_BATCH_DB, else ./warehouse.duckdb]")
@click.option("--since", "since_days", type=click.IntRange(min=1), default=7, show_default=True,
              metavar="DAYS", help="the last DAYS UTC days, today included")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the report to this file instead of stdout")
@click.option("--state-db", default=None, metavar="PATH", help="the state's own DuckDB file, "
              "if it has one [$WAREHOUSE_BATCH_STATE_DB]")
def report(db, since_days, fmt, as_json, output, state_db) -> None:
    """Per job and day: rows enriched, requests, tokens, cost, savings against real-time
    prices, failures by kind and batch durations (p50/p95, created to ended).

    Reads the state only. --format html writes one self-contained page with charts."""
    from . import report_html, usage_report

    fmt = "json" if as_json else fmt

    def body():
        r = usage_report.report(db or default_db_path(), since_days,
                                state_db=state_db or default_state_db())
        text = (json.dumps(r.to_dict(), indent=2, default=str) if fmt == "json" else
                report_html.render_html(r) if fmt == "html" else r.to_text())
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
            click.echo(f"wrote {output}", err=True)
        else:
            click.echo(text)
    _guard(fmt == "json", body)


@main.command()
@click.option("--db", default=None, metavar="PATH", help="the DuckDB file holding the state "
              "[$WAREHOUSE_BATCH_DB, else ./warehouse.duckdb]")
@click.option("--stuck-minutes", type=click.FloatRange(min=0), default=30, show_default=True,
              help="alert on a batch in validating/finalizing (or a half-done submit), or a "
              "notification still pending, this long")
@click.option("--max-error-rate", type=click.FloatRange(0, 1), default=0.05,
              show_default=True, help="alert when more sends than this errored")
@click.option("--recent-batches", type=click.IntRange(min=1), default=10, show_default=True,
              help="the error rate is over each job's last N collected batches")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--state-db", default=None, metavar="PATH", help="the state's own DuckDB file, "
              "if it has one [$WAREHOUSE_BATCH_STATE_DB]")
@_daily_budget
def check(db, stuck_minutes, max_error_rate, recent_batches, as_json, state_db,
          daily_budget_usd) -> None:
    """Health check for monitoring: name each alert, exit 5 if there is any, else 0.

    Reads the state only: stuck batches, error rates over recent batches, spend past 80%
    of a job's budget or the daily cap, jobs still pending past their deadline,
    notifications whose hook has not answered for --stuck-minutes."""
    from . import health
    from .budget import default_daily_budget

    def body():
        _project()
        r = health.check(db or default_db_path(), stuck_minutes=stuck_minutes,
                         max_error_rate=max_error_rate, recent_batches=recent_batches,
                         state_db=state_db or default_state_db(),
                         daily_budget_usd=daily_budget_usd or default_daily_budget())
        _emit(r, as_json, lambda: click.echo(
            "\n".join(f"ALERT {a.kind} [{a.job}]: {a.message}" for a in r.alerts)
            or "ok: no alerts"))
        return r.exit_code
    _guard(as_json, body)


class _DbtStyleCommand(click.Command):
    """A command whose `--select` and `--exclude` take several values the way dbt's do
    (`--select a b tag:c --exclude d`): the values after the flag, up to the next option."""

    multi = ("--select", "-s", "--exclude", "--models", "-m")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        flag = None
        for a in args:
            if a.startswith("-"):
                flag = a if a in self.multi else None
                out.append(a)
                if a == "--":
                    flag = None
            elif flag is not None and out[-1] != flag:
                out += [flag, a]
            else:
                out.append(a)
        return super().parse_args(ctx, out)


@main.group()
def dbt() -> None:
    """Enrichment jobs in a dbt project (see the README's dbt section).

    \b
    Job files there may use ref(), source(), var() and env_var(); the project's jobs live in
    its jobs folder (vars: {warehouse_batch: {jobs: ...}} in dbt_project.yml, default enrich/).
      warehouse-batch dbt run --select tag:nightly      # the selected jobs, in order
      warehouse-batch dbt ls --select stg_reviews+      # which jobs a selection reaches
    """


def _with(decorators: list[Callable]) -> Callable:
    """Apply a list of click decorators (as `job_options` does)."""
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def _dbt_selection(f: Callable) -> Callable:
    decorators = [
        click.option("--select", "-s", "--models", "-m", "select", multiple=True,
                     metavar="SELECTOR", help="jobs to run: name, tag:x, path:dir, +name, "
                     "name+, a,b (both); several are a union [default: every job]"),
        click.option("--exclude", multiple=True, metavar="SELECTOR",
                     help="jobs to leave out (same syntax)"),
        click.option("--db", default=None, metavar="PATH",
                     help="the warehouse DuckDB file [default: the dbt target's path]"),
        click.option("--json", "as_json", is_flag=True, help="print a JSON report on stdout"),
        click.option("-q", "--quiet", is_flag=True, help="no progress messages on stderr"),
        click.option("--allow-path", "allow_paths", multiple=True, metavar="DIR",
                     help="a folder the jobs may read besides their own and the project"),
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
                     help="a host a base_url in a job file may name"),
        click.option("--state-db", default=None, metavar="PATH",
                     help="DuckDB file holding the warehouse_batch state [default: "
                          "$WAREHOUSE_BATCH_STATE_DB, else the state lives in --db]"),
        click.option("--lock-timeout", callback=_lock_timeout, default=None, metavar="SECONDS",
                     help="wait this long for a file another process holds, then exit 75"),
        *dbt_options,
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _dbt_body(as_json: bool, quiet: bool, **kw: Any) -> int:
    from .dbt.runner import run_project   # the [dbt] part; imported by its commands only
    from .dbtproject import DbtSettings
    settings = DbtSettings(kw.pop("project_dir"), kw.pop("profiles_dir"), kw.pop("target"))
    state_db, lock_timeout = kw.pop("state_db"), kw.pop("lock_timeout")
    report = run_project(settings, kw.pop("select"), kw.pop("exclude"),
                         state_db=state_db or default_state_db(),
                         lock_timeout=(default_lock_timeout() if lock_timeout is None
                                       else lock_timeout),
                         allowed_paths=tuple(kw.pop("allow_paths")),
                         allowed_hosts=tuple(kw.pop("allow_hosts")), log=_logger(quiet), **kw)

    def human() -> None:
        click.echo(f"dbt project {report.project} ({report.db}): "
                   f"{len(report.jobs)} job(s) selected")
        for j in report.jobs:
            rows = (j.report or {}).get("rows") or {}
            detail = (f"{rows.get('rows', 0):,} rows, {rows.get('succeeded', 0):,} succeeded, "
                      f"{rows.get('failed', 0):,} failed, {rows.get('pending', 0):,} pending"
                      if j.report else (j.error or {}).get("message") or j.skipped_because
                      or "")
            click.echo(f"  {j.job:<40} {j.name:<24} {j.status:<12} {redact(str(detail))}")
    _emit(report, as_json, human)
    return 0 if kw.get("dry_run") else report.exit_code


@dbt.command(name="run", cls=_DbtStyleCommand)
@_dbt_selection
@click.option("--wait", is_flag=True, help="run each job until every row is terminal")
@click.option("--max-wait", type=click.FloatRange(min=0), default=None, callback=_finite,
              metavar="SECONDS", help="with --wait: give up on a job after this long")
def dbt_run(as_json, quiet, **kw) -> None:
    """Run the project's selected enrichment jobs in dependency order (each as `run`)."""
    _guard(as_json, lambda: _dbt_body(as_json, quiet, **kw))


@dbt.command(name="ls", cls=_DbtStyleCommand)
@_dbt_selection
def dbt_ls(as_json, quiet, **kw) -> None:
    """List the jobs a selection reaches, in the order `dbt run` would run them."""
    _guard(as_json, lambda: _dbt_body(as_json, quiet, dry_run=True, **kw))


@dbt.command(name="schema")
@click.argument("jobs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=None, metavar="NAME",
              help="the dbt model (one job) [default: the Python model that names the job]")
@click.option("--db", default=None, metavar="PATH",
              help="the warehouse DuckDB file [default: the dbt target's path]")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="write the YAML here [default: stdout]")
@click.option("-q", "--quiet", is_flag=True, help="no progress messages on stderr")
@click.option("--json", "as_json", is_flag=True, help="errors as JSON on stdout")
@_with(dbt_options)
def dbt_schema(jobs, model, db, output, quiet, as_json, project_dir, profiles_dir,
               target) -> None:
    """Print a schema.yml for the dbt models enriched by these jobs: every column with its
    type and meaning, and tests (_status accepted values, the key unique and not null)."""
    def body() -> None:
        from .dbt.docs import model_entry, python_models_for, schema_yaml
        from .dbtproject import DbtSettings, load_project
        from .errors import UserError
        settings = DbtSettings(project_dir, profiles_dir, target)
        entries = []
        for job in jobs:
            project, searched = load_project(settings, job)
            if project is None:
                raise UserError(f"no dbt project found (looked in {'; '.join(searched)})")
            where = db or project.database_path()
            spec = _api().load(job, _api().Options(db=where, dbt=settings))
            names = [model] if model else python_models_for(project, Path(job))
            if len(names) != 1 or (model and len(jobs) > 1):
                raise UserError(f"{job}: name its dbt model with --model (one job at a time)"
                                if model or not names else
                                f"{job}: several Python models name it ({', '.join(names)}); "
                                "pick one with --model")
            entries.append(model_entry(spec, names[0], where))
        text = schema_yaml(entries)
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            click.echo(text, nl=False)
    _guard(as_json, body)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind (keep it on loopback)")
@click.option("--port", default=8123, show_default=True, type=int, help="0 picks a free port")
@click.option("--state-dir", default=None, metavar="DIR",
              help="persist files, batches and the clock here (survives restarts)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--clock", type=click.Choice(["real", "manual"]), default="real", show_default=True,
              help="manual: time moves only via POST /_emulator/clock")
@click.option("--latency", type=float, default=None, metavar="SECONDS",
              help="total time a batch takes (validate+process+finalize); 0 = instant")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="fraction of requests that fail with a retryable 500")
@click.option("--expire-fraction", type=click.FloatRange(0, 1), default=None,
              help="expire each batch after this fraction of its requests is processed")
@click.option("--cancel-fraction", type=click.FloatRange(0, 1), default=None,
              help="cancel each batch after this fraction of its requests is processed")
@click.option("--create-429-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="fraction of batch creates answered 429 (rate limited, nothing created)")
@click.option("--retry-after", type=click.FloatRange(min=0), default=5.0, show_default=True,
              metavar="SECONDS", help="the retry-after header of those 429s")
@click.option("--enqueued-token-limit", "token_limits", multiple=True, metavar="[MODEL=]N",
              help="enqueued-token limit (every model's, or one model's); repeatable")
@click.option("--token-limit-fail-fast", is_flag=True,
              help="refuse an over-limit create with HTTP 400 (Azure) instead of failing it")
@click.option("--sync-requests-per-minute", type=click.IntRange(min=0), default=None,
              metavar="N", help="synchronous model calls answered per minute of the clock; "
                                "more get 429 with retry-after until the minute ends")
@click.option("--sync-429-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="fraction of synchronous model calls answered 429 (retry-after 1 s)")
def emulator(host, port, state_dir, seed, clock, latency, failure_rate, expire_fraction,
             cancel_fraction, create_429_rate, retry_after, token_limits,
             token_limit_fail_fast, sync_requests_per_minute, sync_429_rate) -> None:
    """Run a local server speaking the OpenAI Batch and Anthropic Message Batches protocols.

    \b
    Point the SDKs at it:
      export OPENAI_BASE_URL=http://127.0.0.1:8123/v1 OPENAI_API_KEY=emulator
      export ANTHROPIC_BASE_URL=http://127.0.0.1:8123 ANTHROPIC_API_KEY=emulator
    Admin endpoints live under /_emulator/ (clock, config knobs, fault injection).
    """
    from .emulator import EmulatorConfig, serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: the emulator has no real authentication", err=True)
    cfg = EmulatorConfig(host=host, port=port, state_dir=state_dir, seed=seed, clock=clock,
                         failure_rate=failure_rate, expire_fraction=expire_fraction,
                         cancel_fraction=cancel_fraction, create_429_rate=create_429_rate,
                         create_retry_after=retry_after,
                         token_limit_fail_fast=token_limit_fail_fast,
                         sync_requests_per_minute=sync_requests_per_minute,
                         sync_429_rate=sync_429_rate)
    for item in token_limits:
        model, _, n = item.rpartition("=")
        if not n.isdigit():
            raise click.BadParameter(f"{item!r}: expected N or MODEL=N",
                                     param_hint="--enqueued-token-limit")
        if model:
            cfg.enqueued_token_limits = {**(cfg.enqueued_token_limits or {}), model: int(n)}
        else:
            cfg.enqueued_token_limit = int(n)
    if latency is not None:
        cfg.validate_seconds = latency * 0.1
        cfg.process_seconds = latency * 0.8
        cfg.finalize_seconds = latency * 0.1
        cfg.cancel_seconds = min(cfg.cancel_seconds, latency)
    try:
        serve(cfg)
    except OSError as e:
        click.echo(f"error: cannot listen on {host}:{port}: {e}", err=True)
        sys.exit(EXIT_USER)


if __name__ == "__main__":  # pragma: no cover
    main()
