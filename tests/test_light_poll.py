"""Cheap polling (README: Polling): while every batch runs, `status`, `collect` and `run`
ask with one plain GET per batch, in a process that imports neither the provider's SDK nor
the job parser and the pipeline; anything else goes through the library and the SDK."""
from __future__ import annotations

import http.client
import http.server
import json
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest

from helpers import EmulatorClock, Job, emulator_env, provider_calls, write_job
from warehouse_batch import api
from warehouse_batch.lightpoll import read_state
from warehouse_batch.providers.base import LightPoll, sdk_url

HEAVY = ("openai", "anthropic", "sqlglot", "jinja2", "warehouse_batch.api",
         "warehouse_batch.spec", "warehouse_batch.source", "warehouse_batch.collect")
# The CLI, reporting on stderr which of HEAVY it had imported when it exited.
TRACED = ("import atexit, sys\n"
          f"HEAVY = {HEAVY!r}\n"
          "atexit.register(lambda: print('IMPORTED=' + ','.join(m for m in HEAVY "
          "if m in sys.modules), file=sys.stderr))\n"
          "from warehouse_batch.cli import main\n"
          "main()\n")

PROVIDERS = [("openai", "gpt-4.1-mini", "/v1/batches/"),
             ("anthropic", "claude-haiku-4-5", "/v1/messages/batches/"),
             ("azure_openai", "gpt-4.1-mini-batch", "/openai/batches/")]


def _job(tmp_path, emulator, provider: str = "openai", model: str = "gpt-4.1-mini", **kw):
    env = {}
    if provider == "azure_openai":
        env = dict(AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="az-key")
    return Job(tmp_path, emulator, provider=provider, model=model, **env, **kw)


def _cli(job: Job, *args: str, env: dict | None = None) -> tuple[int, str, str, set[str]]:
    """Run the CLI on `job`: exit code, stdout, stderr, and the HEAVY modules it imported."""
    env = env or emulator_env(job.emu, **job.env)
    p = subprocess.run([sys.executable, "-c", TRACED, *args, job.path, "--db", job.db],
                       env=env, capture_output=True, text=True, timeout=120)
    line = [x for x in p.stderr.splitlines() if x.startswith("IMPORTED=")][-1]
    imported = set(filter(None, line.removeprefix("IMPORTED=").split(",")))
    return p.returncode, p.stdout, p.stderr, imported


def _batch_gets(emulator, prefix: str) -> list[dict]:
    return [c for c in provider_calls(emulator, "GET", prefix)
            if c["path"].count("/") == prefix.count("/")]   # the batch itself, not /results


@pytest.mark.parametrize("provider,model,prefix", PROVIDERS)
def test_a_poll_with_nothing_ended_imports_no_sdk_and_no_pipeline(tmp_path, emulator,
                                                                   provider, model, prefix):
    job = _job(tmp_path, emulator, provider, model)
    api.submit(job.path, job.options(batch_max_requests=5))   # 3 batches
    runs = job.sql("SELECT count(*) FROM warehouse_batch.runs")
    for command in ("status", "collect", "run"):
        before = len(_batch_gets(emulator, prefix))
        code, out, err, imported = _cli(job, command, "--json")
        assert code == 75, err
        assert imported == set(), (command, imported)
        assert len(_batch_gets(emulator, prefix)) == before + 3   # one GET per batch
        report = json.loads(out)
        assert report["rows"] == {"rows": 12, "succeeded": 0, "failed": 0, "pending": 12}
        if command == "status":
            assert [b["state"] for b in report["batches"]] == ["submitted"] * 3
        else:
            assert report["collected"]["batches_in_progress"] == 3 and report["polls"] == 1
    assert job.sql("SELECT count(*) FROM warehouse_batch.runs") == runs   # no runs row
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches WHERE last_polled_at "
                   "IS NOT NULL AND provider_status IS NOT NULL") == [(3,)]
    if provider == "azure_openai":
        assert {c["query"].get("api-version") for c in _batch_gets(emulator, prefix)} \
            == {"2024-10-21"}


def _untimed(report: dict) -> dict:
    """A report without its timing (when and how long: different for every command)."""
    timing = {k: report.pop(k) for k in ("started_at", "finished_at", "elapsed_seconds")}
    assert all(v is not None for v in timing.values()), timing
    return report


def test_the_cheap_poll_reports_what_the_library_reports(tmp_path, emulator):
    """Field by field: `--json` of the cheap path equals the library's report."""
    job = _job(tmp_path, emulator)
    api.submit(job.path, job.options(batch_max_requests=5))
    code, out, _, imported = _cli(job, "status", "--json")
    assert code == 75 and imported == set()
    assert _untimed(json.loads(out)) == _untimed(json.loads(json.dumps(
        api.status(job.path, job.options()).to_dict(), default=str)))
    for command in ("collect", "run"):
        code, out, _, imported = _cli(job, command, "--json")
        assert code == 75 and imported == set()
        light = json.loads(out)
        library = json.loads(json.dumps(getattr(api, command)(job.path, job.options())
                                         .to_dict(), default=str))
        assert light.pop("run_id") != library.pop("run_id")
        assert _untimed(light) == _untimed(library)
    code, out, err, _ = _cli(job, "status")
    assert code == 75 and "12 rows, 0 succeeded, 0 failed, 12 pending" in out


@pytest.mark.parametrize("provider,model,prefix", PROVIDERS)
def test_an_ended_batch_is_collected_through_the_sdk(tmp_path, emulator, provider, model,
                                                      prefix):
    job = _job(tmp_path, emulator, provider, model)
    api.submit(job.path, job.options())
    EmulatorClock(emulator).sleep(3600)
    code, out, err, imported = _cli(job, "collect", "--json")
    assert code == 0, err
    assert {"openai" if provider != "anthropic" else "anthropic",
            "warehouse_batch.api"} <= imported
    assert json.loads(out)["rows"]["succeeded"] == 12
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(12,)]


FAULTS = {
    "a 500": {"status": 500},
    "a 200 that is not JSON": {"status": 200, "body": "<html>maintenance</html>"},
    "a 200 of another shape": {"status": 200, "body": '{"id": "x", "status": "in_progress"}'},
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("command", ["status", "collect", "run"])
def test_a_failed_plain_get_falls_back_to_the_sdk(tmp_path, emulator, fault, command):
    job = _job(tmp_path, emulator)
    api.submit(job.path, job.options())
    # the CLI's plain GET (pollpath) fails, then the library's (lightpoll): the SDK answers
    emulator.admin("POST", "/_emulator/faults",
                   {"method": "GET", "path": "/v1/batches/*", "count": 2, **FAULTS[fault]})
    code, out, err, imported = _cli(job, command, "--json")
    assert code == 75, err
    assert {"openai", "warehouse_batch.api"} <= imported
    assert emulator.admin("GET", "/_emulator/faults")["data"] == []
    assert json.loads(out)["rows"]["pending"] == 12
    assert "error" not in err and "stopped" not in err


def test_the_anthropic_poll_with_a_failed_plain_get(tmp_path, emulator):
    job = _job(tmp_path, emulator, "anthropic", "claude-haiku-4-5")
    api.submit(job.path, job.options())
    emulator.admin("POST", "/_emulator/faults", {"method": "GET", "count": 2, "status": 529,
                                                 "path": "/v1/messages/batches/*"})
    code, out, err, imported = _cli(job, "status", "--json")
    assert code == 75 and "anthropic" in imported, err
    assert [b["provider_status"] for b in json.loads(out)["batches"]] == ["in_progress"]


def test_a_changed_job_or_template_file_is_read_in_full(tmp_path, emulator):
    """The facts a poll uses stand only while everything they came from is unchanged."""
    job = _job(tmp_path, emulator)
    (tmp_path / "prompt.j2").write_text("Sentiment: {{ text }}")
    job.path = str(write_job(tmp_path, """
        name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id',
        prompt_file='prompt.j2', max_tokens=5""", "SELECT id, text FROM reviews"))
    api.submit(job.path, job.options())
    assert _cli(job, "run")[3] == set()
    (tmp_path / "prompt.j2").write_text("Mood: {{ text }}")
    code, out, err, imported = _cli(job, "run", "--json")
    assert code == 75 and "warehouse_batch.api" in imported
    assert json.loads(out)["submitted"]["requests_submitted"] == 12   # the new prompt
    assert _cli(job, "run")[3] == set()
    code, _, _, imported = _cli(job, "run", "--var", "x=1")   # an unused var is refused
    assert code == 2 and "warehouse_batch.api" in imported


def test_a_changed_env_var_value_is_read_in_full(tmp_path, emulator):
    """A job whose SELECT reads `env_var('TONE')`: the same file with another value of the
    variable is another job, so the poll's facts do not stand and `run` sends the changed
    rows (the digest covers the values of the variables the job read, never stores them)."""
    job = _job(tmp_path, emulator)
    job.path = str(write_job(tmp_path, """
        name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id',
        prompt='{{ text }}', max_tokens=5""",
        "SELECT id, text || ' ' || {{ env_var('TONE') }} AS text FROM reviews"))
    env = emulator_env(emulator, TONE="calm")
    assert _cli(job, "run", env=env)[0] == 75       # submitted, in flight
    assert _cli(job, "run", env=env)[3] == set()    # the cheap poll: nothing changed
    code, out, _, imported = _cli(job, "run", "--json", env={**env, "TONE": "angry"})
    assert code == 75 and "warehouse_batch.api" in imported
    assert json.loads(out)["submitted"]["requests_submitted"] == 12


def test_a_changed_output_schema_file_is_read_in_full(tmp_path, emulator):
    """The schema file a job names is among what its facts stand on."""
    job = _job(tmp_path, emulator)
    schema = {"type": "object", "properties": {"mood": {"type": "string"}},
              "required": ["mood"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    job.path = str(write_job(tmp_path, """
        name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id',
        prompt='{{ text }}', output_schema='schema.json', max_tokens=50""",
                             "SELECT id, text FROM reviews"))
    api.submit(job.path, job.options())
    assert _cli(job, "status")[3] == set()
    schema["properties"]["mood"]["description"] = "one word"
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    _, _, _, imported = _cli(job, "status")
    assert "warehouse_batch.api" in imported


def test_a_poll_with_failed_rows_is_counted_by_the_library(tmp_path, emulator):
    """Whether a failed row is final depends on the attempt budget: the library counts."""
    job = _job(tmp_path, emulator)
    job.run()
    job.write(prompt="Other: {{ text }}")
    api.submit(job.path, job.options())
    job.sql("UPDATE enriched SET _status = 'failed' WHERE id = 1")
    _, _, _, imported = _cli(job, "status")
    assert "warehouse_batch.api" in imported


class RecordingProxy:
    """An HTTP forward proxy that records each GET's URL and headers (and calls `on_get`
    before forwarding it)."""

    def __init__(self, on_get=None) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if on_get is not None:
                    on_get()
                url = urlsplit(self.path)
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                conn.request("GET", url.path + (f"?{url.query}" if url.query else ""),
                             headers={k: v for k, v in self.headers.items()
                                      if k.lower() not in ("proxy-connection", "connection")})
                answer = conn.getresponse()
                body = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("content-type") or "")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("provider,model,prefix", PROVIDERS)
def test_the_plain_get_sends_the_sdk_headers_through_the_proxy(tmp_path, emulator, provider,
                                                               model, prefix):
    extra = ", anthropic_version='2023-06-01'" if provider == "anthropic" else ""
    job = _job(tmp_path, emulator, provider, model, extra=extra)
    api.submit(job.path, job.options())
    proxy = RecordingProxy()
    try:
        env = emulator_env(emulator, **job.env, http_proxy=proxy.url, no_proxy="",
                           NO_PROXY="", OPENAI_ORG_ID="org-1", OPENAI_PROJECT_ID="proj-1")
        code, _, err, imported = _cli(job, "status", env=env)
    finally:
        proxy.close()
    assert code == 75 and imported == set(), err
    ((url, headers),) = proxy.seen
    assert urlsplit(url).path.startswith(prefix)
    if provider == "openai":
        assert headers["authorization"] == "Bearer sk-emulator"
        assert (headers["openai-organization"], headers["openai-project"]) == ("org-1", "proj-1")
    elif provider == "azure_openai":
        assert headers["api-key"] == "az-key" and "authorization" not in headers
        assert "api-version=2024-10-21" in url
    else:
        assert headers["authorization"] == "Bearer emulator"
        assert headers["anthropic-version"] == "2023-06-01"


def test_the_poll_holds_no_lock_while_it_asks_the_provider(tmp_path, emulator):
    """The ledger is read, the file let go, the provider asked, and only then is the file
    opened read-write to record the polls: while each GET is in flight another process can
    open the file read-write (here, the test process writes to it)."""
    job = _job(tmp_path, emulator)
    api.submit(job.path, job.options(batch_max_requests=5))   # 3 batches
    job.sql("CREATE TABLE side (n INTEGER)")

    def write_meanwhile() -> None:
        job.sql("INSERT INTO side VALUES (1)")   # fails if the poll holds the file

    proxy = RecordingProxy(write_meanwhile)
    try:
        env = emulator_env(emulator, http_proxy=proxy.url, no_proxy="", NO_PROXY="")
        code, _, err, imported = _cli(job, "status", env=env)
    finally:
        proxy.close()
    assert code == 75 and imported == set(), err
    assert len(proxy.seen) == 3 and job.sql("SELECT count(*) FROM side") == [(3,)]
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                   "WHERE last_polled_at IS NOT NULL") == [(3,)]


def test_the_anthropic_version_is_the_sdks():
    anthropic_constants = pytest.importorskip("anthropic._constants")
    from warehouse_batch.providers.anthropic import SDK_VERSION

    assert SDK_VERSION == anthropic_constants.ANTHROPIC_API_VERSION


ROUTE = LightPoll(url="http://x/v1/batches/b1", headers={}, status_field="status",
                  in_progress=frozenset({"in_progress"}))


@pytest.mark.parametrize("answer", [
    [], {"id": "b2", "status": "in_progress"}, {"id": "b1", "status": "completed"},
    {"id": "b1", "status": "new_state"}, {"id": "b1"},
    {"id": "b1", "status": "in_progress", "request_counts": {"total": "3"}},
    {"id": "b1", "status": "in_progress", "request_counts": [1]},
    {"id": "b1", "status": "in_progress", "output_file_id": 5}])
def test_only_a_plain_in_progress_answer_is_taken(answer):
    assert read_state(ROUTE, answer, "b1") is None


def test_an_in_progress_answer_is_read():
    remote = read_state(ROUTE, {"id": "b1", "status": "in_progress", "output_file_id": "",
                                "request_counts": {"total": 3, "completed": 1}}, "b1")
    assert (remote.status, remote.ended, remote.counts, remote.output_file_id) == \
        ("in_progress", False, {"total": 3, "completed": 1}, None)


def test_urls_are_joined_as_the_sdks_join_them():
    assert sdk_url("http://h/v1", "batches/b") == "http://h/v1/batches/b"
    assert sdk_url("http://h/v1/", "/batches/b") == "http://h/v1/batches/b"
    assert sdk_url("http://h/v1?x=1", "batches/b") is None


def test_the_cheap_poll_reads_no_source(tmp_path, emulator):
    """The source is gone once the batch is submitted: the polls do not notice."""
    job = _job(tmp_path, emulator)
    api.submit(job.path, job.options())
    job.sql("DROP TABLE reviews")
    for command in ("status", "collect", "run"):
        code, _, err, imported = _cli(job, command)
        assert code == 75 and imported == set(), (command, err)


@pytest.mark.parametrize("provider,model,prefix", PROVIDERS)
def test_the_library_polls_without_the_sdk_too(tmp_path, emulator, provider, model, prefix):
    """`api.status` / `api.collect` / `api.run` (what Dagster or Airflow call) ask with the
    plain GET while batches run: a fresh process never imports the SDK."""
    job = _job(tmp_path, emulator, provider, model)
    api.submit(job.path, job.options())
    script = ("import sys\n"
              "from warehouse_batch import api\n"
              f"o = api.Options(db={job.db!r})\n"
              f"codes = [api.status({job.path!r}, o).exit_code,\n"
              f"         api.collect({job.path!r}, o).exit_code,\n"
              f"         api.run({job.path!r}, o).exit_code]\n"
              "print(codes, 'openai' in sys.modules, 'anthropic' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=emulator_env(emulator, **job.env), timeout=120)
    assert p.stdout.split("\n")[0] == "[75, 75, 75] False False", p.stderr
