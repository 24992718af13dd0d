"""`warehouse-batch check` (issue 11, item 5): alerts for stuck batches and error rates, read
from the state, through the real CLI; exit 5 names each alert, 0 when there is none."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import duckdb

from helpers import Job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def check(db: str, *args: str) -> tuple[int, dict]:
    out = subprocess.run(EXE + ["check", "--db", db, "--json", *args], capture_output=True,
                         text=True, timeout=120)
    return out.returncode, json.loads(out.stdout)


def test_a_batch_stuck_in_validating_is_named_and_clears_when_it_moves(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run(wait=False)                         # submitted; the emulator's clock stands still
    (batch_id, status, since), = job.sql("SELECT batch_id, provider_status, status_since "
                                         "FROM warehouse_batch.batches")
    assert status == "validating" and since is not None
    code, report = check(job.db)
    assert code == 0 and report["alerts"] == []
    # the same batch, validating since 45 minutes ago
    job.sql("UPDATE warehouse_batch.batches SET status_since = status_since - "
            "INTERVAL 45 MINUTE")
    code, report = check(job.db)
    assert code == 5
    (alert,) = report["alerts"]
    assert alert["kind"] == "stuck_batch" and alert["batch_id"] == batch_id
    assert alert["job"] == "enriched" and "validating" in alert["message"]
    assert check(job.db, "--stuck-minutes", "60")[0] == 0
    # a poll that sees the batch move on records when
    emulator.advance(10)
    job.run(wait=False)
    (status, moved), = job.sql("SELECT provider_status, status_since FROM "
                               "warehouse_batch.batches")
    assert status != "validating" and moved > since - dt.timedelta(minutes=1)
    assert check(job.db)[0] == 0


def test_an_error_rate_above_the_threshold_is_an_alert(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator)
    job.sql("UPDATE reviews SET text = text || ' [[emu:badschema]]' WHERE id IN (1, 2)")
    job.write(extra=", columns={'sentiment': \"enum('positive','negative','neutral')\"}, "
                    "max_attempts=1", max_tokens=200)
    job.run()
    code, report = check(job.db)
    assert code == 5
    (alert,) = report["alerts"]
    assert alert["kind"] == "error_rate" and alert["value"] == round(2 / 12, 4)
    assert check(job.db, "--max-error-rate", "0.2")[0] == 0


def test_check_text_output_and_a_missing_state(tmp_path):
    missing = subprocess.run(EXE + ["check", "--db", str(tmp_path / "none.duckdb")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "none.duckdb" in missing.stderr
    db = str(tmp_path / "w.duckdb")
    from warehouse_batch.db import connect
    connect(db).close()
    con = duckdb.connect(db)
    con.execute("""INSERT INTO warehouse_batch.batches (batch_id, run_id, job_name, provider,
        endpoint, model, chunk, state, request_count, bytes, created_at) VALUES
        ('b1', 'r', 'nightly', 'openai', '/v1/chat/completions', 'm', 0, 'uploaded', 1, 1,
         now()::TIMESTAMP - INTERVAL 2 HOUR)""")
    con.close()
    out = subprocess.run(EXE + ["check", "--db", db], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 5
    assert "ALERT stuck_batch [nightly]" in out.stdout and "uploaded" in out.stdout


def test_a_notification_pending_too_long_is_an_alert_until_it_is_sent(tmp_path, emulator):
    """A hook that keeps failing leaves its notification pending; polls do not retry it, so
    `check` names it once it has waited longer than the stuck threshold."""
    job = Job(tmp_path, emulator, rows=3, extra=", on_complete='http://127.0.0.1:9/hook'")
    job.run(allowed_hosts=("127.0.0.1:9",))   # nothing listens on port 9: the hook fails
    (nid, attempts), = job.sql("SELECT notification_id, attempts FROM "
                               "warehouse_batch.notifications WHERE state = 'pending'")
    assert attempts == 1
    assert check(job.db)[0] == 0                # pending for moments only
    job.sql("UPDATE warehouse_batch.notifications SET created_at = created_at - "
            "INTERVAL 45 MINUTE")
    code, report = check(job.db)
    assert code == 5
    (alert,) = report["alerts"]
    assert (alert["kind"], alert["job"], alert["batch_id"]) == \
        ("stuck_notification", "enriched", nid)
    assert "complete notification" in alert["message"] and "tried 1 time" in alert["message"]
    assert alert["value"] >= 45
    assert check(job.db, "--stuck-minutes", "60")[0] == 0
    job.sql("UPDATE warehouse_batch.notifications SET state = 'sent'")
    assert check(job.db)[0] == 0
