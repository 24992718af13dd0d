"""Answer-checking settings that make no sense: refused before anything is written or sent."""
from __future__ import annotations

from . import BASE, Case


CASES = [
    Case("allow-truncated-a-string", BASE + ", allow_truncated='yes'",
         message=r"job\.sql:\d+:\d+: config key 'allow_truncated' must be true or false, "
                 r"got 'yes'"),
    Case("allow-truncated-a-number", BASE + ", allow_truncated=1",
         message=r"config key 'allow_truncated' must be true or false, got 1"),
    Case("allow-truncated-typed", BASE + ", allow_truncated=true, columns={'label': 'VARCHAR'}",
         message=r"job\.sql:\d+:\d+: allow_truncated=true keeps cut-off plain-text answers"),
    Case("allow-truncated-misspelt", BASE + ", allow_truncate=true",
         message=r"unknown config key .allow_truncate.(.|\n)*did you mean .allow_truncated."),
]
