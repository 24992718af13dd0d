"""bench/run.py end to end at a small size: it completes against the real emulator and its
table has every target row of issue 9. No timing is asserted: the numbers are the bench's
business, not the suite's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "bench" / "run.py"
TARGET_ROWS = (
    "plan / COPY floor",
    "submit (",                                  # "submit (N batches) / COPY floor ..."
    "collect of all answers / read_json floor",
    "run with nothing changed / plan",
    "run after 1% of rows changed / plan",
    "status with no batch ended / plan",
    "collect with no batch ended / plan",
    "peak RSS of every command",
    "state + output on disk",
)
FLOOR_ROWS = ("floor: DuckDB COPY", "floor: DuckDB read_json", "floor: the seeds' per-row loop")


def test_bench_runs_every_path_and_reports_every_target(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--rows", "2000", "--batch-max-requests", "500",
         "--floor-repeats", "1", "--workdir", str(tmp_path / "work"), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    by_path = {r["path"]: r for r in report["rows"]}
    for label in TARGET_ROWS + FLOOR_ROWS:
        matches = [r for p, r in by_path.items() if p.startswith(label)]
        assert len(matches) == 1, (label, list(by_path))
        row = matches[0]
        if label in TARGET_ROWS:   # measured in this run, so judged: ok or FAIL, never n/a
            assert row["ratio"] is not None and row["ok"] in (True, False), row
    text = out.read_text()
    for label in TARGET_ROWS + FLOOR_ROWS:
        assert f"| {label}" in text, label
    facts = report["facts"]
    # the paths really ran: every row answered by collect; the 1% run sent 1% of them more
    assert facts["after_collect"]["output_status"] == {"succeeded": 2000}
    assert facts["changed"]["changed"] == 20
    assert facts["after_all"]["requests"] == 2020
    assert facts["after_all"]["output_status"] == {"pending": 20, "succeeded": 1980}
    assert facts["after_submit"]["batches"] == 4   # 2000 rows, 500 per batch
    assert "cores" in text and "DuckDB" in text   # the machine and versions are stated
    # what the targets ask of each other, beside the start-up measured in this run
    assert any(p.startswith("start-up: Python, DuckDB, one query") for p in by_path)
    assert "Targets together: with `plan` at its cap" in text
    assert "`run` after 1% changed may then cost" in text
