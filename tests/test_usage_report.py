"""`warehouse-batch report` (issue 11, item 4): per job and day, from the state's own tables,
as text, JSON and one self-contained HTML page, through the real CLI."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb

from warehouse_batch.usage_report import build_report

from helpers import emulator_env, write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _job(tmp_path: Path, name: str, rows: int, marker_rows: int = 0) -> tuple[str, str]:
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute(f"CREATE OR REPLACE TABLE src_{name} AS SELECT range AS id, '{name} review ' || "
                f"range || CASE WHEN range < {marker_rows} THEN ' [[emu:badschema]]' ELSE '' END "
                f"AS text FROM range({rows})")
    con.close()
    folder = tmp_path / name
    folder.mkdir()
    job = write_job(folder, f"name='{name}', provider='openai', model='gpt-4.1-mini', "
                            "unique_key='id', prompt='Label: {{ text }}', max_tokens=50, "
                            "columns={'label': 'varchar'}, max_attempts=2",
                    f"SELECT id, text FROM src_{name}")
    return str(job), db


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)


class _Page(HTMLParser):
    """What a test needs from the page: figures, bars, table cells, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[dict]] = {}
        self.cells: list[str] = []
        self.external: list[str] = []
        self._figure: str | None = None
        self._cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.external.append(a[key])
        if tag == "script":
            self.external.append("<script>")
        if tag == "figure":
            self._figure = a["id"]
            self.figures[self._figure] = []
        if tag == "rect" and self._figure:
            self.figures[self._figure].append(a)
        self._cell = tag == "td"

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        if tag == "td":
            self._cell = False

    def handle_data(self, data):
        if self._cell:
            self.cells.append(data)


def test_report_text_json_and_html_from_two_jobs(tmp_path, fast_emulator):
    env = emulator_env(fast_emulator)
    good, db = _job(tmp_path, "labels", rows=6)
    bad, _ = _job(tmp_path, "tricky", rows=4, marker_rows=1)
    for job in (good, bad):
        done = cli(["run", job, "--db", db, "--wait", "--poll-interval", "0.01", "-q"], env)
        assert done.returncode in (0, 4), done.stderr   # 4: the row that breaks the schema

    out = cli(["report", "--db", db, "--json"], env)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    days = {d["job"]: d for d in r["days"]}
    assert days["labels"]["rows_enriched"] == 6 and days["labels"]["failed"] == 0
    assert days["tricky"]["rows_enriched"] == 3
    assert days["tricky"]["failed"] == 2 and days["tricky"]["requests"] == 5   # 3 + 2 attempts
    assert r["failure_kinds"] == {"invalid_answer": 2}   # the schema check's kind
    con = duckdb.connect(db, read_only=True)
    (cost, saved), = con.execute("SELECT sum(cost_usd), sum(savings_usd) "
                                 "FROM warehouse_batch.costs").fetchall()
    (batches,), = con.execute("SELECT count(*) FROM warehouse_batch.batches "
                              "WHERE ended_at IS NOT NULL").fetchall()
    con.close()
    assert r["totals"]["cost_usd"] == round(cost, 6) and cost > 0
    assert r["totals"]["savings_usd"] == round(saved, 6) and saved == cost   # 50% off
    assert r["totals"]["batches"] == batches
    assert all(d["p50_batch_seconds"] is not None for d in r["days"])

    text = cli(["report", "--db", db], env)
    assert text.returncode == 0 and "labels" in text.stdout and "tricky" in text.stdout
    assert "failures by kind:" in text.stdout

    page_path = tmp_path / "report.html"
    html = cli(["report", "--db", db, "--format", "html", "-o", str(page_path)], env)
    assert html.returncode == 0, html.stderr
    page = _Page()
    page.feed(page_path.read_text())
    assert page.external == []   # opens offline: nothing fetched, nothing run
    assert set(page.figures) == {"daily-cost", "daily-rows", "failure-kinds"}
    (day_bar,) = page.figures["daily-rows"]
    assert float(day_bar["data-value"]) == 9
    assert abs(float(page.figures["daily-cost"][0]["data-value"]) - cost) < 1e-6
    assert {b["data-label"] for b in page.figures["failure-kinds"]} == set(r["failure_kinds"])
    assert "labels" in page.cells and "tricky" in page.cells


def test_report_window_and_missing_state(tmp_path, fast_emulator):
    env = emulator_env(fast_emulator)
    job, db = _job(tmp_path, "labels", rows=3)
    assert cli(["run", job, "--db", db, "--wait", "--poll-interval", "0.01", "-q"], env) \
        .returncode == 0
    con = duckdb.connect(db)
    # the same attempts seen from eight days later: outside a 7-day window, inside 10 days
    later = dt.date.today() + dt.timedelta(days=8)
    assert build_report(con, later - dt.timedelta(days=6), later, "x").days == []
    assert len(build_report(con, later - dt.timedelta(days=9), later, "x").days) == 1
    con.close()
    missing = cli(["report", "--db", str(tmp_path / "nope.duckdb")], env)
    assert missing.returncode == 2 and "nope.duckdb" in missing.stderr
    assert not (tmp_path / "nope.duckdb").exists()


def test_report_and_check_read_a_state_database_of_its_own(tmp_path, fast_emulator):
    from helpers import Job

    state = str(tmp_path / "state.duckdb")
    job = Job(tmp_path, fast_emulator, state_db=state)
    assert job.run().exit_code == 0
    env = emulator_env(fast_emulator)
    out = cli(["report", "--db", job.db, "--state-db", state, "--json"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["rows_enriched"] == 12
    assert cli(["check", "--db", job.db, "--state-db", state], env).returncode == 0
    # the warehouse alone holds no state
    assert cli(["report", "--db", job.db], env).returncode == 2


def test_bar_labels_fit_their_bars_and_days_read_as_month_day():
    """A failure kind is labelled by its name (cut with an ellipsis only where it would run
    past its bar), a day by its month and day; the full label stays in the tooltip."""
    from warehouse_batch.report_html import _bar_chart
    assert ">invalid_answer</text>" in _bar_chart("k", "Failures", [("invalid_answer", 3)], "#000")
    many = _bar_chart("k", "Failures", [(f"kind_number_{i}_long", 1) for i in range(9)], "#000")
    assert "\u2026</text>" in many and 'data-label="kind_number_0_long"' in many
    days = _bar_chart("d", "Rows", [("2026-11-27", 5)], "#000", days=True)
    assert ">11-27</text>" in days
