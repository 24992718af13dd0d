"""Fixtures for the emulator tests: a manual-clock emulator and real SDK clients."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import anthropic
import openai
import pytest

from warehouse_batch.emulator import EmulatorConfig, RunningEmulator, start


@pytest.fixture
def make_emulator(tmp_path: Any) -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators with a manual clock on a free port; stop them all at the end."""
    started: list[RunningEmulator] = []

    def _make(**knobs: Any) -> RunningEmulator:
        knobs.setdefault("port", 0)
        knobs.setdefault("clock", "manual")
        emu = start(EmulatorConfig(**knobs))
        started.append(emu)
        return emu

    yield _make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    """A default emulator (manual clock, in memory)."""
    return make_emulator()


@pytest.fixture
def oai(emu: RunningEmulator) -> openai.OpenAI:
    """An OpenAI client on the emulator, without retries (tests that want them make their own)."""
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def anth(emu: RunningEmulator) -> anthropic.Anthropic:
    """An Anthropic client on the emulator, without retries."""
    return anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0)
