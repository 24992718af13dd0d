"""Budgets and deadlines a job file cannot be held to (budget.py): refused at `plan` (and
`run`) with the key's location, before anything is written or sent."""
from __future__ import annotations

from . import BASE, Case

UNPRICED = BASE.replace("gpt-4.1-mini", "gpt-unpriced-9")

CASES = [
    Case("budget-on-unpriced-model", UNPRICED + ", budget_usd=5",
         message=r"job\.sql:\d+:\d+: budget_usd is set but openai model 'gpt-unpriced-9' has "
                 r"no price"),
    Case("budget-on-unpriced-compatible-model",
         "name='enriched', provider='openai_compatible', model='llama-3', unique_key='id', "
         "prompt='Summarise: {{ text }}', max_tokens=20, base_url='{trap}', budget_usd=1",
         args=("--allow-host", "127.0.0.2"), message=r"budget_usd is set but .*no price"),
    Case("budget-zero", BASE + ", budget_usd=0", message=r"budget_usd must be an amount"),
    Case("budget-negative", BASE + ", budget_usd=-10", message=r"budget_usd must be an amount"),
    Case("budget-as-text", BASE + ", budget_usd='100'", message=r"budget_usd must be an amount"),
    Case("budget-bool", BASE + ", budget_usd=true", message=r"budget_usd must be an amount"),
    Case("deadline-not-a-time", BASE + ", deadline='tomorrow morning'",
         message=r"deadline 'tomorrow morning' is neither a time of day"),
    Case("deadline-hour-25", BASE + ", deadline='25:00'", message=r"is not a time of day"),
    Case("deadline-number", BASE + ", deadline=6", message=r"deadline 6 must be a string"),
]
