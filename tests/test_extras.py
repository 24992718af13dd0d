"""Run each integration suite (`tests/integrations/<extra>/`) in a virtual environment of its
own, with the real package from the package index (`pip install -e '.[test,<extra>]'`).

dbt, Dagster and Airflow pin their dependencies differently and must not decide the versions
the core tests run against, so each gets its own environment under `.venv-extras/<extra>`,
built once and reused while `pyproject.toml` is unchanged. This keeps the README's single test
command running everything. A failure shows the inner run's output.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = ROOT / "tests" / "integrations"
EXTRAS = sorted(p.name for p in INTEGRATIONS.iterdir()
                if p.is_dir() and not p.name.startswith("_") and any(p.glob("test_*.py")))


def _environment(extra: str) -> Path:
    """`.venv-extras/<extra>`, (re)built when pyproject.toml changed since it was built."""
    venv = ROOT / ".venv-extras" / extra
    python = venv / "bin" / "python"
    stamp = venv / ".pyproject-sha256"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", f"{ROOT}[test,{extra}]"], capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"pip install '.[test,{extra}]' failed:\n{install.stdout}\n{install.stderr}")
    stamp.write_text(digest)
    return python


@pytest.mark.parametrize("extra", EXTRAS)
def test_integration_suite(extra: str) -> None:
    python = _environment(extra)
    env = {**os.environ, "WAREHOUSE_BATCH_EXTRA": extra}
    env.pop("PYTHONPATH", None)   # the extra's environment has this checkout installed
    # "-o addopts=": the project's own "-q" would make this "-qq", which drops the
    # "N passed" summary checked below
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
         str(INTEGRATIONS / extra)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"integration suite {extra!r} failed (exit {result.returncode}):\n"
        f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}")
    assert " passed" in result.stdout, result.stdout
