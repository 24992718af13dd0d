"""Shared fixtures: job files on disk, DuckDB files, and an emulator over loopback."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Trap


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


@pytest.fixture
def fast_emulator(tmp_path: Path):
    """Batches end as soon as they are looked at: for the CLI, which polls on the real clock."""
    from warehouse_batch.emulator import EmulatorConfig, start

    emu = start(EmulatorConfig(port=0, clock="manual", validate_seconds=0, process_seconds=0,
                               finalize_seconds=0, cancel_seconds=0,
                               state_dir=str(tmp_path / "emu")))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def trap():
    t = Trap()
    try:
        yield t
    finally:
        t.close()


def pytest_collection_finish(session) -> None:
    """Start building the optional extras' environments (`test_extras.prebuild`) as soon as
    it is known that their suites will run, so pip works while the other tests do."""
    extras = sorted({item.callspec.params["extra"] for item in session.items
                     if getattr(item, "originalname", None) == "test_integration_suite"})
    if extras:
        from test_extras import prebuild
        prebuild(extras)
