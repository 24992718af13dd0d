"""Load test of the emulator: can it keep up with a 10M-row benchmark?

Starts ``warehouse-batch emulator`` as its own process (manual clock), then, with the official
``openai`` SDK, does what `submit` + `collect` do for N batches of R requests each:

  upload    N input files (R chat-completion lines of ~600 bytes each)
  create    N batches
  advance   the emulated clock past every batch's end
  retrieve  each batch (the first look after its end writes its result file)
  download  each output file
  delete    the input and output files

and prints, per phase, the client's wall time and the emulator's CPU seconds (utime + stime
from /proc/<pid>/stat), then the emulator's peak RSS (VmHWM from /proc/<pid>/status)::

    .venv/bin/python bench/emulator_load.py --batches 20
    .venv/bin/python bench/emulator_load.py --batches 200 --state-dir /tmp/emu-state

Phases run one batch at a time, as the client does; ``--pipelined`` instead runs
upload + create + (after the clock moves) retrieve + download + delete per batch, so the
input files do not pile up (what a streaming client does).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai

WORDS = ("the battery life is great and I love the screen but the delivery was slow and the box "
         "arrived broken so I asked for a refund which took two weeks to arrive overall a decent "
         "product for the price though the manual is terrible and support was helpful").split()


def make_file(rows: int, batch: int) -> bytes:
    """One batch input file: `rows` chat-completion request lines of about 600 bytes."""
    out = []
    for i in range(rows):
        n = batch * rows + i
        h = hashlib.sha256(str(n).encode()).hexdigest()
        review = " ".join(WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(52))[:300]
        out.append(json.dumps({
            "custom_id": f"wb_{h[:48]}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4.1-mini", "max_tokens": 5, "messages": [
                {"role": "system", "content": "Classify the sentiment of the review as positive, "
                                              "negative or neutral. Answer with one word."},
                {"role": "user", "content": f"Review {n}: {review}"}]}}))
    return ("\n".join(out) + "\n").encode()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    """A kB field of /proc/<pid>/status (VmHWM = peak RSS, VmRSS = current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def start_emulator(state_dir: str | None) -> tuple[subprocess.Popen, str]:
    """Start `warehouse-batch emulator` on a free port with a manual clock; return it and its URL."""
    root = str(Path(__file__).resolve().parents[1])  # this checkout's code, not an installed one
    cmd = [sys.executable, "-c", "from warehouse_batch.cli import main; main()", "emulator",
           "--port", "0", "--clock", "manual"]
    if state_dir:
        cmd += ["--state-dir", state_dir]
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=root, env=env)
    line = proc.stderr.readline()
    match = re.search(r"http://[0-9.:]+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line}")
    return proc, match.group(0)


def admin(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


class Meter:
    """Per-phase client wall time and emulator CPU time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rows: list[tuple[str, float, float]] = []

    def phase(self, name: str):
        meter = self

        class _Phase:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), cpu_seconds(meter.pid)

            def __exit__(self, *exc):
                wall = time.perf_counter() - self.t
                cpu = cpu_seconds(meter.pid) - self.c
                meter.rows.append((name, wall, cpu))
        return _Phase()

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.rows.append((name, wall, cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rows", type=int, default=50_000, help="requests per batch")
    ap.add_argument("--state-dir", default=None, help="emulator --state-dir (default: in memory)")
    ap.add_argument("--pipelined", action="store_true",
                    help="per batch: upload, create, advance, retrieve, download, delete")
    ap.add_argument("--distinct", type=int, default=4,
                    help="distinct input files generated (reused round-robin, custom_ids differ)")
    args = ap.parse_args()

    files = [make_file(args.rows, b) for b in range(min(args.distinct, args.batches))]
    print(f"{args.batches} batches x {args.rows} requests, {len(files[0]) / 1e6:.1f} MB per file, "
          f"emulator state: {args.state_dir or 'memory'}", flush=True)
    if args.state_dir:
        shutil.rmtree(args.state_dir, ignore_errors=True)
    proc, url = start_emulator(args.state_dir)
    pid = proc.pid
    client = openai.OpenAI(base_url=url + "/v1", api_key="emulator", max_retries=0, timeout=600)
    meter = Meter(pid)
    try:
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        batch_ids: list[str] = []
        input_ids: list[str] = []
        out_bytes = 0
        if args.pipelined:
            for b in range(args.batches):
                with meter.phase("upload"):
                    f = client.files.create(file=(f"in{b}.jsonl", files[b % len(files)]), purpose="batch")
                with meter.phase("create"):
                    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                                  completion_window="24h")
                admin(url, "/_emulator/clock", {"advance": 120})
                with meter.phase("retrieve"):
                    batch = client.batches.retrieve(batch.id)
                assert batch.status == "completed", batch.status
                with meter.phase("download"):
                    data = client.files.content(batch.output_file_id).content
                out_bytes += len(data)
                with meter.phase("delete"):
                    client.files.delete(f.id)
                    client.files.delete(batch.output_file_id)
        else:
            with meter.phase("upload"):
                for b in range(args.batches):
                    f = client.files.create(file=(f"in{b}.jsonl", files[b % len(files)]), purpose="batch")
                    input_ids.append(f.id)
            with meter.phase("create"):
                for fid in input_ids:
                    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions",
                                                  completion_window="24h")
                    batch_ids.append(batch.id)
            with meter.phase("advance"):
                admin(url, "/_emulator/clock", {"advance": 120})
            outputs: list[str] = []
            with meter.phase("retrieve"):
                for bid in batch_ids:
                    batch = client.batches.retrieve(bid)
                    assert batch.status == "completed", (batch.status, batch.errors)
                    assert batch.request_counts.completed == args.rows
                    outputs.append(batch.output_file_id)
            with meter.phase("download"):
                for oid in outputs:
                    out_bytes += len(client.files.content(oid).content)
            with meter.phase("delete"):
                for fid in input_ids + outputs:
                    client.files.delete(fid)
        total_cpu, total_wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
        rss_now = status_kb(pid, "VmRSS")
        peak = status_kb(pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    summary: dict[str, list[float]] = {}
    for name, wall, cpu in meter.rows:
        acc = summary.setdefault(name, [0.0, 0.0])
        acc[0] += wall
        acc[1] += cpu
    print(f"{'phase':<10} {'client wall s':>14} {'emulator CPU s':>15}")
    for name, (wall, cpu) in summary.items():
        print(f"{name:<10} {wall:>14.1f} {cpu:>15.1f}")
    print(f"{'total':<10} {total_wall:>14.1f} {total_cpu:>15.1f}")
    print(f"emulator CPU per batch: {total_cpu / args.batches:.2f} s; peak RSS {peak / 1024:.0f} MB, "
          f"RSS at the end {rss_now / 1024:.0f} MB; output downloaded {out_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
