"""The shipped examples, run as a user would (CLI subprocess, the emulator on loopback),
with only `provider` and `model` switched: one job file serves every provider."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helpers import emulator_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews"
PROVIDERS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5",
             "azure_openai": "gpt-4o-mini-batch", "gemini": "gemini-2.5-flash"}


def run_example(tmp_path: Path, emu, name: str, provider: str) -> str:
    work = tmp_path / provider
    shutil.copytree(EXAMPLES, work)
    job = work / name
    text = job.read_text()
    text = re.sub(r"provider='[^']*'", f"provider='{provider}'", text)
    text = re.sub(r"model='[^']*'", f"model='{PROVIDERS[provider]}'", text)
    job.write_text(text)
    db = str(work / "shop.duckdb")
    env = emulator_env(emu, AZURE_OPENAI_ENDPOINT=emu.azure_endpoint,
                       AZURE_OPENAI_API_KEY="emulator")
    result = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "run", name, "--db", db,
                             "--wait", "--poll-interval", "0.01"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return db


def describe(db: str, table: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]
    finally:
        con.close()


def query(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_sentiment_example_same_shape_on_every_provider(tmp_path, fast_emulator):
    shapes = {}
    for provider in PROVIDERS:
        db = run_example(tmp_path, fast_emulator, "review_sentiment.sql", provider)
        shapes[provider] = describe(db, "review_sentiment")
        assert query(db, "SELECT _status, count(*) FROM review_sentiment GROUP BY 1") == \
            [("succeeded", 120)]
        assert {r[0] for r in query(db, "SELECT DISTINCT response FROM review_sentiment")} \
            == {"positive", "negative", "neutral"}
    assert shapes["openai"] == shapes["anthropic"] == shapes["azure_openai"] == shapes["gemini"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_labels_example_gives_typed_columns(tmp_path, fast_emulator, provider):
    db = run_example(tmp_path, fast_emulator, "review_labels.sql", provider)
    types = dict(describe(db, "review_labels"))
    assert (types["sentiment"], types["confidence"], types["topics"]) == \
        ("VARCHAR", "DOUBLE", "VARCHAR[]")
    grouped = query(db, "SELECT sentiment, avg(confidence), count(*) FROM review_labels "
                        "GROUP BY 1")
    assert sum(g[2] for g in grouped) == 120
    assert {g[0] for g in grouped} <= {"positive", "negative", "neutral"}


def test_embeddings_example_ranks_neighbours(tmp_path, fast_emulator):
    db = run_example(tmp_path, fast_emulator, "review_embeddings.sql", "openai")
    assert dict(describe(db, "review_embeddings"))["embedding"] == "FLOAT[256]"
    ranked = query(db, """SELECT b.review_id, array_cosine_similarity(a.embedding, b.embedding)
                          FROM review_embeddings a JOIN review_embeddings b
                            ON b.review_id <> a.review_id
                          WHERE a.review_id = 2 ORDER BY 2 DESC LIMIT 5""")
    assert len(ranked) == 5 and ranked[0][1] >= ranked[-1][1]


def test_embeddings_example_is_refused_where_there_is_no_embeddings_api(tmp_path, fast_emulator):
    work = tmp_path / "a"
    shutil.copytree(EXAMPLES, work)
    job = work / "review_embeddings.sql"
    job.write_text(job.read_text().replace("provider='openai'", "provider='anthropic'"))
    result = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "plan", job.name],
                            cwd=work, env=emulator_env(fast_emulator), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "no embeddings batch API" in result.stderr
