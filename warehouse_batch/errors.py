"""Every error warehouse-batch raises on purpose, and the exit code each maps to.

User errors carry a location (file, line, column) or the offending rows, so the message tells
the user exactly what to fix. Provider errors say whether retrying can help, so the ledger and
the CLI can tell "come back later" from "fix something first".
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Exit codes, documented in the README. `75` is sysexits' EX_TEMPFAIL: "try again later".
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_PROVIDER = 3
EXIT_FAILED_ROWS = 4
EXIT_PENDING = 75


class WarehouseBatchError(Exception):
    """Base class: anything the CLI translates into a clean message and an exit code."""

    exit_code = EXIT_INTERNAL

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": str(self)}


@dataclass
class Location:
    """Where in a user's file a problem is. Lines and columns are 1-based."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file or "<job>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class UserError(WarehouseBatchError):
    """Something the user must change: the job file, the data, the options or the environment."""

    exit_code = EXIT_USER

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.location:
            d["location"] = {
                "file": self.location.file,
                "line": self.location.line,
                "column": self.location.column,
            }
        if self.hint:
            d["hint"] = self.hint
        return d


class JobFileError(UserError):
    """The job file is malformed: config block, SQL, or template."""


class DataError(UserError):
    """The selected rows break a rule (NULL or duplicate keys, colliding column names)."""

    def __init__(self, message: str, rows: list[dict] | None = None, **kw):
        self.rows = rows or []
        if self.rows:
            shown = "\n".join(f"    {r}" for r in self.rows[:10])
            message = f"{message}\n{shown}"
            if len(self.rows) > 10:
                message += f"\n    … and {len(self.rows) - 10} more"
        super().__init__(message, **kw)


class ConfigurationError(UserError):
    """The environment is incomplete: a missing API key, a bad base URL, a bad option value."""

    exit_code = EXIT_PROVIDER


class StateError(WarehouseBatchError):
    """The state schema in the DuckDB file is unusable (newer than this tool, or locked)."""

    exit_code = EXIT_USER


@dataclass
class ProviderErrorInfo:
    status: int | None = None
    request_id: str | None = None
    type: str | None = None
    code: str | None = None
    extra: dict = field(default_factory=dict)
    retry_after: float | None = None   # seconds the provider asked us to wait (`retry-after`)


class ProviderError(WarehouseBatchError):
    """A provider call failed. `retryable` says whether the same call may succeed later.

    A retryable error (429, 5xx, a timeout, a dropped connection) is transient: `run --wait`
    backs off and carries on, and a command that stops on one exits 75 ("try again later").
    Anything else needs a person (a refused key, a permission, a refused request): exit 3.
    """

    def __init__(self, message: str, *, retryable: bool, info: ProviderErrorInfo | None = None):
        self.retryable = retryable
        self.info = info or ProviderErrorInfo()
        suffix = " (retryable)" if retryable else ""
        rid = f" [request id {self.info.request_id}]" if self.info.request_id else ""
        super().__init__(f"{message}{rid}{suffix}")

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_PENDING if self.retryable else EXIT_PROVIDER

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(retryable=self.retryable, status=self.info.status, request_id=self.info.request_id,
                 retry_after=self.info.retry_after)
        return d


class AmbiguousCreateError(ProviderError):
    """A create call may or may not have reached the provider (timeout, 5xx, dropped connection).

    The ledger must look for the batch by its tag before ever creating it again.
    """

    def __init__(self, message: str, info: ProviderErrorInfo | None = None):
        super().__init__(message, retryable=True, info=info)


class LookupUndecidedError(ProviderError):
    """A lost-create lookup found more than one batch that could be ours and cannot tell yet.

    Creating again could pay twice, so the batch stays in `creating` and is looked up again
    on a later pass (once candidates end, their custom_ids decide).
    """

    def __init__(self, message: str):
        super().__init__(message, retryable=True)


class TemplateBudgetError(UserError):
    """A template would build a string larger than the rendering budget allows.

    Raised inside the sandbox before the string is allocated; `render` re-raises it as a
    `DataError` naming the row's key and the template line.
    """


class UnreachableError(ProviderError):
    """No connection to the provider could be made at all (refused, no route, DNS, connect
    timeout). Retryable, since a network blip passes; but when a command has not yet reached
    the provider it is more often a wrong base URL or no network, which a person must look
    at: so it exits 3, and only a later pass of `run --wait` waits it out."""

    def __init__(self, message: str, info: ProviderErrorInfo | None = None):
        super().__init__(message, retryable=True, info=info)

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_PROVIDER


class MemoryLimitError(UserError):
    """DuckDB could not do a step within the command's memory limit (and could not spill it).
    The step's transaction rolled back, so nothing recorded is lost; a higher limit (or fewer
    rows per command) lets the same command go through."""


class BusyError(WarehouseBatchError):
    """A DuckDB file stayed locked by another process for the whole `--lock-timeout`.

    Nothing is wrong and nothing was lost: the other writer (dbt, a notebook, another
    warehouse-batch) holds the file, and the same command succeeds once it lets go. So it
    exits 75 ("try again later"), never 2, and `--json` says `"retryable": true`."""

    exit_code = EXIT_PENDING

    def __init__(self, path: str, waited: float, holder: str | None = None):
        self.path = path
        self.waited = waited
        self.holder = holder
        by = f" by {holder}" if holder else " by another process"
        super().__init__(
            f"{path} is busy: it is held{by} (DuckDB allows one writing process per file); "
            f"waited {waited:g}s (--lock-timeout). Nothing was lost: run the same command "
            "again later")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(retryable=True, path=self.path, holder=self.holder,
                 waited_seconds=self.waited)
        return d


class MissingDatabaseError(UserError):
    """`--db` (or the state database) names a file that does not exist, for a command that
    must not create one: most likely a typo, which would otherwise plan against an empty
    database and blame a missing table."""


# `warehouse-batch check` found something a person should look at (health.py). Not an error
# of the command: the alerts are its answer, one per line and in --json.
EXIT_ALERTS = 5


class BudgetConflictError(BusyError):
    """Two submits in one process reserved budget on the same snapshot of the state
    (budget.py): the second is refused before anything is recorded or sent, so no cap is
    crossed. Nothing is wrong: the state was busy, and the same command goes through when run
    again (exit 75, `"retryable": true`)."""

    def __init__(self, detail: str):
        self.path, self.waited = "the state database", 0.0
        self.holder = "another submit of this process reserving budget"
        WarehouseBatchError.__init__(
            self, "another submit reserved budget in this state database at the same moment "
                  f"({detail}); nothing was recorded or sent: run the same command again")
