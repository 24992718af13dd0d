"""Settings read from environment variables (which the project file fills in, `project.py`):
one rule for all of them, so a bad value is a `UserError` naming the variable (exit 2), never
a traceback, and an unset or empty one means the default."""
from __future__ import annotations

import os
from typing import Callable, Mapping, TypeVar

from .errors import UserError

T = TypeVar("T")

REALTIME_CONCURRENCY_ENV = "WAREHOUSE_BATCH_REALTIME_CONCURRENCY"
DEFAULT_REALTIME_CONCURRENCY = 4   # requests in flight at once, per command


def env_setting(name: str, check: Callable[[str], T], default: T,
                env: Mapping[str, str] | None = None) -> T:
    """The value of variable `name` (in `env`, else the process environment) as `check` reads
    it (`check` raises ValueError for a bad one), else `default` when it is unset or empty."""
    value = (env if env is not None else os.environ).get(name)
    if not value:
        return default
    try:
        return check(value)
    except ValueError as e:
        raise UserError(f"${name}: {e}") from None


def realtime_concurrency(env: Mapping[str, str] | None = None) -> int:
    """How many requests the real-time path sends at once: $WAREHOUSE_BATCH_REALTIME_CONCURRENCY
    (a whole number, held to 1-64), else 4."""
    return env_setting(REALTIME_CONCURRENCY_ENV, _whole_concurrency,
                       DEFAULT_REALTIME_CONCURRENCY, env)


def _whole_concurrency(value: str) -> int:
    try:
        return max(1, min(64, int(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number of requests to send at once "
                         "(1-64)") from None
