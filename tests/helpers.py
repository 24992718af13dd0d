"""Helpers shared by the tests (importable as `helpers`)."""
from __future__ import annotations

import textwrap
from pathlib import Path



def write_job(dir: Path, config: str, sql: str, name: str = "job.sql") -> Path:
    """Write a job file: `config` is the inside of config(...), `sql` the SELECT."""
    path = dir / name
    path.write_text("{{ config(\n" + textwrap.indent(textwrap.dedent(config).strip(), "    ")
                    + "\n) }}\n" + textwrap.dedent(sql).strip() + "\n")
    return path




class EmulatorClock:
    """A clock whose sleep moves the emulator's manual clock instead of waiting."""

    def __init__(self, emu) -> None:
        self.emu = emu

    def now(self) -> float:
        return self.emu.admin("GET", "/_emulator/clock")["now"]

    def sleep(self, seconds: float) -> None:
        self.emu.advance(seconds)


def emulator_env(emu, **extra: str) -> dict[str, str]:
    """Environment for the SDKs to talk to `emu` (and nothing else)."""
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "WAREHOUSE_BATCH_"))}
    env.update(OPENAI_BASE_URL=emu.openai_base_url, OPENAI_API_KEY="sk-emulator",
               ANTHROPIC_BASE_URL=emu.anthropic_base_url, ANTHROPIC_API_KEY="emulator")
    env.update(extra)
    return env


def provider_calls(emu, method: str | None = None, path_prefix: str = "") -> list[dict]:
    calls = emu.admin("GET", "/_emulator/requests")["data"]
    return [c for c in calls if (method is None or c["method"] == method)
            and c["path"].startswith(path_prefix)]


def billed_counts(emu) -> dict[str, int]:
    """custom_id -> how many times the emulator billed (succeeded) it."""
    counts: dict[str, int] = {}
    for p in emu.admin("GET", "/_emulator/processed")["data"]:
        if p["billed"]:
            counts[p["custom_id"]] = counts.get(p["custom_id"], 0) + 1
    return counts
