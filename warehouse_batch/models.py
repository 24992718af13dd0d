"""What the providers document about each model that a job must respect before sending.

Today: the most output tokens one response may have (`data/models.json`), so an absurd
`max_tokens` (a typo, `10**24`) is refused at plan time instead of failing every row a day
later, and so a cost worst case is never computed from a number no model can produce.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class OutputLimit:
    tokens: int
    documented: bool    # False: the model is unknown and the general ceiling applies


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("warehouse_batch").joinpath("data", "models.json")
                      .read_text(encoding="utf-8"))


def output_limit(provider: str, model: str) -> OutputLimit:
    """The documented output-token limit of `model` (longest matching name prefix), or the
    ceiling for unknown models. Azure deployments are named by the user, so they get the
    ceiling; OpenAI-compatible servers likewise."""
    data = _table()
    best = None
    for m in data["models"]:
        if m["provider"] == provider and model.startswith(m["model"]) and (
                best is None or len(m["model"]) > len(best["model"])):
            best = m
    if best is None:
        return OutputLimit(int(data["unknown_model_ceiling"]), documented=False)
    return OutputLimit(int(best["max_output_tokens"]), documented=True)
