"""Requests stored once and compactly (request_store.py, migration 011), and the submit
pipeline that writes each batch's payload from them: the bodies rebuilt are the bodies hashed
and sent, byte for byte, whatever the prompt holds; a payload read through its `seq` range is
the payload read whole; old ledgers keep their bodies; one payload on disk at a time."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import openai

from warehouse_batch import api, identity
from warehouse_batch.db import connect
from warehouse_batch.jsonl import line_sql, write_payload
from warehouse_batch.providers.openai import OpenAIProvider
from warehouse_batch.request_store import batch_ranges
from warehouse_batch.state import SCHEMA, migrations, now_utc

from helpers import Job

# quotes, backslashes, control characters, non-ASCII and astral characters: every escape
# the canonical JSON rule knows
AWKWARD = ("CASE id % 4 WHEN 0 THEN 'say \"hi\" \\ back' || chr(10) || chr(9) || chr(1) "
           "WHEN 1 THEN 'café ☕ 𝄞 ' || chr(31) ELSE 'plain ' END || text")


def _awkward_job(tmp_path, emulator, extra: str = "") -> Job:
    job = Job(tmp_path, emulator, rows=12, extra=extra)
    job.sql(f"UPDATE reviews SET text = {AWKWARD}")
    return job


def test_stored_bodies_are_the_bodies_hashed(tmp_path, emulator):
    job = _awkward_job(tmp_path, emulator)
    api.submit(job.path, job.options())
    rows = job.sql(f"""SELECT request_hash, custom_id, provider, endpoint, body, prompt,
                              body_text FROM {SCHEMA}.requests""")
    assert len(rows) == 12
    for rhash, cid, provider, endpoint, body, prompt, body_text in rows:
        assert body_text is None and prompt is not None   # stored compactly
        parsed = json.loads(body)
        assert identity.canonical_json(parsed) == body     # the canonical text, spliced
        assert identity.request_hash(provider, endpoint, parsed) == rhash
        assert cid == identity.custom_id_for(rhash)
        assert parsed["messages"][-1]["content"] == prompt
    assert job.sql(f"SELECT count(*) FROM {SCHEMA}.batch_requests br JOIN {SCHEMA}.requests r "
                   "USING (request_hash) WHERE br.custom_id = r.custom_id") == [(12,)]


def test_uploaded_payloads_are_the_ledger_rebuilt_with_or_without_range(tmp_path, emulator):
    job = _awkward_job(tmp_path, emulator, extra=", batch_max_requests=5")
    api.submit(job.path, job.options())
    batches = job.sql(f"SELECT batch_id, input_file_id, bytes, request_count "
                      f"FROM {SCHEMA}.batches ORDER BY batch_id")
    assert [b[3] for b in batches] == [5, 5, 2]
    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="x")
    con = connect(job.db)
    try:
        ranges = batch_ranges(con, [b[0] for b in batches])
        line = line_sql(job.provider(), "r.custom_id", "r.body")
        for batch_id, file_id, nbytes, count in batches:
            sent = client.files.content(file_id).content
            assert len(sent) == nbytes                  # the size the chunks were cut by
            assert sent.count(b"\n") == count and sent.endswith(b"\n")
            # a batch stored in one go is exactly its range: read without batch_requests,
            # in storage order, as it was sent
            exact = write_payload(con, line, batch_id, tmp_path, ranges[batch_id], exact=True)
            assert exact.read_bytes() == sent
            exact.unlink()
            # read through batch_requests: the same lines (their order is not sorted, and
            # nothing depends on it: write_payload)
            for seq_range in (ranges[batch_id], None):
                rebuilt = write_payload(con, line, batch_id, tmp_path, seq_range)
                assert sorted(rebuilt.read_bytes().splitlines()) == sorted(sent.splitlines())
                assert rebuilt.stat().st_size == nbytes
                rebuilt.unlink()
    finally:
        con.close()


def test_one_payload_on_disk_at_a_time(tmp_path, emulator, monkeypatch):
    job = Job(tmp_path, emulator, rows=12, extra=", batch_max_requests=4")
    seen: list[list[str]] = []
    upload = OpenAIProvider.upload

    def spy(self, batch, payload: Path):
        seen.append(sorted(p.name for p in payload.parent.iterdir()))
        return upload(self, batch, payload)

    monkeypatch.setattr(OpenAIProvider, "upload", spy)
    report = api.submit(job.path, job.options())
    assert report.submitted.batches_created == 3 and len(seen) == 3
    assert all(len(files) == 1 and files[0].endswith(".jsonl") for files in seen)


def test_bodies_stored_before_version_11_are_kept(tmp_path):
    """A file whose ledger holds verbatim bodies (and an `intent` batch) is migrated: the
    bodies, custom ids and the payload rebuilt from them are unchanged."""
    db = str(tmp_path / "old.duckdb")
    con = duckdb.connect(db)
    con.execute(f"CREATE SCHEMA {SCHEMA}")
    con.execute(f"CREATE TABLE {SCHEMA}.schema_migrations (version INTEGER PRIMARY KEY, "
                "name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for version, name, sql in migrations():
        if version < 11:
            con.execute(sql)
            con.execute(f"INSERT INTO {SCHEMA}.schema_migrations VALUES (?, ?, ?)",
                        [version, name, now_utc()])
    body = identity.canonical_json({"model": "m", "messages": [
        {"role": "user", "content": "old \"body\" é\n"}]})
    rhash = identity.request_hash("openai", "/v1/chat/completions", json.loads(body))
    cid = identity.custom_id_for(rhash)
    con.execute(f"INSERT INTO {SCHEMA}.requests VALUES (?, ?, 'openai', "
                "'/v1/chat/completions', 'm', ?, 'j', 'r1', ?)", [rhash, cid, body, now_utc()])
    con.execute(f"INSERT INTO {SCHEMA}.batch_requests VALUES ('wbb_old_0000', ?, ?)",
                [rhash, cid])
    con.close()

    con = connect(db)
    try:
        assert con.execute(f"SELECT body, custom_id, body_text IS NOT NULL "
                           f"FROM {SCHEMA}.requests").fetchall() == [(body, cid, True)]
        assert con.execute(f"SELECT custom_id FROM {SCHEMA}.batch_requests").fetchall() \
            == [(cid,)]

        class Envelope:   # the OpenAI line shape, without building a provider
            def envelope(self, custom_id, b):
                return {"custom_id": custom_id, "method": "POST",
                        "url": "/v1/chat/completions", "body": b}

        path = write_payload(con, line_sql(Envelope(), "r.custom_id", "r.body"),
                             "wbb_old_0000", tmp_path)
        expected = identity.canonical_json(Envelope().envelope(cid, json.loads(body)))
        assert path.read_bytes() == (expected + "\n").encode("utf-8")
    finally:
        con.close()


def test_new_requests_are_numbered_and_stored_in_source_row_order(tmp_path, emulator):
    """A submit numbers its new requests (`seq`) in the order of their source rows and cuts
    batches in that order, so each batch is one contiguous range of numbers, stored together:
    writing a batch's payload then reads only its own part of the requests table (numbered
    in the grouping's hash order, every part held some of every batch)."""
    job = Job(tmp_path, emulator, rows=200)
    api.submit(job.path, job.options(batch_max_requests=50))
    rows = job.sql(f"""SELECT CAST(j.key_json ->> '$.id' AS INTEGER) AS id, r.seq, br.batch_id
        FROM {SCHEMA}.job_rows j JOIN {SCHEMA}.requests r USING (request_hash)
        JOIN {SCHEMA}.batch_requests br USING (request_hash) ORDER BY id""")
    assert len(rows) == 200
    seqs = [seq for _, seq, _ in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 200
    batches = [b for _, _, b in rows]
    assert batches == sorted(batches) and len(set(batches)) == 4
    # stored in that order too: the table's own order is the numbering's
    stored = [s for (s,) in job.sql(f"SELECT seq FROM {SCHEMA}.request_rows")]
    assert stored == sorted(stored)


def test_what_a_submit_shares_is_stored_once(tmp_path, emulator):
    """The values every request of one submit repeats (provider, endpoint, model, job, run,
    time, the body template's halves) are one row of request_sets, not one per request; a
    submit that stores no request adds none."""
    job = Job(tmp_path, emulator, rows=30)
    api.submit(job.path, job.options(batch_max_requests=10))
    job.sql("UPDATE reviews SET text = text || ' (edited)' WHERE id <= 5")
    api.submit(job.path, job.options(batch_max_requests=10))
    api.submit(job.path, job.options(batch_max_requests=10))   # nothing new to store
    sets = job.sql(f"SELECT set_id, provider, model, job_name, body_prefix IS NOT NULL "
                   f"FROM {SCHEMA}.request_sets ORDER BY set_id")
    assert sets == [(1, "openai", job.model, "enriched", True),
                    (2, "openai", job.model, "enriched", True)]
    assert job.sql(f"SELECT set_id, count(*) FROM {SCHEMA}.request_rows GROUP BY 1 "
                   "ORDER BY 1") == [(1, 30), (2, 5)]
    # the view shows each request with its set's values, its body rebuilt from them
    ((n, runs),) = job.sql(f"SELECT count(*), count(DISTINCT first_run_id) "
                           f"FROM {SCHEMA}.requests WHERE body LIKE '%(edited)%'")
    assert (n, runs) == (5, 1)
