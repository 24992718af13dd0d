"""Token estimates: from the message text first, then learned from what the provider billed.

Every estimate of input tokens (plan's figures and cost, each batch's `est_tokens` that
enqueued-token limits and budget reservations read, the over-long-row refusal) is one linear
model of a request's *message text*: the characters of its system prompt plus its prompt
(`length()`, in characters, never the JSON framing):

    tokens = overhead + characters * tokens_per_char      (rounded, at least 1)

* **Documented** (`data/tokens.json`, per provider and model-name prefix): the vendors' rule
  of thumb, e.g. 4 characters per token and 7 tokens of message framing per OpenAI chat
  request. Used until the job has collected usage.
* **Learned**: each request put in a batch records its text characters (`batch_requests.
  text_chars`, migration 020); the provider bills its input tokens per request
  (`attempts.input_tokens`, migration 016). From the job's most recently collected batches
  for the same provider and model (up to `SAMPLE_REQUESTS` requests), a least-squares line
  through those (characters, tokens) pairs gives the per-request overhead (intercept) and
  tokens per character (slope): the framing is learned, not assumed, because the pairs are
  per request (a fit over batch totals could not separate the two: every batch of a job has
  about the same mean length). Where the lengths barely vary the intercept is not
  identifiable: the documented overhead is kept (at most half the mean) and the slope taken
  from the rest; a negative intercept (noise) falls back to a line through zero.

Output tokens: the expected cost uses the mean billed output tokens per answer of the same
sample, or, before any, `typical_output_tokens` (never more than `max_tokens`); the worst case
keeps every answer at `max_tokens`. Everything is set-based SQL over the text lengths that
`source.prepare` computes once (`wb_current.prompt_chars`); no per-row Python.

`truncate_tokens(N)` in a template (render.py) keeps `truncate_chars(...)` characters: the
documented ratio, never the learned one, so a prompt (and its request hash) does not change
when the job learns.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

import duckdb

from .errors import DataError
from .models import context_window, longest_prefix
from .prepared import Prepared
from .providers.base import Provider
from .sqlutil import load_sql

SAMPLE_REQUESTS = 50_000      # billed requests the fit reads at most (the newest batches)
MAX_TRUNCATE_TOKENS = 1_000_000   # the largest context window of any model, about
MIN_SPREAD = 1.0              # variance of the characters (chars²) below which no intercept is fit


@dataclass(frozen=True)
class Ratio:
    """The documented estimate for a provider and model (`data/tokens.json`)."""

    chars_per_token: float
    request_overhead: float     # tokens of framing per request
    typical_output: int         # tokens per answer assumed before any was counted


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("warehouse_batch").joinpath("data", "tokens.json")
                      .read_text(encoding="utf-8"))


def documented(provider: str, model: str, endpoint: str = "chat") -> Ratio:
    """The documented ratio of `provider` and `model` (longest model-name prefix; the
    default for a provider not listed). Embeddings have no message framing."""
    data = _table()
    base = data["default"]
    row = longest_prefix([r for r in data["ratios"] if r["provider"] == provider], model) or {}
    merged = {**base, **row}
    overhead = 0.0 if endpoint == "embeddings" else float(merged["request_overhead_tokens"])
    return Ratio(float(merged["chars_per_token"]), overhead, int(merged["typical_output_tokens"]))


def truncate_chars(chars_per_token: float, tokens: int) -> int:
    """How many characters `truncate_tokens(tokens)` keeps."""
    return int(math.floor(tokens * chars_per_token))


def max_output_tokens(prepared: Prepared) -> int | None:
    """The job's `max_tokens` (or `max_completion_tokens`), if set."""
    spec = prepared.spec
    for source in (spec.generation, spec.params):
        for key in ("max_tokens", "max_completion_tokens"):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


@dataclass(frozen=True)
class Fit:
    """The sums of a job's (characters, billed tokens) pairs, as the fit query returns them."""

    n: int
    sum_chars: float
    sum_tokens: float
    slope: float | None
    intercept: float | None
    spread: float | None        # population variance of the characters
    output_mean: float | None
    outputs: int


def solve(fit: Fit, prior: Ratio) -> tuple[float, float]:
    """(tokens_per_char, overhead) from a fit; see the module docstring for the rules."""
    if (fit.n >= 2 and (fit.spread or 0) >= MIN_SPREAD and fit.slope is not None
            and fit.slope > 0 and fit.intercept is not None):
        if fit.intercept >= 0:
            return fit.slope, fit.intercept
        return fit.sum_tokens / fit.sum_chars, 0.0
    overhead = min(prior.request_overhead, 0.5 * fit.sum_tokens / fit.n)
    return (fit.sum_tokens - fit.n * overhead) / fit.sum_chars, overhead


@dataclass(frozen=True)
class Estimator:
    """How a job's tokens are estimated now (documented or learned)."""

    tokens_per_char: float
    overhead: float                 # tokens per request beyond its text
    output_per_answer: float        # expected output tokens per answer
    input_basis: str                # "documented" | "learned"
    output_basis: str               # "learned" | "typical" | "max_tokens" | "none"
    learned_from: int               # billed requests the input fit used (0: documented)
    system_chars: int               # characters of the job's system prompt (every request)
    chars_per_token_documented: float

    def chars_sql(self, prompt_chars: str) -> str:
        """SQL for the message-text characters of a request, given its prompt's."""
        return f"({int(self.system_chars)} + coalesce({prompt_chars}, 0))"

    def tokens_sql(self, prompt_chars: str) -> str:
        """SQL for the estimated input tokens of one request (a BIGINT, at least 1)."""
        return (f"CAST(greatest(1, round({self.overhead!r} + {self.chars_sql(prompt_chars)}"
                f" * {self.tokens_per_char!r})) AS BIGINT)")

    def cache_write_tokens(self, provider: Provider) -> int:
        """The estimated tokens each request writes to the provider's prompt cache: its system
        prompt's, when the provider caches it (`Provider.caches_system_prompt`), else 0."""
        if not provider.caches_system_prompt():
            return 0
        return math.ceil(self.system_chars * self.tokens_per_char)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["chars_per_token"] = (round(1 / self.tokens_per_char, 3)
                                if self.tokens_per_char > 0 else None)
        return d

    def describe(self) -> str:
        """How the input is estimated, in words (for messages)."""
        per_token = (f"{1 / self.tokens_per_char:.2f}" if self.tokens_per_char > 0
                     else "unbounded")
        ratio = f"{per_token} characters per token + {self.overhead:.1f} tokens per request"
        if self.input_basis == "learned":
            return f"learned from {self.learned_from:,} billed request(s) of this job: {ratio}"
        return f"documented ratio (data/tokens.json): {ratio}"


def fit_job(con: duckdb.DuckDBPyConnection, job: str, provider: str, model: str) -> Fit:
    """The sums over the job's newest collected (characters, billed tokens) pairs."""
    row = con.execute(load_sql("estimate_fit.sql"),
                      {"job": job, "provider": provider, "model": model,
                       "sample": SAMPLE_REQUESTS}).fetchone()
    return Fit(*row)


NO_FIT = Fit(0, 0.0, 0.0, None, None, None, None, 0)


def for_job(con: duckdb.DuckDBPyConnection, prepared: Prepared, *,
            learn: bool = True) -> Estimator:
    """The job's estimator: learned from its collected usage when there is any, else the
    documented ratio. `learn=False` skips reading the usage (the documented ratio alone):
    for a caller with nothing to estimate, so a run that sends nothing pays no query."""
    spec, provider = prepared.spec, prepared.provider
    prior = documented(provider.name, spec.model, spec.endpoint)
    fit = fit_job(con, spec.name, provider.name, spec.model) if learn else NO_FIT
    system_chars = len(prepared.system_text or "")
    if fit.n > 0 and fit.sum_chars and fit.sum_chars > 0:
        per_char, overhead = solve(fit, prior)
        basis, learned = "learned", fit.n
    else:
        per_char, overhead, basis, learned = 1 / prior.chars_per_token, prior.request_overhead, \
            "documented", 0
    cap = max_output_tokens(prepared)
    if spec.endpoint == "embeddings":
        out, out_basis = 0.0, "none"
    elif fit.outputs > 0 and fit.output_mean is not None:
        out, out_basis = min(float(fit.output_mean), cap or math.inf), "learned"
    elif cap is not None and cap <= prior.typical_output:
        out, out_basis = float(cap), "max_tokens"
    else:
        out, out_basis = float(prior.typical_output), "typical"
    return Estimator(per_char, overhead, out, basis, out_basis, learned, system_chars,
                     prior.chars_per_token)


def refuse_overlong(con: duckdb.DuckDBPyConnection, prepared: Prepared,
                    estimator: Estimator | None = None) -> None:
    """Refuse (DataError naming the keys) rows whose request no model could answer: estimated
    input tokens plus `max_tokens` past the model's context window (`data/models.json`).
    Reads the rows rendered now (`wb_current` rows with a prompt); call it before anything
    is written. (A request's size in bytes needs no check of its own: a prompt is at most
    `render.MAX_PROMPT_CHARS` characters, a few MB of JSON, and every provider takes 100 MB
    or more in one batch.)"""
    spec, provider = prepared.spec, prepared.provider
    window = context_window(provider.name, spec.model)
    if window is None or not prepared.rendered:   # no row rendered now: none to refuse
        return
    estimator = estimator or for_job(con, prepared)
    out = max_output_tokens(prepared) or 0
    tokens = estimator.tokens_sql("prompt_chars")
    over = con.execute(f"""SELECT key_json, tokens, count(*) OVER () FROM (
            SELECT key_json, row_number, {tokens} AS tokens FROM wb_current
            WHERE prompt_chars IS NOT NULL)
        WHERE tokens + {int(out)} > {int(window)}
        ORDER BY row_number LIMIT 11""").fetchall()
    if not over:
        return
    rows = [{**json.loads(k), "est_input_tokens": t} for k, t, _ in over]
    prompt_key = "prompt_file" if "prompt_file" in spec.key_locations else "prompt"
    raise DataError(
        f"{over[0][2]:,} row(s) would pass the context window of {spec.model} "
        f"({window:,} tokens for input and max_tokens={out:,} together): no request of "
        f"theirs can be answered (input estimated with the {estimator.describe()})",
        rows=rows, location=spec.location_of(prompt_key),
        hint="shorten the text: {{ col | truncate_tokens(N) }} in the template, left(col, N) "
             "in the SELECT, or leave such rows out with a WHERE")
