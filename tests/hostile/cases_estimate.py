"""Token budgets a job file could abuse (issue 11, item 9): `truncate_tokens` with a budget
that is negative, zero, huge, not a whole number or not a literal, and rows too long for the
model's context window. Each is refused at plan (and run) before anything is written or sent.
"""
from __future__ import annotations

from . import Case

BASE = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "max_tokens=20, prompt_file='prompt.j2'")
BAD_BUDGET = r"prompt\.j2:2(:\d+)?: truncate_tokens takes one literal whole number of tokens " \
             r"from 1 to 1,000,000, not {shown}"


def _budget(id: str, arg: str, shown: str) -> Case:
    return Case(id, BASE, files={"prompt.j2": "Summarise:\n{{ text | truncate_tokens(" + arg
                                 + ") }}"},
                message=BAD_BUDGET.format(shown=shown))


CASES = [
    _budget("truncate-tokens-negative", "-2000", "-2000"),
    _budget("truncate-tokens-zero", "0", "0"),
    _budget("truncate-tokens-huge", "10**100", "an expression"),
    _budget("truncate-tokens-too-large", "99999999999999999999", "99999999999999999999"),
    _budget("truncate-tokens-string", "'2000'", "'2000'"),
    _budget("truncate-tokens-float", "1e9", "1000000000.0"),
    _budget("truncate-tokens-column", "id", "an expression"),
    Case("truncate-tokens-through-map", BASE,
         files={"prompt.j2": "{{ [text] | map('truncate_tokens', -1) | join }}"},
         message=r"prompt\.j2:1(:\d+)?: prompt template was stopped by the sandbox: "
                 r"truncate_tokens takes a whole number of tokens"),
    Case("row-past-context-window",
         "name='enriched', provider='openai', model='gpt-4', unique_key='id', max_tokens=20, "
         "prompt='Summarise: {{ text }}'",
         sql="SELECT id, text FROM reviews UNION ALL SELECT 99, repeat('word ', 8000)",
         message=r"1 row\(s\) would pass the context window of gpt-4 \(8,192 tokens(.|\n)*"
                 r"'id': 99(.|\n)*hint: .*truncate_tokens"),
    Case("row-past-context-window-with-max-tokens",
         "name='enriched', provider='anthropic', model='claude-haiku-4-5', unique_key='id', "
         "max_tokens=64000, prompt='Summarise: {{ text }}'",
         sql="SELECT id, text FROM reviews UNION ALL SELECT 7, repeat('x', 500000)",
         message=r"context window of claude-haiku-4-5 \(200,000 tokens for input and "
                 r"max_tokens=64,000 together\)(.|\n)*'id': 7"),
]
