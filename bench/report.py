"""The benchmark's result table: issue 9's target rows, ratios, and their text/markdown forms.

Every ratio is of CPU seconds measured in the same run: a command against the floor the
issue names (COPY, read_json) or against `plan`. The RSS and disk rows compare against
absolute limits. A missing floor (`--no-floors`) leaves its ratios as n/a.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from measure import Measured

GIB_MIB = 1024.0
FLOORS = ("floor: COPY to JSONL", "floor: read_json", "floor: per-row loop",
          "start-up: warehouse-batch --version", "start-up: Python, DuckDB, one query",
          "start-up: import openai")
COMMANDS = ("plan", "submit", "collect", "run, nothing changed", "run, 1% changed",
            "status, no batch ended", "collect, no batch ended")
# (row label, command, denominator, limit, target as the issue writes it)
TARGETS = (
    ("plan / COPY floor", "plan", "floor: COPY to JSONL", 2.0, "≤ 2.0"),
    ("submit / COPY floor (provider time excluded)", "submit", "floor: COPY to JSONL", 3.0,
     "≤ 3.0"),
    ("collect of all answers / read_json floor", "collect", "floor: read_json", 3.0, "≤ 3.0"),
    ("run with nothing changed / plan", "run, nothing changed", "plan", 0.3, "≤ 0.3"),
    ("run after 1% of rows changed / plan", "run, 1% changed", "plan", 0.4, "≤ 0.4"),
    ("status with no batch ended / plan", "status, no batch ended", "plan", 0.05, "≤ 0.05"),
    ("collect with no batch ended / plan", "collect, no batch ended", "plan", 0.05, "≤ 0.05"),
)


@dataclass
class Row:
    """One line of the table; None prints as a dash."""

    path: str
    cpu: float | None = None
    wall: float | None = None
    rss_mib: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    emulator_cpu: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: Measured | None, den: Measured | None) -> float | None:
    if num is None or den is None or den.cpu <= 0:
        return None
    return num.cpu / den.cpu


def rows_for(results: dict[str, Measured], facts: dict[str, Any]) -> list[Row]:
    """The table: floors, the target rows, every command's RSS, and disk."""
    table: list[Row] = []
    copy = results.get("floor: COPY to JSONL")
    for name in FLOORS:
        m = results.get(name)
        if m is None:
            continue
        loop = name == "floor: per-row loop"
        table.append(Row(_floor_label(name, facts), m.cpu, m.wall, m.rss_mib,
                         _ratio(m, copy) if loop else None, "(÷ COPY)" if loop else ""))
    for label, command, denominator, limit, target in TARGETS:
        m = results.get(command)
        if m is None:
            continue
        if command == "submit" and "after_submit" in facts:
            label = label.replace("submit", f"submit ({facts['after_submit'].get('batches')} "
                                            "batches)", 1)
        ratio = _ratio(m, results.get(denominator))
        table.append(Row(label, m.cpu, m.wall, m.rss_mib, ratio, target,
                         None if ratio is None else ratio <= limit, m.extra.get("emulator_cpu")))
    commands = [results[c] for c in COMMANDS if c in results]
    if commands:
        worst = max(commands, key=lambda m: m.rss_mib)
        table.append(Row(f"peak RSS of every command (max: {worst.name})", None, None,
                         worst.rss_mib, worst.rss_mib / GIB_MIB, "≤ 1 GiB",
                         worst.rss_mib <= GIB_MIB))
    disk = facts.get("disk") or {}
    if disk.get("request_jsonl_bytes"):
        ratio = disk["state_and_output_bytes"] / disk["request_jsonl_bytes"]
        table.append(Row(f"state + output on disk ({_mib(disk['state_and_output_bytes'])}) / "
                         f"request JSONL ({_mib(disk['request_jsonl_bytes'])})", None, None, None,
                         ratio, "≤ 1.5", ratio <= 1.5))
    return table


def together(results: dict[str, Measured]) -> list[str]:
    """What the ratio targets ask of each other, from this run's floors.

    Three targets are fractions of `plan`, and `plan` itself is capped at 2 × COPY. Met
    together, they put absolute ceilings on a poll (0.05 × 2 × COPY) and on `run` after 1%
    changed (0.4 × 2 × COPY); these lines set those ceilings beside what a process pays
    before any work (Python with DuckDB answering one query; with the OpenAI SDK imported),
    so a reader sees when the table cannot be all `ok` on this machine at this size."""
    copy = results.get("floor: COPY to JSONL")
    duck = results.get("start-up: Python, DuckDB, one query")
    sdk = results.get("start-up: import openai")
    if copy is None or duck is None:
        return []
    plan_cap = 2.0 * copy.cpu
    poll_cap, run_cap = 0.05 * plan_cap, 0.4 * plan_cap
    lines = [f"Targets together: with `plan` at its cap (2 × COPY = {plan_cap:.2f} CPU s), a "
             f"poll may cost {poll_cap:.3f} s; Python starting DuckDB and answering one query "
             f"costs {duck.cpu:.3f} s"
             + (" (more than the cap)." if duck.cpu > poll_cap else ".")]
    if sdk is not None:
        least = duck.cpu + sdk.cpu
        lines.append(f"`run` after 1% changed may then cost {run_cap:.2f} s; starting DuckDB and "
                     f"importing the OpenAI SDK (which sends) costs {least:.2f} s before any row "
                     "is read" + (" (more than the cap)." if least > run_cap else "."))
    return lines


def _floor_label(name: str, facts: dict[str, Any]) -> str:
    rows = facts.get("rows", 0)
    if name == "floor: COPY to JSONL":
        return f"floor: DuckDB COPY of {rows:,} source rows to JSONL"
    if name == "floor: read_json":
        return f"floor: DuckDB read_json of {rows:,} result lines into a table"
    if name == "floor: per-row loop":
        return "floor: the seeds' per-row loop (Jinja, hashlib, json.dumps)"
    return name


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2 ** 20:,.0f} MiB"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _cells(r: Row) -> list[str]:
    ok = "" if r.ok is None else ("ok" if r.ok else "FAIL")
    return [r.path, _fmt(r.cpu), _fmt(r.wall), _fmt(r.rss_mib, 0),
            "n/a" if r.ratio is None and r.target.startswith("≤") else _fmt(r.ratio, 3),
            r.target, ok, _fmt(r.emulator_cpu)]


HEADER = ["path", "CPU s", "wall s", "peak RSS MiB", "ratio", "target", "ok", "emulator CPU s"]


def _summary(meta: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    source = facts.get("source", {})
    after = facts.get("after_all", {})
    template = ("compiled to SQL" if facts.get("template", "sql") == "sql"
                else "rendered by Jinja")
    lines = [
        f"{facts.get('rows', 0):,} rows (reviews of ~{source.get('avg_review_chars', '?')} "
        f"characters, template {template}), OpenAI protocol against the emulator, "
        f"{after.get('batches', '?')} batches, {after.get('requests', 0):,} requests sent "
        f"in all ({facts.get('changed', {}).get('changed', 0):,} rows changed for the 1% run).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['os']}; "
        f"Python {meta['python']}, DuckDB {meta['duckdb']}; {meta['date']}.",
    ]
    answered = (facts.get("after_collect") or {}).get("output_status")
    if answered is not None:
        lines.append("After `collect`, the output table's rows by `_status`: "
                     + ", ".join(f"{k} {v:,}" for k, v in answered.items()) + ".")
    if facts.get("submit_first_upload_s") is not None:
        lines.append(f"`submit`: the first upload reached the emulator "
                     f"{facts['submit_first_upload_s']:.1f} s (wall) after the command started.")
    if "emulator_peak_rss_mib" in facts:
        lines.append(f"Emulator (separate process): peak RSS {facts['emulator_peak_rss_mib']:,.0f}"
                     " MiB; its CPU per phase is the last column.")
    return lines + list(facts.get("together") or [])


def text_table(table: list[Row], meta: dict[str, Any], facts: dict[str, Any]) -> str:
    """The table for a terminal."""
    cells = [HEADER] + [_cells(r) for r in table]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(["", *lines, "", *_summary(meta, facts)]) + "\n"


def markdown(table: list[Row], meta: dict[str, Any], facts: dict[str, Any]) -> str:
    """The same table as markdown (what the README shows)."""
    out = [f"# warehouse-batch benchmark, {facts.get('rows', 0):,} rows", "",
           *_summary(meta, facts), "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in table:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |")
    return "\n".join(out) + "\n"
