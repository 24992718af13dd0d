"""Helpers shared by the tests (importable as `helpers`)."""
from __future__ import annotations

import http.server
import textwrap
import threading
from pathlib import Path

import duckdb

from warehouse_batch import api
from warehouse_batch.clock import Backoff

PROMPT = "Classify the sentiment of this review: {{ text }}"



def write_job(dir: Path, config: str, sql: str, name: str = "job.sql") -> Path:
    """Write a job file: `config` is the inside of config(...), `sql` the SELECT."""
    path = dir / name
    path.write_text("{{ config(\n" + textwrap.indent(textwrap.dedent(config).strip(), "    ")
                    + "\n) }}\n" + textwrap.dedent(sql).strip() + "\n")
    return path




class EmulatorClock:
    """A clock whose sleep moves the emulator's manual clock instead of waiting."""

    def __init__(self, emu) -> None:
        self.emu = emu

    def now(self) -> float:
        return self.emu.admin("GET", "/_emulator/clock")["now"]

    def sleep(self, seconds: float) -> None:
        self.emu.advance(seconds)


def emulator_env(emu, **extra: str) -> dict[str, str]:
    """Environment for the SDKs to talk to `emu` (and nothing else)."""
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "WAREHOUSE_BATCH_", "GEMINI_",
                                "GOOGLE_"))}
    env.update(OPENAI_BASE_URL=emu.openai_base_url, OPENAI_API_KEY="sk-emulator",
               ANTHROPIC_BASE_URL=emu.anthropic_base_url, ANTHROPIC_API_KEY="emulator",
               GOOGLE_GEMINI_BASE_URL=emu.url, GEMINI_API_KEY="emulator")
    env.update(extra)
    return env


def provider_calls(emu, method: str | None = None, path_prefix: str = "") -> list[dict]:
    calls = emu.admin("GET", "/_emulator/requests")["data"]
    return [c for c in calls if (method is None or c["method"] == method)
            and c["path"].startswith(path_prefix)]


def billed_counts(emu) -> dict[str, int]:
    """custom_id -> how many times the emulator billed (succeeded) it."""
    counts: dict[str, int] = {}
    for p in emu.admin("GET", "/_emulator/processed")["data"]:
        if p["billed"]:
            counts[p["custom_id"]] = counts.get(p["custom_id"], 0) + 1
    return counts


CREATE_PATHS = ("/v1/batches", "/openai/batches", "/openai/v1/batches", "/v1/messages/batches")
CREATE_VERBS = (":batchGenerateContent", ":asyncBatchEmbedContent")   # models/{m}:verb


def creates(emu) -> list[dict]:
    """Batch-create calls the emulator received, on any protocol."""
    return [c for c in provider_calls(emu, "POST")
            if c["path"].rstrip("/") in CREATE_PATHS or c["path"].endswith(CREATE_VERBS)]


class Job:
    """A job file over table `reviews` in a DuckDB file, run against the emulator.

    Extra keyword arguments are environment variables for the provider (over the emulator's).
    """

    def __init__(self, tmp_path, emu, rows: int = 12, prompt: str = PROMPT, extra: str = "",
                 provider: str = "openai", model: str = "gpt-4.1-mini", max_tokens: int = 5,
                 db: str = "w.duckdb", state_db: str | None = None, **env: str):
        self.tmp, self.emu, self.env = tmp_path, emu, env
        # the state in a file of its own (`Options.state_db`); `sql` attaches it
        self.state_db = str(tmp_path / state_db) if state_db else None
        self.provider_name, self.model = provider, model
        self.db = str(tmp_path / db)
        con = duckdb.connect(self.db)
        con.execute("CREATE TABLE IF NOT EXISTS reviews AS SELECT range + 1 AS id, "
                    "CASE range % 3 WHEN 0 THEN 'I love it, great ' WHEN 1 "
                    "THEN 'broken and terrible ' ELSE 'it is a thing ' END || range AS text "
                    f"FROM range({rows})")
        con.close()
        self.write(prompt, extra, max_tokens)

    def write(self, prompt: str = PROMPT, extra: str = "", max_tokens: int = 5,
              provider: str | None = None, model: str | None = None) -> None:
        """(Re)write the job file; provider and model stay as they were unless given."""
        self.provider_name = provider or self.provider_name
        self.model = model or self.model
        self.path = str(write_job(self.tmp, f"""
            name='enriched', provider={self.provider_name!r}, model={self.model!r},
            unique_key='id', system='Answer with one word.', prompt={prompt!r},
            max_tokens={max_tokens}{extra}""", "SELECT id, text FROM reviews"))

    def options(self, **kw) -> api.Options:
        if self.state_db:
            kw.setdefault("state_db", self.state_db)
        return api.Options(db=self.db, env=emulator_env(self.emu, **self.env),
                           clock=EmulatorClock(self.emu), **kw)

    def run(self, wait: bool = True, **kw) -> api.RunReport:
        return api.run(self.path, self.options(**kw), wait=wait, max_wait=30 * 86400,
                       backoff=Backoff(initial=30, maximum=3600))

    def provider(self):
        from warehouse_batch.paths import make_scope
        from warehouse_batch.providers.base import get_provider
        from warehouse_batch.spec import load_job

        env = emulator_env(self.emu, **self.env)
        return get_provider(load_job(self.path, scope=make_scope(self.path, env)), env)

    def sql(self, query: str, params=None) -> list[tuple]:
        con = duckdb.connect(self.db)
        if self.state_db:
            con.execute(f"ATTACH '{self.state_db}' AS warehouse_batch")
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def batches_created(self) -> int:
        return len(creates(self.emu))


class Trap:
    """A loopback HTTP listener that records every request it receives (and answers 500)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                trap.received.append(f"{self.command} {self.path} {dict(self.headers)} "
                                     f"{body[:200]!r}")
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def checksum(db: str) -> dict[str, str]:
    """A checksum of every table's rows and every view's definition in the file."""
    con = duckdb.connect(db, read_only=True)
    try:
        out = {}
        for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary "
                "ORDER BY ALL").fetchall():
            q = f'"{schema}"."{name}"'
            out[f"table {schema}.{name}"] = con.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::VARCHAR, chr(30) "
                f"ORDER BY t::VARCHAR)), '') FROM {q} t").fetchone()[0]
        for schema, name, sql in con.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                "AND NOT temporary ORDER BY ALL").fetchall():
            out[f"view {schema}.{name}"] = sql
        return out
    finally:
        con.close()
