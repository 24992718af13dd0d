"""Every distinct request once, stored compactly (migrations 011 and 024).

A request's body is the job's body template (the provider's body for the job, serialised as
canonical JSON) with the row's prompt spliced in as a JSON string. Each request is a row of
`request_rows` (its hash, `seq`, prompt and `set_id`); what all the requests stored by one
submit share (provider, endpoint, model, job, run, time, and the template's two halves) is
one row of `request_sets`. The view `requests` joins them and splices `body` again, so a
payload is rebuilt byte for byte on every retry without each ~600-byte body, or the values
every request of a submit repeats, being written per request (at a million requests those
repeated values were two thirds of the cost of storing them). `custom_id` is derived from
`request_hash`.

`seq` numbers the requests in the order they were stored, each new batch's requests
contiguous, so a payload read filtered on its batch's `seq` range (`chunk_ranges`,
`batch_ranges`) touches only the row groups that hold them instead of every stored prompt.
"""
from __future__ import annotations

import datetime as dt

import duckdb

from .identity import canonical_json
from .prepared import Prepared
from .providers.base import PROMPT_PLACEHOLDER
from .state import SCHEMA

SeqRange = tuple[int, int]


def body_halves(prepared: Prepared) -> tuple[str, str]:
    """The job's canonical body text before and after the prompt's JSON string: the same
    template `Prepared.body_sql` fills, so `before || to_json(prompt) || after` is the body
    whose hash is the request's identity."""
    body = prepared.provider.build_body(prepared.system_text, PROMPT_PLACEHOLDER)
    text, token = canonical_json(body), canonical_json(PROMPT_PLACEHOLDER)
    if text.count(token) != 1:
        raise ValueError("the prompt must occur once in the request body")
    before, after = text.split(token)
    return before, after


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The first `seq` free for new requests."""
    return con.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {SCHEMA}.request_rows"
                       ).fetchone()[0]


def store_new(con: duckdb.DuckDBPyConnection, prepared: Prepared, chunked: str, send: str,
              base: int, run_id: str, now: dt.datetime) -> None:
    """Store the requests of temp table `chunked` (sid, old_seq, ...) that are not stored yet
    (`old_seq` NULL), found in temp table `send` by row id (`sid`), their prompts read from
    view `wb_prompt` (by `_rid`), each numbered `base + sid`, as one new request set. Chunks
    are cut in `sid` order, so a batch's new requests get contiguous numbers (stored in about
    that order: DuckDB keeps each scanned block together, which is all the row-group ranges
    need; no sort is paid for)."""
    spec, provider = prepared.spec, prepared.provider
    before, after = body_halves(prepared)
    set_id = con.execute(f"SELECT coalesce(max(set_id), 0) + 1 FROM {SCHEMA}.request_sets"
                         ).fetchone()[0]
    stored = con.execute(f"""INSERT INTO {SCHEMA}.request_rows (request_hash, seq, set_id,
            prompt)
        SELECT s.request_hash, {int(base)} + s.sid, {int(set_id)}, p.prompt
        FROM (SELECT rowid AS sid, _rid, request_hash FROM {send}
              WHERE rowid IN (SELECT sid FROM {chunked} WHERE old_seq IS NULL)) s
        JOIN wb_prompt p USING (_rid)""").fetchone()[0]
    if stored:
        con.execute(f"""INSERT INTO {SCHEMA}.request_sets (set_id, provider, endpoint, model,
                job_name, first_run_id, created_at, body_prefix, body_suffix)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [set_id, provider.name, provider.endpoint_path(), spec.model, spec.name,
                     run_id, now, before, after])


def chunk_ranges(con: duckdb.DuckDBPyConnection, chunked: str,
                 base: int) -> tuple[dict[int, SeqRange], set[int]]:
    """For each chunk of temp table `chunked` (after `store_new`), the `seq` range of its
    requests; and the chunks whose requests are exactly their range (all stored just now,
    no gap), whose payload can be read by range alone."""
    seq = f"coalesce(old_seq, {int(base)} + sid)"
    rows = con.execute(f"SELECT chunk, min({seq}), max({seq}), count(*), count(old_seq) "
                       f"FROM {chunked} GROUP BY chunk").fetchall()
    return ({c: (lo, hi) for c, lo, hi, _, _ in rows},
            {c for c, lo, hi, n, old in rows if old == 0 and hi - lo + 1 == n})


def batch_ranges(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> dict[str, SeqRange]:
    """The `seq` range of each batch's requests, read from the ledger (one pass over the
    stored hashes, for batches resumed or rebuilt)."""
    if not batch_ids:
        return {}
    return {b: (lo, hi) for b, lo, hi in con.execute(f"""
        SELECT br.batch_id, min(r.seq), max(r.seq)
        FROM {SCHEMA}.batch_requests br JOIN {SCHEMA}.request_rows r USING (request_hash)
        WHERE br.batch_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1""",
                                                     [batch_ids]).fetchall()}


def seq_filter_sql(alias: str, seq_range: SeqRange | None) -> str:
    """A WHERE conjunct restricting `alias.seq` to a range ('' when there is none)."""
    if seq_range is None:
        return ""
    return f" AND {alias}.seq BETWEEN {int(seq_range[0])} AND {int(seq_range[1])}"
