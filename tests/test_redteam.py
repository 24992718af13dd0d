"""Red-team findings the hostile corpus cannot express (it always starts from a database)."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def test_plan_creates_no_database_file(tmp_path):
    # a mistyped --db must not leave a new, empty database behind: plan writes nothing
    (tmp_path / ".git").mkdir()
    (tmp_path / "data.csv").write_text("id,text\n1,hello\n")
    job = write_job(tmp_path, "name='w.main.out', provider='openai', model='gpt-4.1-mini', "
                    "unique_key='id', prompt='{{ text }}', max_tokens=5",
                    "SELECT id, text FROM read_csv('data.csv')")
    db = tmp_path / "w.duckdb"
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    p = subprocess.run(EXE + ["plan", str(job), "--db", str(db)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "requests to send                 1" in p.stdout
    assert "does not exist" in p.stderr
    assert not db.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == [".git", "data.csv", "job.sql"]


def test_a_dropped_state_table_is_a_user_error_not_a_traceback(tmp_path):
    import duckdb

    from warehouse_batch.db import connect

    (tmp_path / ".git").mkdir()
    db = str(tmp_path / "w.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT 1 AS id, 'x' AS text")
    con.close()
    raw = duckdb.connect(db)
    raw.execute("DROP TABLE warehouse_batch.outputs")
    raw.close()
    job = write_job(tmp_path, "name='out', provider='openai', model='gpt-4.1-mini', "
                    "unique_key='id', prompt='{{ text }}', max_tokens=5",
                    "SELECT id, text FROM reviews")
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    for command in ("plan", "run"):
        p = subprocess.run(EXE + [command, str(job), "--db", db], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr
        assert "warehouse_batch.outputs are missing" in p.stderr
