"""Settings read from environment variables (which the project file fills in, `project.py`):
one rule for all of them, so a bad value is a `UserError` naming the variable (exit 2), never
a traceback, and an unset or empty one means the default."""
from __future__ import annotations

import os
from typing import Callable, TypeVar

from .errors import UserError

T = TypeVar("T")


def env_setting(name: str, check: Callable[[str], T], default: T) -> T:
    """The value of variable `name` as `check` reads it (`check` raises ValueError for a bad
    one), else `default` when the variable is unset or empty."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return check(value)
    except ValueError as e:
        raise UserError(f"${name}: {e}") from None
