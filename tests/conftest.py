"""Shared fixtures: job files on disk, DuckDB files, and an emulator over loopback."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def emulator(tmp_path: Path):
    """A fresh emulator on a free loopback port with a manual clock (tests move time)."""
    from warehouse_batch.emulator import EmulatorConfig, start

    cfg = EmulatorConfig(port=0, clock="manual", state_dir=str(tmp_path / "emu-state"),
                         validate_seconds=5, process_seconds=60, finalize_seconds=5,
                         cancel_seconds=5)
    emu = start(cfg)
    try:
        yield emu
    finally:
        emu.stop()
