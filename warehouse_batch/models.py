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
from typing import Iterable


@dataclass(frozen=True)
class OutputLimit:
    tokens: int
    documented: bool    # False: the model is unknown and the general ceiling applies


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("warehouse_batch").joinpath("data", "models.json")
                      .read_text(encoding="utf-8"))


def longest_prefix(rows: Iterable[dict], model: str) -> dict | None:
    """The row whose `model` is the longest prefix of `model`, if any: how every per-model
    table here (output limits, parameter families, prices) finds a model's row, so a short
    key prices or limits longer names unless a longer key is listed."""
    return max((r for r in rows if model.startswith(r["model"])),
               key=lambda r: len(r["model"]), default=None)


def output_limit(provider: str, model: str) -> OutputLimit:
    """The documented output-token limit of `model` (longest matching name prefix), or the
    ceiling for unknown models. Azure deployments are named by the user, so they get the
    ceiling; OpenAI-compatible servers likewise."""
    data = _table()
    best = longest_prefix([m for m in data["models"] if m["provider"] == provider], model)
    if best is None:
        return OutputLimit(int(data["unknown_model_ceiling"]), documented=False)
    return OutputLimit(int(best["max_output_tokens"]), documented=True)


def context_window(provider: str, model: str) -> int | None:
    """The documented context window of `model` (input and output tokens of one request
    together; longest matching name prefix), or None when the model is not listed (Azure
    deployments and OpenAI-compatible servers: the name is the user's)."""
    best = longest_prefix([m for m in _table()["models"] if m["provider"] == provider], model)
    if best is None or best.get("context_window") is None:
        return None
    return int(best["context_window"])
