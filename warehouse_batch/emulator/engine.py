"""Lazy batch progress: bring a batch up to date on access, cancel it, force it.

:func:`refresh` is called whenever a batch is read. It derives the state from
the clock (:mod:`.lifecycle`) and, the first time the batch is terminal,
materialises its results (files or results JSONL) and freezes them into the
record, so every later read sees exactly the same outcome.
"""
from __future__ import annotations

from typing import Any

from . import anthropic_batches, gemini_batches, openai_batches
from .lifecycle import View, derive, forced
from .store import Store

OPENAI_FORCE = {"expired": "expired", "failed": "failed", "cancelled": "cancelled", "completed": "completed"}
ANTHROPIC_FORCE = {"ended": "completed", "expired": "expired", "canceled": "cancelled"}


def _freeze(store: Store, rec: dict[str, Any], view: View) -> None:
    if rec["protocol"] == "anthropic":
        extras = anthropic_batches.materialise(store, rec, view)
    elif rec["protocol"] == "gemini":
        extras = gemini_batches.materialise(store, rec, view)
    else:
        extras = openai_batches.materialise(store, rec, view)
    rec["final"] = {**view.to_dict(), **extras}
    store.put_batch(rec)


def refresh(store: Store, rec: dict[str, Any], now: float) -> View:
    """Return the batch's current view, materialising its results if it just ended."""
    view = derive(rec, now)
    if view.terminal and not rec.get("final"):
        _freeze(store, rec, view)
    return view


def refresh_all(store: Store, now: float) -> None:
    """Bring every batch up to date (before listing or reporting outcomes)."""
    for rec in list(store.batches.values()):
        refresh(store, rec, now)


def finish_next(store: Store, now: float) -> bool:
    """Materialise the oldest OpenAI/Azure batch that has ended but has no results yet (see
    :mod:`.finisher`); return whether there was one."""
    for rec in sorted((r for r in store.batches.values() if not r.get("final") and r["protocol"] != "anthropic"),
                      key=lambda r: r["seq"]):
        view = derive(rec, now)
        if view.terminal:
            _freeze(store, rec, view)
            return True
    return False


def cancel(store: Store, rec: dict[str, Any], now: float) -> View | None:
    """Start cancelling a running batch; return the new view, or None if it already ended."""
    view = refresh(store, rec, now)
    if view.terminal:
        return None
    if view.status != "cancelling":
        rec["cancel_at"] = now
        store.put_batch(rec)
        view = refresh(store, rec, now)
    return view


def force(store: Store, rec: dict[str, Any], status: str, now: float) -> View:
    """End a batch now in the given state (provider vocabulary); raise ValueError if impossible."""
    table = {"anthropic": ANTHROPIC_FORCE, "gemini": gemini_batches.FORCE}.get(rec["protocol"], OPENAI_FORCE)
    if status not in table:
        raise ValueError(f"status must be one of {sorted(table)} for this batch")
    view = refresh(store, rec, now)
    if view.terminal:
        raise ValueError(f"batch {rec['id']} has already ended ({view.status})")
    view = forced(rec, now, table[status])
    _freeze(store, rec, view)
    return view
