"""Enqueued-token budgets that make no sense: refused before anything is written or sent."""
from __future__ import annotations

from . import BASE, Case


CASES = [
    Case("enqueued-token-limit-zero", BASE + ", enqueued_token_limit=0",
         message=r"job\.sql:\d+:\d+: enqueued_token_limit must be at least 1"),
    Case("enqueued-token-limit-negative", BASE + ", enqueued_token_limit=-5",
         message=r"job\.sql:\d+:\d+: enqueued_token_limit must be at least 1"),
    Case("enqueued-token-limit-text", BASE + ", enqueued_token_limit='2,000,000'",
         message=r"job\.sql:\d+:\d+: config key 'enqueued_token_limit' must be a positive whole number"),
    Case("enqueued-token-limit-float", BASE + ", enqueued_token_limit=1e6",
         message=r"job\.sql:\d+:\d+: config key 'enqueued_token_limit' must be a positive whole number"),
    Case("enqueued-token-limit-flag-zero", BASE, args=("--enqueued-token-limit", "0"),
         message=r"Invalid value for '--enqueued-token-limit'"),
]
