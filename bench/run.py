"""The scale benchmark (issue 9): every path of a nightly job, as whole processes, in one run.

    .venv/bin/python bench/run.py --rows 1000000          # the issue's scenario
    .venv/bin/python bench/run.py --rows 20000            # a quick smoke run
    .venv/bin/python bench/run.py --rows 10000000 --no-floors

It generates `reviews(id, product, stars, review)` (reviews of ~300 characters) and a job
file whose prompt template compiles to SQL, measures the floors (DuckDB COPY of the source
rows to JSONL, DuckDB read_json of as many OpenAI result lines, the seeds' per-row Python
loop), then runs the real CLI against the emulator (a separate process, manual clock):
plan, submit, [clock moved: every batch ends], collect, run with nothing changed,
[1% of the rows changed], run (submits them), status and collect while that batch runs.
Each command's CPU seconds (user + sys) and peak RSS come from the OS (`os.wait4`).

It prints the issue's target table (ratios against the floors of the same run) and writes
it as markdown to --out. The exit code is 0 even when a target is missed (this is a
measurement); 1 when a command itself fails (its stderr is printed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import warehouse_batch
from measure import Emulator, Measured, machine, measure
from report import Row, markdown, rows_for, text_table, together

HERE = Path(__file__).resolve().parent
TASKS = str(HERE / "tasks.py")
CHANGED_PERCENT = 1   # the 1% of the "run after 1% of rows changed"
# exit codes of the CLI that mean "worked": 0 done, 75 work still pending
OK_CODES = {"plan": {0}, "submit": {0, 75}, "collect": {0, 75}, "run": {0, 75},
            "status": {0, 75}}


class CommandFailed(Exception):
    """A measured command or a setup step exited with an unexpected code."""

    def __init__(self, m: Measured) -> None:
        how = (f"was killed after {m.wall:.0f} s (--timeout)" if m.extra.get("timed_out")
               else f"exited with {m.returncode}")
        super().__init__(f"{m.name} {how}: {' '.join(m.argv)}")
        self.measured = m


class Bench:
    """One benchmark run in one work directory."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.wd = args, workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db, self.job = workdir / "bench.duckdb", workdir / "reviews.sql"
        self.cli = args.cli.split() if args.cli else [_default_cli()]
        self.results: dict[str, Measured] = {}
        self.facts: dict[str, object] = {"rows": args.rows, "template": args.template}
        self.emu: Emulator | None = None

    def say(self, message: str) -> None:
        """Progress on stderr (the table goes to stdout)."""
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

    def task(self, name: str, step: str, *argv: object, measured: bool = False,
             repeats: int = 1, output: Path | None = None) -> dict:
        """Run one step of bench/tasks.py; keep its measurement (as `name`) for a floor.

        With `repeats`, the step runs that many times (`output` removed before each) and the
        run with the least CPU counts: a floor is the denominator of a ratio, and on a busy
        machine one noisy measurement would move every ratio taken against it.
        """
        best: Measured | None = None
        for _ in range(repeats):
            if output is not None:
                output.unlink(missing_ok=True)
            m = measure(name, [sys.executable, TASKS, step, *(str(a) for a in argv)],
                        logdir=self.logs)
            if m.returncode != 0:
                raise CommandFailed(m)
            if measured:
                self.say(f"{name}: {m.cpu:.2f} CPU s, {m.wall:.2f} s, {m.rss_mib:.0f} MiB")
            if best is None or m.cpu < best.cpu:
                best = m
        assert best is not None
        if measured:
            self.results[name] = best
        return json.loads(best.stdout)

    def command(self, name: str, verb: str, *extra: str) -> Measured:
        """Run one CLI command against the emulator, measured; record the emulator's CPU too."""
        assert self.emu is not None
        argv = [*self.cli, verb, str(self.job), "--db", str(self.db), *extra]
        before = self.emu.cpu()
        m = measure(name, argv, env=self.emu.env(dict(os.environ)), cwd=str(self.wd),
                    logdir=self.logs, timeout=self.args.timeout)
        m.extra["emulator_cpu"] = self.emu.cpu() - before
        if m.returncode not in OK_CODES[verb]:
            raise CommandFailed(m)
        self.results[name] = m
        self.say(f"{name}: {m.cpu:.2f} CPU s, {m.wall:.2f} s, {m.rss_mib:.0f} MiB "
                 f"(exit {m.returncode}; emulator {m.extra['emulator_cpu']:.2f} CPU s)")
        return m

    def run(self) -> None:
        """Every step, in order."""
        rows = self.args.rows
        self.say(f"generating {rows:,} rows in {self.wd}")
        self.facts["source"] = self.task("generate", "generate", self.db, rows, self.job,
                                           self.args.template)
        if not self.args.no_floors:
            self.floors(rows)
        self.precompile()
        self.startup()
        self.emu = Emulator(self.cli, self.wd / "emulator", self.logs)
        try:
            self.paths()
            self.facts["emulator_peak_rss_mib"] = round(self.emu.peak_rss_mib(), 1)
        finally:
            self.emu.stop()
        self.disk()

    def precompile(self) -> None:
        """Write the package's bytecode before any command is measured, as an install does.

        Without it every measured command would compile the package from source when the
        environment says not to keep bytecode (`PYTHONDONTWRITEBYTECODE`, set on some CI and
        development machines): ~0.1 CPU s per command, which no installed copy pays."""
        package = Path(warehouse_batch.__file__).parent
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True,
                       env=env, stdout=subprocess.DEVNULL)

    def floors(self, rows: int) -> None:
        """The references every ratio is taken against, measured as whole processes."""
        results = self.wd / "results.jsonl"
        self.facts["result_file"] = self.task("results", "results", results, rows)
        repeats = self.args.floor_repeats
        copy, table = self.wd / "copy.jsonl", self.wd / "read_json.duckdb"
        self.facts["copy"] = self.task("floor: COPY to JSONL", "copy", self.db, copy,
                                       measured=True, repeats=repeats, output=copy)
        self.facts["read_json"] = self.task("floor: read_json", "read_json", results, table,
                                            measured=True, repeats=repeats, output=table)
        self.facts["row_loop"] = self.task("floor: per-row loop", "row_loop", self.db,
                                           self.wd / "row_loop.jsonl", self.args.template,
                                           measured=True)
        for name in ("copy.jsonl", "read_json.duckdb", "row_loop.jsonl", "results.jsonl"):
            (self.wd / name).unlink(missing_ok=True)   # free the disk before the real thing

    def startup(self) -> None:
        """What any command pays before its work: the CLI's start-up, the provider SDK's import
        (context for the polling targets, which are a fraction of `plan`)."""
        duckdb_query = "import duckdb; duckdb.connect().execute('SELECT 1').fetchall()"
        for name, argv in (("start-up: warehouse-batch --version", [*self.cli, "--version"]),
                           ("start-up: Python, DuckDB, one query",
                            [sys.executable, "-c", duckdb_query]),
                           ("start-up: import openai", [sys.executable, "-c", "import openai"])):
            m = measure(name, argv, logdir=self.logs)
            if m.returncode != 0:
                raise CommandFailed(m)
            self.results[name] = m

    def paths(self) -> None:
        """The CLI paths of the issue's target table, against the emulator."""
        sizing = ["--batch-max-requests", str(self.args.batch_max_requests)]
        self.command("plan", "plan", *sizing)
        first_upload = self.emu.watch_first("POST", "/v1/files")
        self.command("submit", "submit", *sizing)
        self.facts["submit_first_upload_s"] = first_upload()
        self.facts["after_submit"] = self.task("stats", "stats", self.db)
        self.say("moving the emulator's clock: every batch ends")
        self.emu.finish_all()
        self.command("collect", "collect", *sizing)
        self.facts["after_collect"] = self.task("stats", "stats", self.db)
        self.command("run, nothing changed", "run", *sizing)
        self.facts["changed"] = self.task("update", "update", self.db, CHANGED_PERCENT)
        self.command("run, 1% changed", "run", *sizing)
        self.command("status, no batch ended", "status", *sizing)
        self.command("collect, no batch ended", "collect", *sizing)
        self.facts["after_all"] = self.task("stats", "stats", self.db)

    def disk(self) -> None:
        """Bytes of the DuckDB file (state + output + source) against the request JSONL."""
        total = sum(p.stat().st_size for p in self.wd.glob("bench.duckdb*"))
        source = int(self.facts["source"]["db_bytes"])        # type: ignore[index]
        after = self.facts["after_all"]
        request_bytes = after.get("request_bytes") or 0      # type: ignore[union-attr]
        self.facts["disk"] = {"db_file_bytes": total, "source_bytes": source,
                              "state_and_output_bytes": total - source,
                              "request_jsonl_bytes": request_bytes}


def _default_cli() -> str:
    """The warehouse-batch script of the interpreter running the benchmark."""
    script = Path(sys.executable).parent / "warehouse-batch"
    if script.exists():
        return str(script)
    found = shutil.which("warehouse-batch")
    if not found:
        sys.exit("warehouse-batch is not installed next to this Python; pass --cli")
    return found


def versions() -> dict[str, str]:
    """Python and DuckDB versions (DuckDB's asked from a child, to keep this process small)."""
    duck = subprocess.run([sys.executable, "-c", "import duckdb; print(duckdb.__version__)"],
                          capture_output=True, text=True).stdout.strip()
    return {"python": platform.python_version(), "duckdb": duck}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="source rows [1,000,000]")
    ap.add_argument("--workdir", type=Path,
                    help="work here (kept afterwards) instead of in a temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--out", type=Path, help="markdown table [bench/results-<rows>.md]")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--no-floors", action="store_true",
                    help="skip the floors (ratios against them are then not computed)")
    ap.add_argument("--floor-repeats", type=int, default=3, metavar="N",
                    help="run the COPY and read_json floors N times, keep the least CPU [3]")
    ap.add_argument("--batch-max-requests", type=int, default=50_000,
                    help="requests per provider batch [50,000, OpenAI's limit]")
    ap.add_argument("--template", choices=("sql", "jinja"), default="sql",
                    help="a prompt template that compiles to SQL [sql], or one that needs Jinja")
    ap.add_argument("--timeout", type=float, metavar="SECONDS",
                    help="kill a CLI command that runs longer (it then counts as failed)")
    ap.add_argument("--cli", help="the command to run instead of this venv's warehouse-batch")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if any(args.workdir.iterdir()):
            sys.exit(f"--workdir {args.workdir} is not empty")
        workdir = args.workdir.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    bench = Bench(args, workdir)
    try:
        bench.run()
    except CommandFailed as exc:
        print(f"error: {exc}\n--- stderr ---\n{exc.measured.stderr}\n--- stdout ---\n"
              f"{exc.measured.stdout}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        if bench.emu is not None:
            bench.emu.stop()
    meta = {"machine": machine(), **versions(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    table: list[Row] = rows_for(bench.results, bench.facts)
    bench.facts["together"] = together(bench.results)
    if args.json:
        print(json.dumps({"meta": meta, "facts": bench.facts,
                          "rows": [r.as_dict() for r in table]}, indent=2))
    else:
        print(text_table(table, meta, bench.facts))
    out = args.out or HERE / f"results-{args.rows}.md"
    out.write_text(markdown(table, meta, bench.facts))
    bench.say(f"markdown written to {out}")
    if args.workdir or args.keep:
        bench.say(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
