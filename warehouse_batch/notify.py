"""Notifications: each completion or failure of a job is told to its hook once, also across
crashes and concurrent runs.

**Completion.** A job completes when, after a command's pass, none of its rows is pending
(every row answered, or failed for good or with the command's attempts spent) and some of
its collected batches are not covered by an earlier completion: the work since the last
completion ended. A pass with no such batch (nothing was sent, every answer came from the
cache) completes nothing. So the event is derived from the ledger, not from what one process
saw: a process killed right after collecting leaves the batches uncovered, and the next
command on the job records the completion. `on_complete` gets the command's JSON report
(`status` `succeeded`, or `failed` with exit code 4 when rows failed).

**Failure.** A command on a job the state database knows (its output table is claimed)
stops on an error a person must fix: exit 2 (the job file, the data, the command line), 3
(the provider: a refused key, a refused request, a provider that cannot be reached) or 1 (a
bug). Busy files and transient provider trouble (exit 75) are not failures, nor are rows
that failed (that is a completion). A failure is one incident per job: it fires once, and a
later failure fires again only after a command on the job has succeeded in between. A job
the state does not know yet (its first run refused) records and sends nothing: a refused
job leaves no trace.

**Exactly once.** The event is recorded in `warehouse_batch.notifications` as `pending`
before its hook is called (in the same transaction that marks the covered batches, for a
completion), and `sent` after the hook confirmed (exit 0, HTTP 2xx). A process claims a
pending notification (`claimed_by` host:pid, until a lease runs out) before calling its
hook, so two concurrent runs never both call it; a claim held by a process that no longer
runs on this host lapses at once, so after a crash between `pending` and `sent` the next
command calls the hook. A crash after the hook answered but before `sent` was recorded
calls it again: the payload's `notification_id` lets a receiver drop the repeat.

A hook that fails is logged (a warning in the report, `notifications` in `--json`), its
notification stays pending and is tried again by the next command on the job that does more
than poll; it never changes the command's exit code and never touches the run's results
(the output table and the ledger are written before any hook is called). The hooks in effect
are those of the command that calls them (`hooks.resolve`: the job's own, else the
operator's); a completion recorded when no hook was configured is kept as `no_hook` and
never fires later.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import duckdb

from . import faults
from .db import Target, reading, session
from .errors import EXIT_INTERNAL, EXIT_PROVIDER, EXIT_USER, WarehouseBatchError
from .hooks import TIMEOUT_SECONDS, Hook, HookError, fire, hook_env, resolve
from .keys import redact
from .reports import RunReport, iso_now, stamp
from .state import SCHEMA, now_utc

if TYPE_CHECKING:   # annotations only
    from .spec import JobSpec

FAILURE_CODES = (EXIT_USER, EXIT_PROVIDER, EXIT_INTERNAL)
LEASE = timedelta(seconds=TIMEOUT_SECONDS + 120)   # a claim by a live process lapses then


@dataclass
class Due:
    """A pending notification this process has claimed, and the hook it goes to."""

    notification_id: str
    event: str
    payload: str
    hook: Hook
    attempts: int


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def job_hooks(spec: JobSpec, env: Mapping[str, str] | None) -> dict[str, Hook]:
    """The hook of each event for this job in this command (the job's own, else the
    operator's)."""
    return resolve(spec.hooks, str(Path(spec.path).resolve().parent), _env(env))


def holder() -> str:
    """Who claims a notification: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # e.g. another user's process: it exists
        return True
    return True


def _lapsed(claimed_by: str, claimed_until: Any, now: Any) -> bool:
    """Whether a claim no longer holds: its process has gone (same host), or its lease ran
    out."""
    host, _, pid = claimed_by.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True
    return claimed_until is None or claimed_until < now


def _new_id(*parts: Any) -> str:
    text = json.dumps(parts, default=str)
    return "wbn_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# -- after a pass, inside its session ------------------------------------------------------------

def after_pass(con: duckdb.DuckDBPyConnection, spec: JobSpec, report: RunReport,
               env: Mapping[str, str] | None) -> list[Due]:
    """At the end of a command's full pass (its results written): close the job's open
    failure incident (this command succeeded), record a completion if the job completed, and
    claim the job's pending notifications whose hook this command knows. The hooks are called
    by `deliver`, after the session is closed. A fault in this bookkeeping is a warning in
    the report, never the command's error: its results are already written."""
    try:
        return _after_pass(con, spec, report, env)
    except duckdb.Error as e:
        warning = (f"notifications of job {spec.name} could not be recorded: "
                   f"{redact(str(e), env)}; the next command on the job records them")
        report.notifications.append({"status": "error", "warning": warning})
        return []


def _after_pass(con: duckdb.DuckDBPyConnection, spec: JobSpec, report: RunReport,
                env: Mapping[str, str] | None) -> list[Due]:
    hooks = job_hooks(spec, env)
    open_failures, pending = con.execute(
        f"""SELECT count(*) FILTER (WHERE event = 'failure' AND resolved_at IS NULL),
                   count(*) FILTER (WHERE state = 'pending')
            FROM {SCHEMA}.notifications WHERE job_name = ?""", [spec.name]).fetchone()
    if open_failures:
        con.execute(f"""UPDATE {SCHEMA}.notifications SET resolved_at = ? WHERE job_name = ?
            AND event = 'failure' AND resolved_at IS NULL""", [now_utc(), spec.name])
    if report.stopped is None and report.rows.pending == 0:
        pending += record_completion(con, spec, report, hooks.get("complete"), env)
    return claim(con, spec.name, hooks) if pending else []


def record_completion(con: duckdb.DuckDBPyConnection, spec: JobSpec, report: RunReport,
                      hook: Hook | None, env: Mapping[str, str] | None) -> int:
    """Record the job's completion if collected batches are left uncovered: one
    notification (pending, or `no_hook`) and its batches, in one transaction. Returns the
    number of pending notifications recorded (0 or 1)."""
    batches = [b for (b,) in con.execute(
        f"""SELECT batch_id FROM {SCHEMA}.batches WHERE job_name = ? AND state = 'collected'
            AND batch_id NOT IN (SELECT batch_id FROM {SCHEMA}.notified_batches)
            ORDER BY batch_id""", [spec.name]).fetchall()]
    if not batches:
        return 0
    nid = _new_id("complete", spec.name, batches)
    job_file = str(Path(spec.path).resolve())
    d = report.to_dict()
    d.pop("notifications", None)
    elapsed = time.monotonic() - getattr(report, "_t0", time.monotonic())
    d = stamp(d, report.exit_code, report.started_at or iso_now(), elapsed, report.cost_usd)
    payload = _dumps({"event": "complete", "notification_id": nid, "job_file": job_file,
                      "batches": batches, **d}, env)
    state = "pending" if hook is not None else "no_hook"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"""INSERT INTO {SCHEMA}.notifications (notification_id, job_name,
            job_file, event, run_id, hook, state, payload, created_at)
            VALUES (?, ?, ?, 'complete', ?, ?, ?, ?, ?)""",
                    [nid, spec.name, job_file, report.run_id,
                     redact(hook.describe(), env) if hook else None, state, payload,
                     now_utc()])
        con.execute(f"INSERT INTO {SCHEMA}.notified_batches SELECT unnest(?::VARCHAR[]), ?",
                    [batches, nid])
        con.execute("COMMIT")
    except (duckdb.ConstraintException, duckdb.TransactionException):
        con.execute("ROLLBACK")   # another connection recorded this completion first
        return 0
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return 1 if hook is not None else 0


def claim(con: duckdb.DuckDBPyConnection, job_name: str, hooks: Mapping[str, Hook]
          ) -> list[Due]:
    """Claim the job's pending notifications that this command has a hook for and that no
    live process holds (compare-and-set on `claimed_by`)."""
    me, now = holder(), now_utc()
    rows = con.execute(
        f"""SELECT notification_id, event, payload, attempts, claimed_by, claimed_until
            FROM {SCHEMA}.notifications WHERE job_name = ? AND state = 'pending'
            ORDER BY created_at, notification_id""", [job_name]).fetchall()
    due = []
    for nid, event, payload, attempts, by, until in rows:
        hook = hooks.get(event)
        if hook is None:
            continue   # waits for a command that has a hook for it
        if by is not None and by != me and not _lapsed(by, until, now):
            continue   # another process is calling the hook right now
        taken = con.execute(
            f"""UPDATE {SCHEMA}.notifications SET claimed_by = ?, claimed_until = ?, hook = ?
                WHERE notification_id = ? AND state = 'pending'
                  AND claimed_by IS NOT DISTINCT FROM ?""",
            [me, now + LEASE, redact(hook.describe()), nid, by]).fetchone()[0]
        if taken:
            due.append(Due(nid, event, payload, hook, attempts))
    return due


# -- calling the hooks, no DuckDB file held ------------------------------------------------------

def deliver(due: list[Due], where: Target, report: RunReport | None,
            env: Mapping[str, str] | None, log: Callable[[str], None]) -> list[dict]:
    """Call each claimed notification's hook, then record what it answered (`sent`, or the
    error, the notification staying pending). Never raises for a hook's failure: the outcome
    goes to `report.notifications` (a warning) and the log. Returns the outcomes."""
    outcomes = []
    environ = _env(env)
    for d in due:
        faults.checkpoint("before_notify")
        extra = {"WAREHOUSE_BATCH_EVENT": d.event,
                 "WAREHOUSE_BATCH_NOTIFICATION_ID": d.notification_id}
        error = None
        try:
            note = fire(d.hook, d.payload.encode("utf-8"), hook_env(environ, extra))
        except HookError as e:
            error = redact(str(e), env)
        except Exception as e:   # a hook must never fail the command: a bug here is a warning
            error = redact(f"{d.hook.describe()} failed: {type(e).__name__}: {e}", env)
        faults.checkpoint("after_notify")
        outcome: dict[str, Any] = {"notification_id": d.notification_id, "event": d.event,
                                   "hook": redact(d.hook.describe(), env),
                                   "status": "sent" if error is None else "failed",
                                   "attempts": d.attempts + 1}
        if error is None:
            log(f"on_{d.event} notification {d.notification_id}: {outcome['hook']} ({note})")
        else:
            outcome["error"] = error
            outcome["warning"] = (
                f"on_{d.event} notification {d.notification_id} was not delivered ({error}); "
                "it stays pending and is tried again by the next command on this job (the "
                "run's results are kept and its exit code is unchanged)")
            log("warning: " + outcome["warning"])
        try:
            _record(where, d, me=holder(), error=error)
        except WarehouseBatchError as e:   # e.g. busy: the claim lapses with this process
            outcome["record_error"] = redact(str(e), env)
            log(f"warning: could not record notification {d.notification_id}: "
                f"{outcome['record_error']}")
        outcomes.append(outcome)
        if report is not None:
            report.notifications.append(outcome)
    return outcomes


def _record(where: Target, d: Due, *, me: str, error: str | None) -> None:
    now = now_utc()
    with session(where, warehouse="none") as con:
        if error is None:
            con.execute(f"""UPDATE {SCHEMA}.notifications SET state = 'sent', sent_at = ?,
                attempts = attempts + 1, last_attempt_at = ?, last_error = NULL,
                claimed_by = NULL, claimed_until = NULL
                WHERE notification_id = ? AND claimed_by = ?""", [now, now, d.notification_id, me])
        else:
            con.execute(f"""UPDATE {SCHEMA}.notifications SET attempts = attempts + 1,
                last_attempt_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL
                WHERE notification_id = ? AND claimed_by = ?""",
                        [now, error, d.notification_id, me])


def _dumps(d: dict, env: Mapping[str, str] | None) -> str:
    return redact(json.dumps(d, default=str, ensure_ascii=False), env)


# -- failures ----------------------------------------------------------------------------------

def failures_notified(load: Callable[[str, Any], JobSpec],
                      target: Callable[[Any, JobSpec], Target],
                      options_type: Callable[[], Any]) -> Callable:
    """A decorator for the library's commands (`api.submit`, `collect`, `run`, `reconcile`):
    a failure (exit 1, 2 or 3) is told to the job's `on_failure` hook, then re-raised
    unchanged. `load`, `target` and `options_type` are the library's own (passed in, so this
    module does not import it)."""
    def decorate(fn: Callable) -> Callable:
        command = fn.__name__

        @functools.wraps(fn)
        def wrapper(job_path: str, options: Any = None, *args: Any, **kwargs: Any) -> Any:
            options = options or options_type()
            try:
                return fn(job_path, options, *args, **kwargs)
            except Exception as error:
                code = (error.exit_code if isinstance(error, WarehouseBatchError)
                        else EXIT_INTERNAL)
                if code in FAILURE_CODES:
                    try:
                        record_failure(job_path, options, error, code, command, load, target)
                    except Exception as e:   # never masks the command's own error
                        options.log(f"warning: could not notify the failure: "
                                    f"{redact(str(e), options.env)}")
                raise
        return wrapper
    return decorate


def record_failure(job_path: str, options: Any, error: BaseException, code: int,
                   command: str, load: Callable[[str, Any], JobSpec],
                   target: Callable[[Any, JobSpec], Target]) -> list[dict]:
    """Record the job's failure (unless an incident is open already) and call its
    `on_failure` hook; nothing when the job has no failure hook, its file cannot be read,
    or the state does not know the job (a first run that was refused)."""
    env = options.env
    try:
        spec = load(job_path, options)
    except WarehouseBatchError:
        return []   # the job file cannot be read: no hook to tell, nothing to record under
    hooks = job_hooks(spec, env)
    if "failure" not in hooks:
        return []
    where = target(options, spec)
    job_file = str(Path(spec.path).resolve())
    with reading(where) as con:
        if con is None or not con.execute(
                f"SELECT count(*) FROM {SCHEMA}.outputs WHERE job_file = ?",
                [job_file]).fetchone()[0]:
            return []
    described = (error.to_dict() if isinstance(error, WarehouseBatchError)
                 else {"error": type(error).__name__, "message": str(error)})
    with session(where, warehouse="none") as con:
        open_incident = con.execute(
            f"""SELECT count(*) FROM {SCHEMA}.notifications WHERE job_name = ?
                AND event = 'failure' AND resolved_at IS NULL""", [spec.name]).fetchone()[0]
        if not open_incident:
            nid = _new_id("failure", spec.name, secrets.token_hex(8))
            payload = _dumps({"event": "failure", "notification_id": nid, "job": spec.name,
                              "job_file": job_file, "command": command, "exit_code": code,
                              "status": "error", "error": described,
                              "finished_at": iso_now()}, env)
            con.execute(f"""INSERT INTO {SCHEMA}.notifications (notification_id, job_name,
                job_file, event, hook, state, payload, created_at)
                VALUES (?, ?, ?, 'failure', ?, 'pending', ?, ?)""",
                        [nid, spec.name, job_file, redact(hooks["failure"].describe(), env),
                         payload, now_utc()])
        due = claim(con, spec.name, hooks)
    return deliver(due, where, None, env, options.log)
