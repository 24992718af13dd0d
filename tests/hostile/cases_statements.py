"""Statements that are not a single read-only SELECT."""
from __future__ import annotations

from . import Case

BASE = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "prompt='Summarise: {{ text }}', max_tokens=20")

CASES = [
    Case("delete-statement", BASE, sql="DELETE FROM reviews", message=r"not a SELECT"),
    Case("two-statements", BASE, sql="SELECT id, text FROM reviews; DROP TABLE reviews",
         message=r"2 SQL statements"),
]
