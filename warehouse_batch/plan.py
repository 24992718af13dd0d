"""What a run would do, computed set-based from the current rows and the state tables."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from . import budget, capacity, estimate
from .chunking import assign_chunks
from .classify import SEND_CATEGORIES, build_send_table, classify
from .identity import custom_id_sql
from .prepared import Prepared


@dataclass
class PlanReport:
    """Counts of rows by category, and what would be sent. Sends nothing."""

    job: str
    provider: str
    model: str
    rows_selected: int
    rows_done: int
    rows_in_flight: int
    rows_failed: int
    rows_new: int
    rows_changed: int
    rows_retry: int
    rows_unsent: int
    rows_to_send: int
    requests_to_send: int
    duplicates_collapsed: int
    batches: int
    bytes_to_send: int
    est_input_tokens: int
    render_mode: str
    rows_rendered: int = 0                        # rows changed or not yet answered
    est_input_cost_usd: float | None = None      # batch price; None when the model is unpriced
    max_output_cost_usd: float | None = None     # every request using all of max_tokens
    est_output_tokens: int = 0                   # expected: learned (or typical) per answer
    est_output_cost_usd: float | None = None     # expected output, batch price
    est_cost_usd: float | None = None            # expected: input + expected output
    worst_case_cost_usd: float | None = None     # input + cache writes + answers at max_tokens
    cache_write_tokens: int = 0                  # per request, to the prompt cache (estimated)
    estimate: dict = field(default_factory=dict)  # how tokens were estimated (estimate.py)
    sample_request: dict | None = None
    limits: dict = field(default_factory=dict)
    enqueued_token_limit: int | None = None   # setting or learned; None: not known
    waves: int | None = None                  # rounds of batches the limit allows at once
    requests_over_limit: int = 0              # alone larger than the limit: they will fail
    depends_on: list[str] = field(default_factory=list)   # dbt models/sources the SELECT reads
    send_mode: str = "batch"                  # 'realtime': below realtime_below (realtime.py)
    realtime_below: int | None = None
    budget: Any = None   # budget.BudgetPlan: the next reservation, what is left of each cap

    def to_dict(self) -> dict:
        return asdict(self)



def estimate_cost(con: duckdb.DuckDBPyConnection, prepared: Prepared, requests: int,
                  input_tokens: int, output_tokens: int = 0, cache_tokens: int = 0) -> dict:
    """At batch prices: the input cost, the expected output cost (`output_tokens`, the
    estimator's expected answers) and the worst case for output (all of max_tokens), with
    the expected and worst-case totals. The worst case also has every request writing its
    `cache_tokens` to the prompt cache, as the budget reserves it (`budget.worst_case_sql`).
    Empty when the model has no price."""
    price = budget.price(con, prepared.provider.name, prepared.spec.model)
    if price is None:
        return {}
    max_tokens = estimate.max_output_tokens(prepared)
    worst = None
    if prepared.spec.endpoint == "embeddings":
        worst = 0.0
    elif max_tokens:
        worst = round(requests * max_tokens * price["output"] / 1e6, 6)
    cost_in = round(input_tokens * price["input"] / 1e6, 6)
    cost_out = round(output_tokens * price["output"] / 1e6, 6)
    cache_writes = requests * cache_tokens * budget.cache_write_extra(price) / 1e6
    return {"est_input_cost_usd": cost_in, "max_output_cost_usd": worst,
            "est_output_cost_usd": cost_out, "est_cost_usd": round(cost_in + cost_out, 6),
            "worst_case_cost_usd": None if worst is None else round(
                cost_in + worst + cache_writes, 6)}


def build_plan(con: duckdb.DuckDBPyConnection, prepared: Prepared) -> PlanReport:
    """Classify rows and estimate the batches, without writing anything. Rows no model can
    answer (too long for its context window) are refused first (`estimate.refuse_overlong`)."""
    estimator = estimate.for_job(con, prepared)
    estimate.refuse_overlong(con, prepared, estimator)
    classify(con, prepared)
    counts = dict(con.execute("SELECT category, count(*) FROM wb_plan GROUP BY 1").fetchall())
    to_send_rows = sum(counts.get(c, 0) for c in SEND_CATEGORIES)
    requests = build_send_table(con)
    sized = (f"SELECT body_bytes + {prepared.line_overhead()} AS nbytes, "
             f"{estimator.tokens_sql('prompt_chars')} AS ntok FROM wb_send")
    limits, token_limit = capacity.budget_limits(con, prepared.provider)
    over = 0
    if token_limit is not None:
        over = con.execute(f"SELECT count(*) FROM ({sized}) WHERE ntok > ?",
                           [token_limit]).fetchone()[0]
        sized = f"SELECT * FROM ({sized}) WHERE ntok <= {int(token_limit)}"
    batches, nbytes, ntok = assign_chunks(con, sized, limits)
    chunk_tokens = [t for (t,) in con.execute(
        "SELECT sum(ntok) FROM wb_chunked GROUP BY chunk ORDER BY chunk").fetchall()]
    out_tokens = round(requests * estimator.output_per_answer)
    cache_tokens = estimator.cache_write_tokens(prepared.provider)
    cost = estimate_cost(con, prepared, requests, ntok, out_tokens, cache_tokens)
    sample = None
    # the first line of the first batch (custom_ids sort as their request hashes)
    for source in ("WHERE c._rid = (SELECT _rid FROM wb_send ORDER BY request_hash LIMIT 1)",
                   "ORDER BY c._rid"):
        first = con.execute(f"SELECT {custom_id_sql('c.request_hash')}, "
                            f"{prepared.body_sql('p.prompt')} "
                            f"FROM wb_current c JOIN wb_prompt p USING (_rid) {source} "
                            "LIMIT 1").fetchone()
        if first is not None:
            sample = prepared.provider.envelope(first[0], json.loads(first[1]))
            break
    return PlanReport(
        job=prepared.spec.name, provider=prepared.provider.name, model=prepared.spec.model,
        rows_selected=prepared.rows,
        rows_done=counts.get("done", 0) + prepared.rows - sum(counts.values()),
        rows_in_flight=counts.get("in_flight", 0), rows_failed=counts.get("failed", 0),
        rows_new=counts.get("new", 0), rows_changed=counts.get("changed", 0),
        rows_retry=counts.get("retry", 0), rows_unsent=counts.get("unsent", 0),
        rows_to_send=to_send_rows, requests_to_send=requests,
        duplicates_collapsed=to_send_rows - requests,
        batches=batches, bytes_to_send=nbytes, est_input_tokens=ntok, **cost,
        est_output_tokens=out_tokens, estimate=estimator.to_dict(),
        cache_write_tokens=cache_tokens,
        render_mode=prepared.render_mode, rows_rendered=prepared.rendered,
        sample_request=sample,
        limits={"max_requests": limits.max_requests, "max_bytes": limits.max_bytes,
                "max_tokens": limits.max_tokens},
        enqueued_token_limit=token_limit, requests_over_limit=over,
        waves=(capacity.waves(chunk_tokens, capacity.usable(token_limit))
               if token_limit is not None else None),
    )
