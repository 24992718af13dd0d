"""Which request-body parameters a provider and model family accept (`data/params.json`).

A batch request the provider refuses fails in its error file a day later, once per row; so
every parameter a job sets is checked here at plan time, and nothing is sent:

* a key the provider's endpoint does not have (`top_k` on OpenAI) is refused, with the
  table's hint or a "did you mean";
* a model family may rename a key (`max_tokens` is sent as `max_completion_tokens` to
  OpenAI reasoning models) or refuse one, with the reason (sampling parameters on
  reasoning models, and on Claude Opus 4.7 and later).

Families are found by the longest model-name prefix, as in `models.py`: adding one is a row
of the table. Azure deployments are named by the user; a deployment named like the model
(`o3-mini`) gets that model's row.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from .errors import JobFileError
from .models import longest_prefix

if TYPE_CHECKING:   # annotations only: providers import this module on the poll path
    from .spec import JobSpec


@dataclass(frozen=True)
class Family:
    """What one model family changes: keys renamed on the way out, keys refused (with why)."""

    model: str = ""
    rename: dict[str, str] = field(default_factory=dict)
    refuses: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("warehouse_batch").joinpath("data", "params.json")
                      .read_text(encoding="utf-8"))


def _provider(provider: str) -> tuple[str, dict]:
    """The table entry of a provider (following `same_as`) and the name it is filed under."""
    entry = _table()["providers"].get(provider, {"open": True})
    while "same_as" in entry:
        provider = entry["same_as"]
        entry = _table()["providers"][provider]
    return provider, entry


def family(provider: str, model: str) -> Family:
    """The family row of `model` (longest matching prefix), or an empty one."""
    name, _ = _provider(provider)
    rows = [r for r in _table()["families"] if r["provider"] == name]
    best = longest_prefix(rows, model)
    if best is None:
        return Family()
    row = best
    while "same_as" in row:
        row = next(r for r in rows if r["model"] == row["same_as"])
    return Family(best["model"], dict(row.get("rename", {})), dict(row.get("refuses", {})))


def accepted(provider: str, endpoint: str) -> frozenset[str] | None:
    """The body fields the provider's endpoint takes, or None when any key passes."""
    _, entry = _provider(provider)
    if entry.get("open"):
        return None
    return frozenset(entry.get(endpoint, ()))


def check(spec: JobSpec, provider: str) -> None:
    """Refuse (JobFileError at the key's file:line:col) a parameter the provider or the
    model family would refuse. Config keys are checked by name; `params={...}` entries too."""
    _, entry = _provider(provider)
    known = accepted(provider, spec.endpoint)
    fam = family(provider, spec.model)
    given = [(k, k) for k in spec.generation] + [(k, "params") for k in spec.params]
    for key, where in given:
        if known is not None and key not in known:
            hint = entry.get("hints", {}).get(key)
            if hint is None:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else "remove it; see the README's parameters table")
            inside = " (in params)" if where == "params" else ""
            raise JobFileError(
                f"{key!r}{inside} is not a parameter of {provider}'s {spec.endpoint} requests: "
                "every request would be refused", spec.location_of(where), hint=hint)
        if key in fam.refuses:
            raise JobFileError(f"{key!r} is refused by {spec.model!r}: {fam.refuses[key]}",
                               spec.location_of(where),
                               hint=f"remove {key} for this model")
    for old, new in fam.rename.items():
        keys = set(spec.generation) | set(spec.params)
        if old in keys and new in keys:
            raise JobFileError(f"{spec.model!r} takes {new} (sent for {old}); give only one",
                               spec.location_of(old if old in spec.generation else "params"))


def renamed(provider: str, model: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with the family's renames applied, in the same order (e.g. `max_tokens` as
    `max_completion_tokens` for an OpenAI reasoning model)."""
    rename = family(provider, model).rename
    return {rename.get(k, k): v for k, v in fields.items()}
