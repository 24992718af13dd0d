"""Values no provider could accept, and options that make no sense: refused before anything
is written or sent."""
from __future__ import annotations

from . import Case

BASE = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "prompt='Summarise: {{ text }}'")

CASES = [
    Case("max-tokens-absurd", BASE + ", max_tokens=1000000000000000000000000",
         message=r"job\.sql:\d+:\d+: max_tokens=1,000,000,000,000,000,000,000,000 is more than "
                 r"the model can produce: gpt-4\.1-mini answers with at most 32,768 tokens"),
    Case("max-tokens-unknown-model-absurd",
         BASE.replace("gpt-4.1-mini", "my-own-model") + ", max_tokens=50000000",
         message=r"no model answers with more than 1,000,000 tokens"),
    Case("max-completion-tokens-over-documented",
         BASE.replace("gpt-4.1-mini", "o4-mini") + ", max_completion_tokens=200000",
         message=r"o4-mini answers with at most 100,000 tokens"),
    Case("max-tokens-anthropic-over-documented",
         BASE.replace("'openai'", "'anthropic'").replace("gpt-4.1-mini", "claude-opus-4-1")
         + ", max_tokens=64000",
         message=r"claude-opus-4-1 answers with at most 32,000 tokens"),
    Case("max-tokens-zero", BASE + ", max_tokens=0", message=r"max_tokens must be at least 1"),
    Case("poll-interval-negative", BASE + ", max_tokens=20", commands=("run",),
         args=("--poll-interval", "-1"), message=r"Invalid value for '--poll-interval'"),
    Case("poll-interval-zero", BASE + ", max_tokens=20", commands=("run",),
         args=("--poll-interval", "0"), message=r"Invalid value for '--poll-interval'"),
    Case("max-wait-negative", BASE + ", max_tokens=20", commands=("run",),
         args=("--max-wait", "-5"), message=r"Invalid value for '--max-wait'"),
]
