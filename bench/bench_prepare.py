"""Benchmark: turning N source rows into hashed requests (what plan/submit/collect all do).

Compares, in one run on the same data:
  * sql     the template compiled to DuckDB SQL, hashes in DuckDB (the default path)
  * jinja   the template rendered by Jinja over Arrow batches, hashes in DuckDB
  * python  baseline: a plain Python loop rendering with Jinja and hashing with hashlib
            (what a per-row implementation would do)
and prints wall time, rows/s, peak RSS growth and ratios against the Python baseline.

    .venv/bin/python bench/bench_prepare.py --rows 1000000
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse_batch import identity  # noqa: E402
from warehouse_batch.db import connect  # noqa: E402
from warehouse_batch.plan import build_plan  # noqa: E402
from warehouse_batch.providers.base import get_provider  # noqa: E402
from warehouse_batch.render import compile_template, render_rows  # noqa: E402
from warehouse_batch.source import prepare  # noqa: E402
from warehouse_batch.spec import parse_job  # noqa: E402

JOB = """{{{{ config(name='out', provider='openai', model='gpt-4.1-mini', unique_key='id',
    system='Classify the sentiment of the review.', max_tokens=5, temperature=0,
    prompt={prompt!r}) }}}}
SELECT id, product, review FROM reviews"""
SQL_PROMPT = "Product: {{ product }}\nReview: {{ review }}"
JINJA_PROMPT = "Product: {{ product | trim }}\nReview: {{ review }}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_db(path: str, rows: int) -> None:
    con = duckdb.connect(path)
    con.execute(f"""CREATE TABLE reviews AS SELECT range AS id,
        'product ' || (range % 97) AS product,
        'review text number ' || range || ' ' || repeat('lorem ipsum ', 1 + range % 20) AS review
        FROM range({rows})""")
    con.close()


def run_engine(db: str, prompt: str) -> tuple[float, str, int]:
    """prepare + plan, as every lifecycle command does; DuckDB does the set work."""
    spec = parse_job(JOB.format(prompt=prompt), "bench.sql")
    con = connect(db)   # as every command opens it: sources attached read-only to prepare
    t = time.perf_counter()
    prepared = prepare(con, spec, get_provider(spec, env={"OPENAI_API_KEY": "x"}))
    report = build_plan(con, prepared)
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed, prepared.render_mode, report.requests_to_send


def run_python_baseline(db: str, prompt: str) -> tuple[float, int]:
    """The per-row alternative: fetch rows to Python, render, build bodies, hash."""
    spec = parse_job(JOB.format(prompt=prompt), "bench.sql")
    provider = get_provider(spec, env={"OPENAI_API_KEY": "x"})
    ct = compile_template(spec.prompt, "prompt")
    con = duckdb.connect(db)
    t = time.perf_counter()
    rows = con.sql("SELECT * FROM reviews").to_arrow_table().to_pylist()
    hashes = set()
    for start in range(0, len(rows), 20_000):
        chunk = rows[start:start + 20_000]
        for row, text in zip(chunk, render_rows(ct, chunk, {}, ["id"])):
            body = provider.build_body("Classify the sentiment of the review.", text)
            hashes.add(identity.request_hash("openai", "/v1/chat/completions", body))
            identity.row_key_hash({"id": row["id"]})
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed, len(hashes)


def measure_one(path: str, db: str) -> dict:
    """Run one path in this (fresh) process; report time and peak RSS growth."""
    before = rss_mb()
    if path == "python":
        seconds, n = run_python_baseline(db, SQL_PROMPT)
    else:
        seconds, mode, n = run_engine(db, SQL_PROMPT if path == "sql" else JINJA_PROMPT)
        assert mode == {"sql": "sql", "jinja": "python"}[path], mode
    return {"seconds": seconds, "requests": n, "rss_growth_mb": rss_mb() - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", choices=["python", "sql", "jinja"], help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.db)))
        return
    import subprocess

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        make_db(db, args.rows)
        for label in ("python", "sql", "jinja"):
            out = subprocess.run([sys.executable, __file__, "--one", label, "--db", db],
                                 check=True, capture_output=True, text=True).stdout
            results[label] = json.loads(out)
            assert results[label]["requests"] == args.rows, results[label]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = results["python"]["seconds"]
    print(f"{args.rows:,} rows -> rendered, hashed requests + plan; each path in a fresh process")
    print(f"{'path':<8}{'seconds':>10}{'rows/s':>14}{'x baseline':>12}{'RSS growth MB':>16}")
    for label in ("python", "sql", "jinja"):
        r = results[label]
        print(f"{label:<8}{r['seconds']:>10.2f}{args.rows / r['seconds']:>14,.0f}"
              f"{base / r['seconds']:>12.1f}{r['rss_growth_mb']:>16.0f}")


if __name__ == "__main__":
    main()
