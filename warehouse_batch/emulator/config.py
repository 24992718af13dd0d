"""Emulator configuration: the knobs that shape timing, failures and faults.

Every field of :class:`EmulatorConfig` is a *knob*. ``host``, ``port`` and
``state_dir`` are fixed once the server runs; every other knob can be changed
at runtime through ``POST /_emulator/config`` and is persisted with the rest
of the state, so a restarted emulator behaves like the one that was stopped.

Batch-shaping knobs (timings, failure_rate, fractions, seed, ...) are copied
into each batch when it is created, so changing them later affects only
batches created afterwards and a batch's history can never jump.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

READ_ONLY_KNOBS = frozenset({"host", "port", "state_dir"})
CLOCK_MODES = ("real", "manual")
CREATE_FAULTS = ("error_after_create", "drop_after_create")

_FLOATS = {"validate_seconds", "process_seconds", "finalize_seconds", "cancel_seconds", "failure_rate",
           "create_429_rate", "create_retry_after", "sync_429_rate", "sync_500_rate",
           "sync_retry_after"}
_FRACTIONS = {"failure_rate", "create_429_rate", "sync_429_rate", "sync_500_rate"}
_OPT_FLOATS = {"expire_fraction", "cancel_fraction"}
_INTS = {
    "seed",
    "openai_max_requests",
    "openai_max_file_bytes",
    "anthropic_max_requests",
    "anthropic_max_bytes",
    "create_fault_count",
}
_OPT_INTS = {"enqueued_token_limit", "sync_requests_per_minute"}
_BOOLS = {"cancel_writes_error_lines", "sync_validation", "strict_anthropic_version",
          "token_limit_fail_fast"}


@dataclass
class EmulatorConfig:
    """All settings of one emulator instance (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 8123
    state_dir: str | None = None
    seed: int = 0
    clock: str = "real"
    validate_seconds: float = 1.0
    process_seconds: float = 5.0
    finalize_seconds: float = 1.0
    cancel_seconds: float = 2.0
    failure_rate: float = 0.0
    expire_fraction: float | None = None
    cancel_fraction: float | None = None
    cancel_writes_error_lines: bool = True
    sync_validation: bool = False
    openai_max_requests: int = 50_000
    openai_max_file_bytes: int = 200_000_000   # "200 MB" is decimal (field-facts.md)
    anthropic_max_requests: int = 100_000
    anthropic_max_bytes: int = 256 * 1024 * 1024
    enqueued_token_limit: int | None = None          # every model's, unless listed below
    enqueued_token_limits: dict[str, int] | None = None   # per model: {"gpt-4o-mini": N}
    token_limit_fail_fast: bool = False   # over the limit: HTTP 400 on create (Azure), not a
                                          # batch that fails in validation (OpenAI)
    strict_anthropic_version: bool = True
    create_fault: str | None = None
    create_fault_count: int = 1
    # batch-creation rate limit: this fraction of creates (decided per call from the seed)
    # is answered 429 with `retry-after: create_retry_after`, and nothing is created
    create_429_rate: float = 0.0
    create_retry_after: float = 5.0
    # synchronous model calls (sync_api.py): at most this many per minute of the emulator's
    # clock (then 429 with `retry-after` until the minute ends); a seeded fraction answered 429
    # (`retry-after: sync_retry_after`) or 500, whatever the limit
    sync_requests_per_minute: int | None = None
    sync_429_rate: float = 0.0
    sync_500_rate: float = 0.0
    sync_retry_after: float = 1.0

    def knobs(self) -> dict[str, Any]:
        """Return every knob as a JSON-ready dict."""
        return asdict(self)

    def token_limit(self, model: str | None) -> int | None:
        """The enqueued-token limit for `model`: its own entry, else the general one."""
        return (self.enqueued_token_limits or {}).get(model or "", self.enqueued_token_limit)

    def mutable_knobs(self) -> dict[str, Any]:
        """Return the knobs that are persisted and may change at runtime."""
        return {k: v for k, v in asdict(self).items() if k not in READ_ONLY_KNOBS}

    def update(self, changes: dict[str, Any], *, allow_read_only: bool = False) -> None:
        """Validate and apply a partial dict of knobs; raise ValueError on a bad key or value.

        Nothing is applied unless every entry is valid, so a rejected update
        leaves the configuration untouched.
        """
        known = {f.name for f in fields(self)}
        coerced: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown config key: {key!r}")
            if key in READ_ONLY_KNOBS and not allow_read_only:
                raise ValueError(f"config key {key!r} cannot be changed at runtime")
            coerced[key] = _coerce(key, value)
        for key, value in coerced.items():
            setattr(self, key, value)


def _coerce(key: str, value: Any) -> Any:
    """Check one knob value and return it in its canonical type."""
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be a boolean")
        return value
    if key in _FLOATS or (key in _OPT_FLOATS and value is not None):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number")
        if value < 0:
            raise ValueError(f"{key} must be >= 0")
        if key in _FRACTIONS and value > 1:
            raise ValueError(f"{key} must be between 0 and 1")
        return float(value)
    if key in _OPT_FLOATS:
        return None
    if key in _INTS or (key in _OPT_INTS and value is not None):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer")
        if key != "seed" and value < 0:
            raise ValueError(f"{key} must be >= 0")
        return value
    if key in _OPT_INTS:
        return None
    if key == "enqueued_token_limits":
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in value.items()):
            raise ValueError("enqueued_token_limits must map model names to integers >= 0")
        return dict(value)
    if key == "clock":
        if value not in CLOCK_MODES:
            raise ValueError(f"clock must be one of {CLOCK_MODES}")
        return value
    if key == "create_fault":
        if value is not None and value not in CREATE_FAULTS:
            raise ValueError(f"create_fault must be null or one of {CREATE_FAULTS}")
        return value
    if key == "host":
        if not isinstance(value, str):
            raise ValueError("host must be a string")
        return value
    if key == "port":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("port must be an integer")
        return value
    if key == "state_dir":
        if value is not None and not isinstance(value, str):
            raise ValueError("state_dir must be a string or null")
        return value
    raise ValueError(f"unknown config key: {key!r}")  # pragma: no cover - guarded by update()
