"""Token estimates that learn (issue 11, item 2): from the message text with a documented
ratio, then from the job's own billed usage; plan shows expected cost and worst case apart."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from warehouse_batch import api
from warehouse_batch.clock import Backoff
from warehouse_batch.estimate import Fit, Ratio, documented, solve

from helpers import EmulatorClock, Job, emulator_env, write_job

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "reviews"
EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _example(tmp_path: Path) -> Path:
    folder = tmp_path / "reviews"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("*.duckdb*"))
    return folder / "review_sentiment.sql"


def _options(tmp_path: Path, emu, **kw) -> api.Options:
    return api.Options(db=str(tmp_path / "shop.duckdb"), env=emulator_env(emu),
                       clock=EmulatorClock(emu), create_db=True, **kw)


def _run(job: Path, options: api.Options) -> api.RunReport:
    return api.run(str(job), options, wait=True, max_wait=30 * 86400,
                   backoff=Backoff(initial=30, maximum=3600))


def _billed(db: Path, batch_ids: list[str]) -> tuple[int, float]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tin, tout = con.execute(
            "SELECT sum(input_tokens), sum(output_tokens) FROM warehouse_batch.attempts "
            "WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))", [batch_ids]).fetchone()
        price = con.execute("SELECT input, output FROM warehouse_batch.prices "
                            "WHERE provider = 'openai' AND model = 'gpt-4.1-mini'").fetchone()
    finally:
        con.close()
    return tin, (tin * price[0] + tout * price[1]) / 1e6


def _batch_ids(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [b for (b,) in con.execute("SELECT batch_id FROM warehouse_batch.batches "
                                          "ORDER BY created_at, batch_id").fetchall()]
    finally:
        con.close()


def test_after_one_collect_plan_of_a_changed_version_is_within_10_percent(tmp_path, emulator):
    """The issue's must-show, on the example job: run it, change the prompt, plan, run again;
    the emulator's billed input tokens and cost are within 10% of plan's estimate."""
    job = _example(tmp_path)
    options = _options(tmp_path, emulator)
    first = api.plan(str(job), options)
    assert first.estimate["input_basis"] == "documented"
    assert _run(job, options).rows.succeeded == 120
    before = set(_batch_ids(tmp_path / "shop.duckdb"))

    template = job.parent / "review_prompt.j2"
    template.write_text("Read the whole review before you decide; sarcasm counts as "
                        "negative.\n" + template.read_text())
    plan = api.plan(str(job), options)
    assert plan.estimate["input_basis"] == "learned"
    assert plan.estimate["learned_from"] == first.requests_to_send
    assert plan.estimate["output_basis"] == "learned"
    assert plan.rows_changed == 120 and plan.requests_to_send > 0

    assert _run(job, options).rows.succeeded == 120
    new = [b for b in _batch_ids(tmp_path / "shop.duckdb") if b not in before]
    tokens, cost = _billed(tmp_path / "shop.duckdb", new)
    assert abs(plan.est_input_tokens - tokens) <= 0.10 * tokens, (plan.est_input_tokens, tokens)
    assert abs(plan.est_cost_usd - cost) <= 0.10 * cost, (plan.est_cost_usd, cost)
    # the old estimate (a quarter of each JSON line's bytes) was not: it counted the framing
    assert plan.bytes_to_send // 4 > 1.5 * tokens


def test_plan_json_shows_expected_cost_and_worst_case_apart(tmp_path, fast_emulator):
    """Before anything is learned the expected output is the typical answer (never more
    than max_tokens); the worst case keeps every answer at max_tokens. Both in --json and
    in the text, with how the tokens were estimated."""
    job = Job(tmp_path, fast_emulator, max_tokens=400)
    env = emulator_env(fast_emulator)
    p = subprocess.run(EXE + ["plan", job.path, "--db", job.db, "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    r = r.get("jobs", [r])[0] if "jobs" in r else r
    typical = documented("openai", "gpt-4.1-mini").typical_output
    assert r["estimate"]["input_basis"] == "documented"
    assert r["estimate"]["output_basis"] == "typical"
    assert r["est_output_tokens"] == 12 * typical
    assert r["est_output_cost_usd"] == round(12 * typical * 0.80 / 1e6, 6)
    assert r["max_output_cost_usd"] == round(12 * 400 * 0.80 / 1e6, 6)
    assert r["est_cost_usd"] == round(r["est_input_cost_usd"] + r["est_output_cost_usd"], 6)
    assert r["worst_case_cost_usd"] == round(r["est_input_cost_usd"]
                                             + r["max_output_cost_usd"], 6)
    assert r["est_cost_usd"] < r["worst_case_cost_usd"]
    text = subprocess.run(EXE + ["plan", job.path, "--db", job.db], env=env,
                          capture_output=True, text=True, timeout=120).stdout
    assert f"${r['est_cost_usd']:,.4f}" in text and "expected cost" in text
    assert f"${r['worst_case_cost_usd']:,.4f}" in text and "worst case" in text
    assert "documented ratio" in text


def test_input_estimate_counts_message_text_not_json(tmp_path, fast_emulator):
    """Documented estimate: overhead + characters of system + prompt / chars_per_token, per
    request; each batch's est_tokens is the same figure, and each sent request records its
    text characters."""
    job = Job(tmp_path, fast_emulator, rows=6)
    plan = api.plan(job.path, job.options())
    rows = job.sql("SELECT 'Answer with one word.', 'Classify the sentiment of this review: ' "
                   "|| text FROM reviews ORDER BY id")
    ratio = documented("openai", "gpt-4.1-mini")
    want = sum(max(1, math.floor(ratio.request_overhead + (len(s) + len(p))
                                 / ratio.chars_per_token + 0.5)) for s, p in rows)
    assert plan.est_input_tokens == want
    job.run()
    assert job.sql("SELECT sum(est_tokens) FROM warehouse_batch.batches") == [(want,)]
    chars = sorted(c for (c,) in job.sql("SELECT text_chars FROM warehouse_batch.batch_requests"))
    assert chars == sorted(len(s) + len(p) for s, p in rows)


def test_learning_is_per_job_provider_and_model(tmp_path, fast_emulator):
    """Usage billed under another model teaches nothing about this one."""
    job = Job(tmp_path, fast_emulator, rows=6)
    job.run()
    assert api.plan(job.path, job.options()).estimate["input_basis"] == "learned"
    job.write(model="gpt-4o-mini")
    plan = api.plan(job.path, job.options())
    assert plan.estimate["input_basis"] == "documented"


def test_embeddings_have_no_framing_and_no_output(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, rows=4)
    job.path = str(write_job(tmp_path, """
        name='enriched', provider='openai', model='text-embedding-3-small', unique_key='id',
        endpoint='embeddings', dimensions=8, prompt='{{ text }}'""",
                             "SELECT id, text FROM reviews"))
    plan = api.plan(job.path, job.options())
    assert plan.estimate["overhead"] == 0 and plan.estimate["output_basis"] == "none"
    assert plan.est_output_tokens == 0 and plan.worst_case_cost_usd == plan.est_input_cost_usd
    texts = job.sql("SELECT text FROM reviews")
    assert plan.est_input_tokens == sum(math.floor(len(s) / 4 + 0.5) for (s,) in texts)


PRIOR = Ratio(chars_per_token=4.0, request_overhead=7.0, typical_output=200)


def test_solve_uses_the_fitted_line_when_lengths_vary():
    fit = Fit(n=100, sum_chars=40_000, sum_tokens=10_500, slope=0.25, intercept=5.0,
              spread=900.0, output_mean=2.0, outputs=100)
    assert solve(fit, PRIOR) == (0.25, 5.0)


def test_solve_keeps_the_documented_overhead_when_every_request_has_the_same_length():
    """No spread: the intercept cannot be told from the slope."""
    fit = Fit(n=10, sum_chars=4000, sum_tokens=1070, slope=None, intercept=None, spread=0.0,
              output_mean=None, outputs=0)
    per_char, overhead = solve(fit, PRIOR)
    assert overhead == 7.0 and per_char == pytest.approx((1070 - 70) / 4000)
    # an overhead larger than half the tokens is not believed
    small = Fit(n=10, sum_chars=400, sum_tokens=100, slope=None, intercept=None, spread=0.0,
                output_mean=None, outputs=0)
    assert solve(small, PRIOR) == (pytest.approx(50 / 400), 5.0)


def test_solve_falls_back_to_a_line_through_zero_on_a_negative_intercept():
    fit = Fit(n=50, sum_chars=10_000, sum_tokens=2_400, slope=0.3, intercept=-12.0,
              spread=400.0, output_mean=3.0, outputs=50)
    assert solve(fit, PRIOR) == (0.24, 0.0)


@pytest.mark.parametrize("provider, model", [("anthropic", "claude-haiku-4-5"),
                                             ("openai", "gpt-4o-mini")])
def test_learned_estimate_of_a_changed_prompt_matches_the_bill(tmp_path, emulator, provider,
                                                               model):
    """The same on each protocol: after one collect, a changed prompt (longer, so the mean
    length moves) is estimated within 10% of the billed input tokens."""
    job = Job(tmp_path, emulator, rows=30, provider=provider, model=model)
    assert job.run().rows.succeeded == 30
    done = {b for (b,) in job.sql("SELECT batch_id FROM warehouse_batch.batches")}
    job.write(prompt="Think about the tone, the words and what the customer wants, then "
                     "classify the sentiment of this review: {{ text }}")
    plan = api.plan(job.path, job.options())
    assert plan.estimate["input_basis"] == "learned"
    assert job.run().rows.succeeded == 30
    new = [b for (b,) in job.sql("SELECT batch_id FROM warehouse_batch.batches")
           if b not in done]
    (billed,), = job.sql("SELECT sum(input_tokens) FROM warehouse_batch.attempts WHERE "
                         "batch_id IN (SELECT unnest(?::VARCHAR[]))", [new])
    assert abs(plan.est_input_tokens - billed) <= 0.10 * billed, (plan.est_input_tokens, billed)
