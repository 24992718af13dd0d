"""The HTML form of `warehouse-batch report`: one self-contained page (inline CSS and SVG, no
script, no external resource) that opens offline and can be mailed or archived as it is.

Charts: daily cost and daily rows enriched (bars per UTC day) and failures by kind (bars),
then the per-job, per-day table the text form prints."""
from __future__ import annotations

from html import escape

from .usage_report import UsageReport, _money, _seconds

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .6em;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}h2{margin-top:1.6em}
.charts{display:flex;flex-wrap:wrap;gap:2em}figure{margin:0}figcaption{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#444}"""


def render_html(report: UsageReport) -> str:
    """The whole page as a string."""
    t = report.totals()
    daily = report.daily()
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>warehouse-batch report {report.since} to {report.until}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>warehouse-batch report</h1><p>UTC days {report.since} to {report.until}; "
             f"generated {escape(report.generated_at)}.</p>",
             '<table class="totals"><tbody>',
             *(f'<tr><th scope="row">{escape(label)}</th><td class="n">{value}</td></tr>'
               for label, value in (
                   ("rows enriched", f"{t['rows_enriched']:,}"),
                   ("requests", f"{t['requests']:,}"), ("failed", f"{t['failed']:,}"),
                   ("cost (USD)", _money(t["cost_usd"])),
                   ("real-time cost (USD)", _money(t["realtime_cost_usd"])),
                   ("saved (USD)", _money(t["savings_usd"])))),
             "</tbody></table>", '<div class="charts">',
             _bar_chart("daily-cost", "Daily cost (USD)",
                        [(d["day"], d["cost_usd"]) for d in daily], "#3b6ea5", money=True,
                        days=True),
             _bar_chart("daily-rows", "Daily rows enriched",
                        [(d["day"], d["rows_enriched"]) for d in daily], "#4f9a5f", days=True),
             _bar_chart("failure-kinds", "Failures by kind",
                        list(report.failure_kinds().items()), "#b5523b"),
             "</div>", "<h2>Per job and day</h2>", _table(report), "</body></html>"]
    return "\n".join(parts)


def _bar_chart(chart_id: str, title: str, bars: list[tuple[str, float]], colour: str, *,
               money: bool = False, days: bool = False) -> str:
    """An inline SVG bar chart; each bar's label under it (`days`: as MM-DD), cut with an
    ellipsis to the width of its bar, in full in the bar's tooltip and `data-label`."""
    width, height, pad = 420, 220, 40
    if not bars:
        return (f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
                "<p>nothing in this period</p></figure>")
    top = max(v for _, v in bars) or 1
    step = (width - pad) / len(bars)
    bar = max(step * 0.7, 1)
    fits = max(int(step / 6.5), 3)   # characters of ~11px text under one bar
    items = []
    for i, (label, value) in enumerate(bars):
        tick = str(label)[5:] if days else str(label)
        tick = tick if len(tick) <= fits else tick[:fits - 1] + "\u2026"
        h = (height - 2 * pad) * value / top
        x, y = pad + i * step, height - pad - h
        shown = _money(value) if money else f"{value:,}"
        items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}" '
            f'data-label="{escape(str(label))}" data-value="{value}">'
            f"<title>{escape(str(label))}: {shown}</title></rect>"
            f'<text x="{x + bar / 2:.1f}" y="{height - pad + 14}" text-anchor="middle">'
            f"{escape(tick)}</text>")
    return (f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{escape(title)}">'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" '
            f'stroke="#999"/><text x="2" y="{pad - 6}">{_money(top) if money else f"{top:,}"}'
            f'</text>{"".join(items)}</svg></figure>')


def _table(report: UsageReport) -> str:
    head = ("day", "job", "rows enriched", "requests", "failed", "tokens in", "tokens out",
            "cost (USD)", "real-time (USD)", "saved (USD)", "batches", "p50 s", "p95 s")
    rows = ["<table class=\"days\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) +
            "</tr></thead><tbody>"]
    for d in report.days:
        cells = [d.day.isoformat(), d.job, f"{d.rows_enriched:,}", f"{d.requests:,}",
                 f"{d.failed:,}", f"{d.input_tokens:,}", f"{d.output_tokens:,}",
                 _money(d.cost_usd), _money(d.realtime_cost_usd), _money(d.savings_usd),
                 f"{d.batches:,}", _seconds(d.p50_batch_seconds), _seconds(d.p95_batch_seconds)]
        rows.append("<tr>" + "".join(
            ('<td class="n">' if i >= 2 else "<td>") + escape(c) + "</td>"
            for i, c in enumerate(cells)) + "</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)
