"""Processing plans and the timing snapshot shared by both batch flavours.

A plan fixes, at create time, the order in which a batch's requests finish
(a seeded shuffle of the runnable ones, then the ``never`` ones) and each
request's success/failure class, so that request counts can be computed at
any moment without re-running the answer logic.
"""
from __future__ import annotations

from typing import Any

from .config import EmulatorConfig
from .ids import shuffled


def timing(config: EmulatorConfig, *, openai: bool) -> dict[str, Any]:
    """Return the schedule knobs copied into a new batch (Anthropic has no validating/finalizing)."""
    return {
        "validate": config.validate_seconds if openai else 0.0,
        "process": config.process_seconds,
        "finalize": config.finalize_seconds if openai else 0.0,
        "cancel": config.cancel_seconds,
        "expire_fraction": config.expire_fraction,
        "cancel_fraction": config.cancel_fraction,
    }


def make_plan(custom_ids: list[str], kinds: list[str], seed: int, batch_id: str) -> dict[str, Any]:
    """Return ``order`` (request indexes), aligned ``kinds`` ('s'/'f'/'n'), ``total`` and ``runnable``."""
    runnable = [i for i, k in enumerate(kinds) if k != "n"]
    never = [i for i, k in enumerate(kinds) if k == "n"]
    order = shuffled(runnable, lambda i: custom_ids[i], seed, batch_id, "order") + never
    return {
        "order": order,
        "kinds": "".join(kinds[i] for i in order),
        "total": len(kinds),
        "runnable": len(runnable),
    }


def counts_so_far(rec: dict[str, Any], processed: int) -> tuple[int, int]:
    """Return (succeeded, failed) among the first ``processed`` requests in processing order."""
    done = rec["kinds"][:processed]
    return done.count("s"), done.count("f")
