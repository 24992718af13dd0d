"""Benchmark: ingesting a provider's result file (what `collect` does per ended batch).

Compares, in one run on the same generated OpenAI output file:
  * sql     warehouse-batch's path: lines loaded by DuckDB, classified by the provider's
            results SQL, joined to the ledger and merged into attempts/results, set-based
  * python  baseline: json.loads per line and classification in Python, then one bulk
            Arrow insert of the same answer columns (the usual way a client library would
            do it; it keeps no attempts history and does no upsert, so it does less)
Each path runs in a fresh process; prints seconds, lines/s, the ratio and peak RSS growth.

    .venv/bin/python bench/bench_collect.py --lines 1000000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse_batch.collect import CollectReport, ingest  # noqa: E402
from warehouse_batch.providers.base import LedgerBatch, RemoteBatch  # noqa: E402
from warehouse_batch.state import ensure_schema, now_utc  # noqa: E402

BATCH = "wbb_bench_0000"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(dir: Path, lines: int) -> tuple[str, str]:
    """A DuckDB file whose ledger holds one batch of `lines` requests, and its output file."""
    db, out = str(dir / "bench.duckdb"), str(dir / "output.jsonl")
    con = duckdb.connect(db)
    ensure_schema(con)
    con.execute(f"""CREATE TEMP TABLE ids AS SELECT sha256(range::VARCHAR) AS h,
                    'wb_' || substr(sha256(range::VARCHAR), 1, 48) AS cid, range AS i
                    FROM range({lines})""")
    con.execute("INSERT INTO warehouse_batch.batch_requests SELECT ?, h, cid FROM ids", [BATCH])
    con.execute("""INSERT INTO warehouse_batch.batches (batch_id, run_id, job_name, provider,
        endpoint, model, chunk, state, request_count, bytes, created_at)
        VALUES (?, 'r', 'bench', 'openai', '/v1/chat/completions', 'm', 0, 'submitted', ?, 0,
        ?)""", [BATCH, lines, now_utc()])
    # every 20th line is a per-request 500 (error-file shape), the rest succeed
    con.execute(f"""COPY (SELECT CASE WHEN i % 20 = 0 THEN json_object('id', 'batch_req_' || i,
            'custom_id', cid, 'response', json_object('status_code', 500, 'request_id', 'r',
            'body', json_object('error', json_object('message', 'server error', 'type',
            'server_error', 'param', NULL, 'code', NULL))), 'error', NULL)
        ELSE json_object('id', 'batch_req_' || i, 'custom_id', cid, 'response',
            json_object('status_code', 200, 'request_id', 'r', 'body', json_object(
                'id', 'chatcmpl-' || i, 'object', 'chat.completion', 'model', 'm',
                'choices', [json_object('index', 0, 'message', json_object('role',
                    'assistant', 'content', 'answer number ' || i), 'finish_reason', 'stop')],
                'usage', json_object('prompt_tokens', 20, 'completion_tokens', 3,
                                     'total_tokens', 23))), 'error', NULL) END
        FROM ids ORDER BY h) TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '',
        DELIMITER '\x1f')""")
    con.close()
    return db, out


def run_sql(db: str, out: str) -> tuple[float, int]:
    con = duckdb.connect(db)
    spec = SimpleNamespace(output_schema=None, endpoint="chat", generation={},
                           allow_truncated=False)
    provider = SimpleNamespace(spec=spec, results_sql="openai_results.sql",
                               download_results=lambda b, r, d: [Path(out)],
                               cleanup=lambda b, r: None)
    batch = LedgerBatch(BATCH, "r", "bench", "/v1/chat/completions", "m", 0, "submitted", 0, 0,
                        now_utc())
    t = time.perf_counter()
    ingest(con, provider, batch, RemoteBatch("batch_x", "completed", True), CollectReport())
    elapsed = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM warehouse_batch.results").fetchone()[0]
    con.close()
    return elapsed, n


def run_python(db: str, out: str) -> tuple[float, int]:
    import pyarrow as pa

    con = duckdb.connect(db)
    t = time.perf_counter()
    members = dict(con.execute("SELECT custom_id, request_hash FROM "
                               "warehouse_batch.batch_requests").fetchall())
    cols: dict[str, list] = {k: [] for k in ("request_hash", "custom_id", "status", "text",
                                             "body", "error", "input_tokens",
                                             "output_tokens")}
    with open(out, encoding="utf-8") as f:
        for line in f:
            j = json.loads(line)
            resp = j.get("response") or {}
            ok = 200 <= (resp.get("status_code") or 0) < 300
            body = resp.get("body") or {}
            cols["request_hash"].append(members[j["custom_id"]])
            cols["custom_id"].append(j["custom_id"])
            cols["status"].append("succeeded" if ok else "failed")
            cols["text"].append(body["choices"][0]["message"]["content"] if ok else None)
            cols["body"].append(json.dumps(body) if ok else None)
            cols["error"].append(None if ok else body.get("error", {}).get("message"))
            usage = body.get("usage") or {}
            cols["input_tokens"].append(usage.get("prompt_tokens"))
            cols["output_tokens"].append(usage.get("completion_tokens"))
    table = pa.table(cols)
    con.register("parsed", table)
    con.execute("CREATE TABLE py_results AS SELECT * FROM parsed")
    elapsed = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM py_results").fetchone()[0]
    con.close()
    return elapsed, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--one", choices=["sql", "python"], help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        before = rss_mb()
        seconds, n = (run_sql if args.one == "sql" else run_python)(args.db, args.out)
        print(json.dumps({"seconds": seconds, "rows": n, "rss_growth_mb": rss_mb() - before}))
        return
    results = {}
    for label in ("python", "sql"):
        with tempfile.TemporaryDirectory() as tmp:   # fresh state for each path
            db, out = make_inputs(Path(tmp), args.lines)
            res = subprocess.run([sys.executable, __file__, "--one", label, "--db", db,
                                  "--out", out], check=True, capture_output=True, text=True)
            results[label] = json.loads(res.stdout)
            assert results[label]["rows"] == args.lines, results[label]
    base = results["python"]["seconds"]
    print(f"{args.lines:,} result lines -> classified rows in DuckDB; each path in a fresh "
          "process")
    print(f"{'path':<8}{'seconds':>10}{'lines/s':>14}{'x baseline':>12}{'RSS growth MB':>16}")
    for label in ("python", "sql"):
        r = results[label]
        print(f"{label:<8}{r['seconds']:>10.2f}{args.lines / r['seconds']:>14,.0f}"
              f"{base / r['seconds']:>12.1f}{r['rss_growth_mb']:>16.0f}")


if __name__ == "__main__":
    main()
