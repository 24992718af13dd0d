"""Notifications (issue 11, item 6): `on_complete` / `on_failure` hooks, a shell command or an
http(s) URL, fired once per completion or failure; against a real HTTP server in a thread,
a shell command appending to a file, and the emulator."""
from __future__ import annotations

import http.server
import json
import threading

import duckdb
import pytest

from helpers import Job
from warehouse_batch import api
from warehouse_batch.errors import JobFileError, ProviderError, ConfigurationError

KEY = "sk-proj-NotARealKeyButLongEnough0123456789abcdef"


class Receiver:
    """A loopback HTTP server that records each POST's JSON body and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.hold: threading.Event | None = None   # set: answer only once it is set
        self.got = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                receiver.got.set()
                if receiver.hold is not None:
                    receiver.hold.wait(120)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/secret-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def notifications(job: Job) -> list[tuple]:
    return job.sql("SELECT event, state, attempts, hook, last_error FROM "
                   "warehouse_batch.notifications ORDER BY created_at")


def test_on_complete_url_gets_the_report_once(tmp_path, emulator, receiver):
    job = Job(tmp_path, emulator, rows=6, extra=f", on_complete={receiver.url!r}",
              OPENAI_API_KEY=KEY)
    report = job.run(allowed_hosts=(f"127.0.0.1:{receiver.port}",))
    assert report.exit_code == 0
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["event"] == "complete" and body["job"] == "enriched"
    assert body["rows"] == {"rows": 6, "succeeded": 6, "failed": 0, "pending": 0}
    assert body["exit_code"] == 0 and body["status"] == "succeeded"
    assert body["notification_id"].startswith("wbn_") and len(body["batches"]) == 1
    assert body["finished_at"] and body["cost_usd"] is not None
    assert KEY not in json.dumps(body)
    assert report.notifications[0]["status"] == "sent"
    # the URL's path (a webhook's secret) is not written to the state or the report
    assert "secret-path" not in json.dumps(report.to_dict())
    assert notifications(job) == [("complete", "sent", 1,
                                   f"POST http://127.0.0.1:{receiver.port}/…", None)]
    # nothing new: no second notification, also after another run and a collect
    job.run(allowed_hosts=(f"127.0.0.1:{receiver.port}",))
    api.collect(job.path, job.options(allowed_hosts=(f"127.0.0.1:{receiver.port}",)))
    assert len(receiver.bodies) == 1
    # new work completes again: one more notification, for the new batch only
    con = duckdb.connect(job.db)
    con.execute("INSERT INTO reviews VALUES (100, 'a new review, great')")
    con.close()
    job.run(allowed_hosts=(f"127.0.0.1:{receiver.port}",))
    assert len(receiver.bodies) == 2
    assert receiver.bodies[1]["batches"] != body["batches"]
    assert receiver.bodies[1]["rows"]["rows"] == 7


def test_a_job_files_url_needs_an_allowed_host(tmp_path, emulator, receiver):
    job = Job(tmp_path, emulator, rows=3, extra=f", on_complete={receiver.url!r}")
    with pytest.raises(JobFileError, match=r"on_complete posts the job's report to "
                                           r"127\.0\.0\.1:\d+, a host the operator has not"):
        api.plan(job.path, job.options())
    with pytest.raises(JobFileError):
        job.run()
    assert receiver.bodies == [] and job.batches_created() == 0


def test_a_job_files_shell_command_needs_allow_hooks(tmp_path, emulator):
    out = tmp_path / "done.log"
    job = Job(tmp_path, emulator, rows=3, extra=f", on_complete='cat >> {out}'")
    with pytest.raises(JobFileError, match="shell command in a job file: it would run "
                                           "arbitrary code"):
        job.run()
    assert not out.exists() and job.batches_created() == 0
    report = job.run(allow_hooks=True)
    assert report.exit_code == 0 and report.notifications[0]["status"] == "sent"
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "complete"


def test_the_operators_shell_hook_gets_no_api_key(tmp_path, emulator):
    """The operator's hook ($WAREHOUSE_BATCH_ON_COMPLETE, as the project file sets it) needs
    no allowance; its environment holds no provider key, under any variable name."""
    out, env_out = tmp_path / "done.log", tmp_path / "env.txt"
    job = Job(tmp_path, emulator, rows=3, OPENAI_API_KEY=KEY, SHOP_OPENAI_KEY=KEY,
              MY_SERVICE_API_KEY="x" * 20, PLAIN_SETTING="kept",
              WAREHOUSE_BATCH_ON_COMPLETE=f"cat >> {out}; env > {env_out}")
    assert job.run().exit_code == 0
    assert len(out.read_text().splitlines()) == 1
    env = env_out.read_text()
    assert KEY not in env and "OPENAI_API_KEY" not in env and "SHOP_OPENAI_KEY" not in env
    assert "MY_SERVICE_API_KEY" not in env and "PLAIN_SETTING=kept" in env
    assert "WAREHOUSE_BATCH_EVENT=complete" in env
    assert "WAREHOUSE_BATCH_NOTIFICATION_ID=wbn_" in env


def test_a_failing_hook_keeps_the_results_and_is_retried(tmp_path, emulator, receiver):
    receiver.status = 500
    hosts = (f"127.0.0.1:{receiver.port}",)
    job = Job(tmp_path, emulator, rows=4, extra=f", on_complete={receiver.url!r}")
    report = job.run(allowed_hosts=hosts)
    assert report.exit_code == 0   # the enrichment's own exit code
    assert report.rows.succeeded == 4
    [outcome] = report.notifications
    assert outcome["status"] == "failed" and "HTTP 500" in outcome["error"]
    assert "tried again by the next command" in outcome["warning"]
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(4,)]
    assert notifications(job)[0][:3] == ("complete", "pending", 1)
    receiver.status = 200
    again = api.collect(job.path, job.options(allowed_hosts=hosts))
    assert again.exit_code == 0 and again.notifications[0]["status"] == "sent"
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0]["notification_id"] == receiver.bodies[1]["notification_id"]
    assert notifications(job)[0][:3] == ("complete", "sent", 2)
    api.collect(job.path, job.options(allowed_hosts=hosts))
    assert len(receiver.bodies) == 2


def test_a_completion_with_no_hook_never_fires_later(tmp_path, emulator, receiver):
    job = Job(tmp_path, emulator, rows=3)
    job.run()
    assert notifications(job) == [("complete", "no_hook", 0, None, None)]
    job.write(extra=f", on_complete={receiver.url!r}")
    job.run(allowed_hosts=(f"127.0.0.1:{receiver.port}",))
    assert receiver.bodies == []


def test_on_failure_fires_once_per_incident(tmp_path, emulator, receiver):
    hosts = (f"127.0.0.1:{receiver.port}",)
    job = Job(tmp_path, emulator, rows=3, extra=f", on_failure={receiver.url!r}",
              OPENAI_API_KEY=KEY)
    assert job.run(allowed_hosts=hosts).exit_code == 0
    assert receiver.bodies == []   # a completion is not a failure
    con = duckdb.connect(job.db)
    con.execute("INSERT INTO reviews VALUES (100, 'new'), (101, 'newer')")
    con.close()
    job.env["OPENAI_API_KEY"] = "sk-wrong-" + "x" * 30   # the key was revoked overnight
    for _ in range(2):
        with pytest.raises((ProviderError, ConfigurationError)):
            job.run(allowed_hosts=hosts)
    assert len(receiver.bodies) == 1   # one incident, one notification
    body = receiver.bodies[0]
    assert body["event"] == "failure" and body["exit_code"] == 3 and body["command"] == "run"
    assert body["error"]["message"] and "sk-wrong" not in json.dumps(body)
    job.env["OPENAI_API_KEY"] = KEY
    assert job.run(allowed_hosts=hosts).exit_code == 0   # resolves the incident
    job.env["OPENAI_API_KEY"] = "sk-wrong-" + "y" * 30
    con = duckdb.connect(job.db)
    con.execute("INSERT INTO reviews VALUES (102, 'newest')")
    con.close()
    with pytest.raises((ProviderError, ConfigurationError)):
        job.run(allowed_hosts=hosts)
    assert [b["event"] for b in receiver.bodies] == ["failure", "failure"]


def test_a_first_run_refused_records_and_sends_nothing(tmp_path, emulator, receiver):
    job = Job(tmp_path, emulator, rows=3, extra=f", on_failure={receiver.url!r}")
    con = duckdb.connect(job.db)
    con.execute("INSERT INTO reviews VALUES (1, 'a duplicate key')")
    con.close()
    with pytest.raises(Exception, match="duplicate"):
        job.run(allowed_hosts=(f"127.0.0.1:{receiver.port}",))
    assert receiver.bodies == []
    assert job.sql("SELECT count(*) FROM warehouse_batch.notifications") == [(0,)]
