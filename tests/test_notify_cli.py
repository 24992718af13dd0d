"""Notifications through the CLI, as cron runs it: the project file's hooks, SIGKILL between
"pending" and "sent" (and right after collecting), and two runs at once: each completion
fires once."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb

from helpers import emulator_env, write_job
from test_notify import Receiver

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def project(tmp_path: Path, toml: str, rows: int = 6) -> tuple[str, str]:
    """A project folder: warehouse-batch.toml, a warehouse with `reviews`, one job file."""
    (tmp_path / "warehouse-batch.toml").write_text(toml)
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'review number ' || range AS text "
                f"FROM range({rows})")
    con.close()
    job = write_job(tmp_path, "name='enriched', provider='openai', model='gpt-4.1-mini', "
                              "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20",
                    "SELECT id, text FROM reviews")
    return str(job), db


def notifications(db: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT event, state, attempts FROM warehouse_batch.notifications "
                           "ORDER BY created_at").fetchall()
    finally:
        con.close()


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_the_project_files_hook_runs_in_its_folder_and_once(tmp_path, fast_emulator):
    job, db = project(tmp_path, 'on_complete = "cat >> done.log; echo >> done.log"\n')
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    p = cli(["run", job, "--db", db, "--wait", "--poll-interval", "0.01", "--json"],
            emulator_env(fast_emulator), cwd=sub)
    assert p.returncode == 0, p.stderr
    [sent] = json.loads(p.stdout)["notifications"]
    assert sent["status"] == "sent" and sent["hook"].startswith("command cat >> done.log")
    [body] = lines(tmp_path / "done.log")   # in the project's folder, not the current one
    assert body["event"] == "complete" and body["rows"]["succeeded"] == 6
    assert cli(["run", job, "--db", db], emulator_env(fast_emulator), cwd=sub).returncode == 0
    assert len(lines(tmp_path / "done.log")) == 1


def test_killed_between_pending_and_sent_fires_once_on_the_next_run(tmp_path, fast_emulator):
    job, db = project(tmp_path, 'on_complete = "cat >> done.log; echo >> done.log"\n')
    env = emulator_env(fast_emulator)
    crashed = cli(["run", job, "--db", db], {**env, "WAREHOUSE_BATCH_CRASH_AT": "before_notify"},
                  cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert notifications(db) == [("complete", "pending", 0)]
    assert lines(tmp_path / "done.log") == []
    again = cli(["collect", job, "--db", db], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(lines(tmp_path / "done.log")) == 1
    assert notifications(db) == [("complete", "sent", 1)]
    assert cli(["run", job, "--db", db], env, cwd=tmp_path).returncode == 0
    assert len(lines(tmp_path / "done.log")) == 1


def test_killed_after_collecting_fires_once_on_the_next_run(tmp_path, fast_emulator):
    job, db = project(tmp_path, 'on_complete = "cat >> done.log; echo >> done.log"\n')
    env = emulator_env(fast_emulator)
    crashed = cli(["run", job, "--db", db],
                  {**env, "WAREHOUSE_BATCH_CRASH_AT": "after_collect_commit"}, cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert lines(tmp_path / "done.log") == []
    for _ in range(2):
        p = cli(["run", job, "--db", db], env, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    [body] = lines(tmp_path / "done.log")
    assert body["rows"] == {"rows": 6, "succeeded": 6, "failed": 0, "pending": 0}
    assert notifications(db) == [("complete", "sent", 1)]


def test_killed_after_the_hook_answered_fires_again_with_the_same_id(tmp_path, fast_emulator):
    """The one window where a hook is called twice (documented): the receiver can drop the
    repeat by its notification_id."""
    job, db = project(tmp_path, 'on_complete = "cat >> done.log; echo >> done.log"\n')
    env = emulator_env(fast_emulator)
    crashed = cli(["run", job, "--db", db], {**env, "WAREHOUSE_BATCH_CRASH_AT": "after_notify"},
                  cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    assert cli(["collect", job, "--db", db], env, cwd=tmp_path).returncode == 0
    first, second = lines(tmp_path / "done.log")
    assert first["notification_id"] == second["notification_id"]
    assert notifications(db) == [("complete", "sent", 1)]


def test_two_runs_at_once_fire_once(tmp_path, fast_emulator):
    receiver = Receiver()
    receiver.hold = threading.Event()   # the first POST is answered only when released
    try:
        job, db = project(tmp_path, f'on_complete = "{receiver.url}"\n', rows=20)
        env = emulator_env(fast_emulator)
        args = EXE + ["run", job, "--db", db, "--wait", "--poll-interval", "0.01",
                      "--lock-timeout", "120", "--json"]
        procs = [subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        one_done = threading.Event()
        outputs: dict[int, tuple[str, str]] = {}

        def wait(i: int) -> None:
            outputs[i] = procs[i].communicate(timeout=300)
            one_done.set()
        threads = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        assert receiver.got.wait(300), "no run called the hook"
        # one run is inside the hook; the other finishes meanwhile without calling it
        assert one_done.wait(300)
        receiver.hold.set()
        for t in threads:
            t.join(300)
        for i, p in enumerate(procs):
            assert p.returncode == 0, outputs[i][1]
        assert len(receiver.bodies) == 1
        sent = [n for i in range(2) for n in json.loads(outputs[i][0])["notifications"]]
        assert [n["status"] for n in sent] == ["sent"]
        assert notifications(db) == [("complete", "sent", 1)]
    finally:
        receiver.close()


def test_the_project_file_checks_its_hook_keys(tmp_path, fast_emulator):
    env = emulator_env(fast_emulator)
    job, db = project(tmp_path, "on_complete = 3\n")
    p = cli(["plan", job, "--db", db], env, cwd=tmp_path)
    assert p.returncode == 2 and "warehouse-batch.toml:1:1: on_complete must be a shell " \
                                 "command or an http(s) URL" in p.stderr
    (tmp_path / "warehouse-batch.toml").write_text('allow_hooks = "yes"\n')
    p = cli(["plan", job, "--db", db], env, cwd=tmp_path)
    assert p.returncode == 2 and "allow_hooks must be true or false" in p.stderr


def test_a_job_files_shell_hook_is_allowed_by_the_operator_only(tmp_path, fast_emulator):
    env = emulator_env(fast_emulator)
    job, db = project(tmp_path, "")
    write_job(tmp_path, "name='enriched', provider='openai', model='gpt-4.1-mini', "
                        "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20, "
                        "on_complete='cat >> done.log'", "SELECT id, text FROM reviews")
    refused = cli(["run", job, "--db", db], env, cwd=tmp_path)
    assert refused.returncode == 2
    assert "job.sql:2:139: on_complete is a shell command" in refused.stderr and "--allow-hooks" in refused.stderr
    assert fast_emulator.admin("GET", "/_emulator/requests")["data"] == []
    assert cli(["plan", job, "--db", db, "--allow-hooks"], env, cwd=tmp_path).returncode == 0
    ok = cli(["run", job, "--db", db, "--allow-hooks", "--wait", "--poll-interval", "0.01"],
             env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert len((tmp_path / "done.log").read_text().strip().splitlines()) == 1
    (tmp_path / "warehouse-batch.toml").write_text("allow_hooks = true\n")
    assert cli(["plan", job, "--db", db], env, cwd=tmp_path).returncode == 0
