"""Statements that are not a single read-only SELECT."""
from __future__ import annotations

from . import BASE, Case


CASES = [
    Case("delete-statement", BASE, sql="DELETE FROM reviews", message=r"not a SELECT"),
    Case("two-statements", BASE, sql="SELECT id, text FROM reviews; DROP TABLE reviews",
         message=r"2 SQL statements"),
]
