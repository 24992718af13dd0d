"""Measuring whole processes from the OS, and the emulator as a separate process.

`measure` runs one command to its end and takes its CPU seconds (user + sys) and peak RSS
from `os.wait4`, the kernel's own accounting for that one child; wall time is the parent's
clock around it. The benchmark's parent process stays small (it imports neither DuckDB nor
the project), so nothing of its own memory can leak into a child's peak RSS.

`Emulator` starts `warehouse-batch emulator` with a manual clock as its own process, so its
CPU is never counted as the command's; `cpu()` reads its CPU seconds from /proc, so the
benchmark can report what the emulator spent in each phase.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Measured:
    """One finished process: what it cost and what it said."""

    name: str
    argv: list[str]
    returncode: int
    user: float
    sys: float
    wall: float
    rss_mib: float
    stdout: str
    stderr: str
    extra: dict = field(default_factory=dict)

    @property
    def cpu(self) -> float:
        """CPU seconds, user + sys."""
        return self.user + self.sys


def measure(name: str, argv: list[str], *, env: dict[str, str] | None = None,
            cwd: str | None = None, logdir: Path, timeout: float | None = None) -> Measured:
    """Run `argv` to its end; return its CPU, wall time, peak RSS, exit code and output.

    Output goes to files in `logdir` (a pipe could fill and stall the child). After `timeout`
    seconds the child is killed (its exit code is then -9 and `extra["timed_out"]` is set).
    """
    safe = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    n = 1 + sum(1 for _ in logdir.glob("[0-9]*.stderr"))   # numbered in run order
    out_path, err_path = logdir / f"{n:02d}_{safe}.stdout", logdir / f"{n:02d}_{safe}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    m = Measured(name, argv, proc.returncode, usage.ru_utime, usage.ru_stime, wall,
                 usage.ru_maxrss / 1024,   # KiB on Linux
                 out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))
    if timeout and proc.returncode == -9 and wall >= timeout:
        m.extra["timed_out"] = True
    return m


def machine() -> dict[str, str]:
    """The machine the numbers were taken on: CPU model, cores, RAM, OS."""
    info = {"cpu": "unknown", "cores": str(os.cpu_count()), "ram": "unknown",
            "os": " ".join(os.uname()[i] for i in (0, 2))}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram"] = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"') + f" ({info['os']})"
    except OSError:
        pass
    return info


class Emulator:
    """`warehouse-batch emulator` on a free loopback port, manual clock, state on disk."""

    def __init__(self, cli: list[str], state_dir: Path, logdir: Path) -> None:
        self.log = logdir / "emulator.stderr"
        self._log_file = open(self.log, "wb")
        # latency: batches end only when the bench moves the manual clock past it
        self.proc = subprocess.Popen(
            [*cli, "emulator", "--port", "0", "--clock", "manual", "--latency", "600",
             "--state-dir", str(state_dir)],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = self._wait_for_url()
        self._tick = os.sysconf("SC_CLK_TCK")

    def _wait_for_url(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "listening on " in text:
                return text.split("listening on ", 1)[1].split()[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the emulator did not start:\n{self.log.read_text()}")

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call an admin endpoint under /_emulator/ and return its JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_emulator/" + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with _OPENER.open(req, timeout=600) as resp:
            return json.loads(resp.read() or b"{}")

    def finish_all(self) -> None:
        """Move the clock far enough that every batch created so far has ended."""
        self.admin("POST", "clock", {"advance": 86_400})

    def watch_first(self, method: str, path_prefix: str) -> Callable[[], float | None]:
        """Start watching the emulator's request log for the first `method` call under
        `path_prefix`; the returned function stops the watch and gives the seconds from now
        to that call (None if it never came). Polls the log every 0.2 s from a thread."""
        start, seen, done = time.perf_counter(), [], threading.Event()

        def watch() -> None:
            while not done.wait(0.2):
                try:
                    log = self.admin("GET", "requests")["data"]
                except OSError:
                    continue
                if any(c["method"] == method and c["path"].startswith(path_prefix)
                       for c in log):
                    seen.append(time.perf_counter() - start)
                    return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()

        def stop() -> float | None:
            done.set()
            thread.join()
            return seen[0] if seen else None
        return stop

    def cpu(self) -> float:
        """CPU seconds (user + sys) the emulator has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def peak_rss_mib(self) -> float:
        """The emulator's peak RSS so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` without provider settings, pointed at this emulator (OpenAI protocol)."""
        env = {k: v for k, v in base.items()
               if not k.startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "WAREHOUSE_BATCH_"))}
        env.update(OPENAI_BASE_URL=self.url + "/v1", OPENAI_API_KEY="sk-emulator")
        return env

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL) and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
