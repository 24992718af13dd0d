"""The hostile job-file corpus: job files a careless or malicious author could write.

Each module `cases_*.py` here exports `CASES`, a list of `Case`. `tests/test_hostile.py` runs
every case through the real CLI (a subprocess) against a real DuckDB file and the emulator,
and checks three things: the exit code and message are the expected ones, every table and
view in the database is unchanged (a checksum before and after), and the emulator (and a
second listener on another loopback port, named `{trap}` in a case) received nothing.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


# The usual job of a case: OpenAI (or Anthropic) over the harness's `reviews` table.
BASE = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "prompt='Summarise: {{ text }}', max_tokens=20")
ANTHROPIC = ("name='enriched', provider='anthropic', model='claude-haiku-4-5', unique_key='id', "
             "prompt='Summarise: {{ text }}', max_tokens=20")


@dataclass
class Case:
    """One hostile job file and what the tool must answer.

    `config` is the inside of `config(...)`; `{trap}` in it (or in `sql`, `files`, `env`) is
    replaced by the base URL of a listener that must receive nothing, `{dir}` by the job's
    folder. `files` are written next to the job (relative path -> text). `setup_sql` runs on
    the database first. `commands` are the CLI commands tried, each must refuse.
    """

    id: str
    config: str
    sql: str = "SELECT id, text FROM reviews"
    exit_code: int = 2
    message: str = ""              # a regular expression searched in stderr
    commands: tuple[str, ...] = ("plan", "run")
    args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    setup_sql: str = ""
    env: dict[str, str] = field(default_factory=dict)
    job_text: str | None = None    # the whole job file, instead of config + sql


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            cases.extend(importlib.import_module(f"{__name__}.{info.name}").CASES)
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate hostile case ids: {dupes}"
    return cases
