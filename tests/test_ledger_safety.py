"""A ledger that cannot strand a job, and replies without an answer (issue 7, items 5 and 6).

Real DuckDB files, the real SDKs over HTTP to the emulator, time moved by the emulator's
manual clock (nothing sleeps).
"""
from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from helpers import Job, billed_counts, emulator_env, provider_calls
from warehouse_batch import api

MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _job(tmp_path, emulator, provider: str, **kw) -> Job:
    return Job(tmp_path, emulator, provider=provider, model=MODELS[provider], **kw)


def _ledger(job: Job, columns: str = "batch_id, provider, provider_batch_id, state, proven"):
    return job.sql(f"SELECT {columns} FROM warehouse_batch.batches ORDER BY created_at, batch_id")


def _each_billed_once(emulator, n: int) -> None:
    billed = billed_counts(emulator)
    assert len(billed) == n and set(billed.values()) == {1}, billed


def _forget(emulator, provider_batch_id: str) -> None:
    emulator.admin("POST", f"/_emulator/batches/{provider_batch_id}/forget")


# -- a batch the provider no longer knows --------------------------------------------------------

@pytest.mark.parametrize("state_db", [None, "state.duckdb"], ids=["state-in-warehouse",
                                                               "state-db"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_vanished_batch_is_lost_and_its_rows_are_sent_again(tmp_path, emulator, provider, state_db):
    job = _job(tmp_path, emulator, provider, state_db=state_db)
    api.submit(job.path, job.options())
    ((vanished,),) = job.sql("SELECT provider_batch_id FROM warehouse_batch.batches")
    _forget(emulator, vanished)

    report = job.run()

    assert report.rows.succeeded == 12 and report.exit_code == 0
    assert [b["provider_batch_id"] for b in report.collected.lost] == [vanished]
    assert any("unknown to" in w and "sent again" in w for w in report.collected.warnings)
    states = {pbid: state for _, _, pbid, state, _ in _ledger(job)}
    assert states[vanished] == "lost" and sorted(states.values()) == ["collected", "lost"]
    # nothing was recorded from the lost batch, and no attempt was spent on it
    assert job.sql("SELECT count(*) FROM warehouse_batch.attempts a JOIN "
                   "warehouse_batch.batches b USING (batch_id) WHERE b.state = 'lost'") == [(0,)]
    assert job.sql("SELECT max(attempts), max(failures) FROM warehouse_batch.results") == [(1, 0)]
    _each_billed_once(emulator, 12)
    if state_db:   # the ledger lived in the state file only
        con = duckdb.connect(job.db, read_only=True)
        assert con.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = "
                           "'warehouse_batch'").fetchone() == (0,)
        con.close()


def test_lost_batch_does_not_strand_cancel_status_reconcile_or_full_refresh(tmp_path,
                                                                            emulator):
    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    ((vanished,),) = job.sql("SELECT provider_batch_id FROM warehouse_batch.batches")
    _forget(emulator, vanished)

    status = api.status(job.path, job.options())
    assert [(b["provider_batch_id"], b["state"]) for b in status.batches] == [(vanished, "lost")]
    assert "unknown to openai" in status.batches[0]["error"] and status.warnings

    reconciled = api.reconcile(job.path, job.options())
    assert [b["provider_batch_id"] for b in reconciled.collected.lost] == [vanished]
    assert "unknown to openai" in reconciled.collected.lost[0]["reason"]

    # a fresh batch goes out, then vanishes too: cancel marks it lost instead of failing
    api.submit(job.path, job.options())
    (second,) = [p for _, _, p, s, _ in _ledger(job) if s == "submitted"]
    _forget(emulator, second)
    cancelled = api.cancel(job.path, job.options())
    assert cancelled.cancelled == [] and len(cancelled.lost) == 1 and cancelled.warnings

    report = api.run(job.path, job.options(full_refresh=True))
    assert report.submitted.requests_submitted == 12
    assert job.run().rows.succeeded == 12
    _each_billed_once(emulator, 12)


def test_cli_cancel_and_status_exit_cleanly_on_a_lost_batch(tmp_path, emulator):
    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    ((vanished,),) = job.sql("SELECT provider_batch_id FROM warehouse_batch.batches")
    _forget(emulator, vanished)
    env = emulator_env(emulator)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*EXE, *args, job.path, "--db", job.db], env=env,
                              capture_output=True, text=True, timeout=120)

    cancelled = cli("cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "unknown to openai" in cancelled.stderr and "lost" in cancelled.stderr
    status = cli("status")
    assert status.returncode == 75, status.stderr   # pending: the rows go again with `run`
    assert " lost " in status.stdout


# -- switching provider while batches run -------------------------------------------------------

def test_provider_switch_mid_flight_collects_old_batches_through_their_provider(tmp_path,
                                                                               emulator):
    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    ((old,),) = job.sql("SELECT provider_batch_id FROM warehouse_batch.batches")
    job.write(provider="anthropic", model=MODELS["anthropic"])

    report = job.run()

    assert report.rows.succeeded == 12
    ledger = {p: (prov, state) for _, prov, p, state, _ in _ledger(job)}
    assert ledger[old] == ("openai", "collected")
    assert sorted(ledger.values()) == [("anthropic", "collected"), ("openai", "collected")]
    # the openai batch was never asked about on the anthropic protocol (no 404 loop)
    assert not [c for c in provider_calls(emulator, "GET", "/v1/messages/batches")
                if old in c["path"]]
    assert [c["status"] for c in provider_calls(emulator, "GET", f"/v1/batches/{old}")] \
        and all(c["status"] == 200
                for c in provider_calls(emulator, "GET", f"/v1/batches/{old}"))
    # 12 openai answers (collected through openai) and 12 anthropic ones, each billed once
    _each_billed_once(emulator, 24)
    assert job.sql("SELECT count(*) FROM warehouse_batch.results r JOIN "
                   "warehouse_batch.requests q USING (request_hash) "
                   "WHERE q.provider = 'openai' AND r.status = 'succeeded'") == [(12,)]


# -- adopted batches are not trusted until proven ours ------------------------------------------

def test_two_jobs_sharing_a_key_never_adopt_or_cancel_each_others_batch(tmp_path, emulator):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    other = _job(b_dir, emulator, "anthropic", prompt="Other job, sentiment of: {{ text }}")
    mine = _job(a_dir, emulator, "anthropic")
    api.submit(other.path, other.options())
    ((theirs,),) = other.sql("SELECT provider_batch_id FROM warehouse_batch.batches")

    # our create fails ambiguously (503, before anything exists): the lookup by shape finds
    # the other job's running batch, with the same number of requests
    emulator.admin("POST", "/_emulator/faults", {"method": "POST", "path": "/v1/messages/batches",
                                                 "status": 503})
    api.submit(mine.path, mine.options())
    assert [(p, s, proven) for _, _, p, s, proven in _ledger(mine)] == \
        [(theirs, "submitted", False)]

    # our cancel never cancels an unproven batch
    cancelled = api.cancel(mine.path, mine.options())
    assert cancelled.cancelled == [] and cancelled.not_cancelled == [theirs]
    assert not provider_calls(emulator, "POST", f"/v1/messages/batches/{theirs}/cancel")

    # when it ends, its custom_ids prove it foreign: released, our batch created after all
    report = mine.run()
    assert report.rows.succeeded == 12 and report.collected.batches_released == 1
    assert any("is not ours" in w for w in report.collected.warnings)
    assert mine.sql("SELECT provider_batch_id FROM warehouse_batch.foreign_batches") == \
        [(theirs,)]
    ((ours, state, proven),) = mine.sql("SELECT provider_batch_id, state, proven "
                                        "FROM warehouse_batch.batches")
    assert ours != theirs and state == "collected" and proven is None
    assert mine.sql("SELECT count(*) FROM warehouse_batch.results WHERE provider_batch_id = ?",
                    [theirs]) == [(0,)]
    assert mine.sql("SELECT count(*) FROM warehouse_batch.attempts a JOIN "
                    "warehouse_batch.results r USING (request_hash) "
                    "WHERE r.provider_batch_id = ?", [theirs]) == [(0,)]
    # the other job collects its own batch, untouched
    assert other.run().rows.succeeded == 12
    assert other.sql("SELECT provider_batch_id, state FROM warehouse_batch.batches") == \
        [(theirs, "collected")]
    _each_billed_once(emulator, 24)


def test_an_unproven_candidate_with_our_requests_is_proven_and_collected(tmp_path, emulator):
    """The create happened but its response was lost: the running candidate is ours."""
    emulator.admin("POST", "/_emulator/config", {"create_fault": "error_after_create",
                                                 "create_fault_count": 1})
    job = _job(tmp_path, emulator, "anthropic")
    api.submit(job.path, job.options())
    assert [s[3:] for s in _ledger(job)] == [("submitted", False)]
    report = job.run()
    assert report.rows.succeeded == 12 and report.collected.batches_released == 0
    assert [s[3:] for s in _ledger(job)] == [("collected", True)]
    assert job.batches_created() == 1
    _each_billed_once(emulator, 12)


def test_openai_lookup_skips_known_batches_and_tags_of_another_run(tmp_path, emulator):
    from warehouse_batch.providers.base import LedgerBatch

    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    row = job.sql("SELECT * FROM warehouse_batch.batches")
    names = [d[0] for d in duckdb.connect(job.db).execute(
        "SELECT * FROM warehouse_batch.batches").description]
    batch = LedgerBatch.from_row(dict(zip(names, row[0])))
    provider = job.provider()
    assert provider.find_batch(batch).provider_batch_id == batch.provider_batch_id
    assert provider.find_batch(batch, known=frozenset({batch.provider_batch_id})) is None
    impostor = LedgerBatch(**{**batch.__dict__, "run_id": "r20000101T000000_000000"})
    assert provider.find_batch(impostor) is None


# -- a damaged ledger cannot cause a second paid batch ------------------------------------------

@pytest.mark.parametrize("state_db", [None, "state.duckdb"], ids=["state-in-warehouse",
                                                               "state-db"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_deleted_ledger_row_does_not_cause_a_second_paid_batch(tmp_path, emulator, provider, state_db):
    job = _job(tmp_path, emulator, provider, state_db=state_db)
    api.submit(job.path, job.options())
    ((batch_id, pbid),) = job.sql("SELECT batch_id, provider_batch_id "
                                  "FROM warehouse_batch.batches")
    job.sql("DELETE FROM warehouse_batch.batches")

    plan = api.plan(job.path, job.options())
    assert plan.rows_in_flight == 12 and plan.requests_to_send == 0

    report = job.run()

    assert report.rows.succeeded == 12
    assert job.batches_created() == 1
    assert any("rebuilt" in w for w in report.submitted.warnings)
    ((rebuilt_id, rebuilt_pbid, state),) = job.sql(
        "SELECT batch_id, provider_batch_id, state FROM warehouse_batch.batches")
    assert (rebuilt_id, rebuilt_pbid, state) == (batch_id, pbid, "collected")
    _each_billed_once(emulator, 12)


def test_orphaned_requests_with_no_batch_anywhere_are_sent_again(tmp_path, emulator):
    """Intent written, then the process died before uploading, and the ledger row was lost:
    no provider batch carries the tag, so the requests go (once)."""
    job = _job(tmp_path, emulator, "openai")
    env = emulator_env(emulator, WAREHOUSE_BATCH_CRASH_AT="after_intent")
    crashed = subprocess.run([*EXE, "submit", job.path, "--db", job.db], env=env,
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode != 0
    job.sql("DELETE FROM warehouse_batch.batches")
    report = job.run()
    assert report.rows.succeeded == 12 and job.batches_created() == 1
    assert [s for _, _, _, s, _ in _ledger(job)] == ["lost", "collected"]
    _each_billed_once(emulator, 12)


# -- item 6: no answer is a failure with a reason -----------------------------------------------

@pytest.mark.parametrize("provider, reasons", [
    ("openai", {1: "no answer: HTTP 200 but the body has no choices",
                2: "neither a response nor an error"}),
    ("anthropic", {1: "no answer: the message has no text content",
                   2: "no answer: the result line has no result"}),
    ("gemini", {1: "no answer: the candidate has no text",
                2: "no answer: the result line has neither a response nor an error"}),
])
def test_a_reply_without_an_answer_fails_retryably_with_a_reason(tmp_path, emulator, provider,
                                                                 reasons):
    job = _job(tmp_path, emulator, provider)
    job.sql("UPDATE reviews SET text = text || ' [[emu:noanswer]]' WHERE id = 1")
    job.sql("UPDATE reviews SET text = text || ' [[emu:noresult]]' WHERE id = 2")

    report = job.run()

    assert report.rows.succeeded == 10 and report.rows.failed == 2 and report.exit_code == 4
    rows = {r[0]: r[1:] for r in job.sql(
        "SELECT id, _status, _error, _attempts, response FROM enriched WHERE id IN (1, 2)")}
    for key, reason in reasons.items():
        status, error, attempts, response = rows[key]
        assert status == "failed" and reason in error and response is None
        assert attempts == 3   # retried up to max_attempts, each send a retryable failure
    assert job.sql("SELECT DISTINCT error_type, retryable FROM warehouse_batch.results "
                   "WHERE status = 'failed'") == [("no_answer", True)]


def test_openai_batch_whose_ledger_rows_are_all_gone_is_found_by_its_tags(tmp_path, emulator):
    """Both the batches row and its batch_requests deleted: the provider's tags (batch id,
    job, run, chunk) and the input file rebuild them before any new create."""
    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    ((batch_id, pbid),) = job.sql("SELECT batch_id, provider_batch_id "
                                  "FROM warehouse_batch.batches")
    job.sql("DELETE FROM warehouse_batch.batch_requests")
    job.sql("DELETE FROM warehouse_batch.batches")

    report = job.run()

    assert report.rows.succeeded == 12 and job.batches_created() == 1
    assert any("rebuilt from the tags" in w for w in report.submitted.warnings)
    assert job.sql("SELECT batch_id, provider_batch_id, state FROM warehouse_batch.batches") \
        == [(batch_id, pbid, "collected")]
    _each_billed_once(emulator, 12)


def test_damaged_ledger_row_is_looked_up_not_created_again(tmp_path, emulator):
    """A `submitted` row that lost its provider batch id is looked up by its tag."""
    job = _job(tmp_path, emulator, "openai")
    api.submit(job.path, job.options())
    ((pbid,),) = job.sql("SELECT provider_batch_id FROM warehouse_batch.batches")
    job.sql("UPDATE warehouse_batch.batches SET provider_batch_id = NULL")
    report = job.run()
    assert report.rows.succeeded == 12 and job.batches_created() == 1
    assert job.sql("SELECT provider_batch_id, state FROM warehouse_batch.batches") == \
        [(pbid, "collected")]
    _each_billed_once(emulator, 12)


def test_a_batch_collected_before_its_row_was_deleted_is_not_collected_again(tmp_path,
                                                                            emulator):
    job = _job(tmp_path, emulator, "openai")
    job.sql("UPDATE reviews SET text = text || ' [[emu:error500]]' WHERE id = 1")
    job.run(wait=True, max_attempts=1)
    job.sql("DELETE FROM warehouse_batch.batches")
    report = job.run(max_attempts=2)
    # 1 failure from the first run + 2 sends of this one (attempts are a per-command budget);
    # collecting the first batch again would make it 4
    assert report.exit_code == 4 and job.sql(
        "SELECT failures FROM warehouse_batch.results WHERE status = 'failed'") == [(3,)]
    assert sorted(s for _, _, _, s, _ in _ledger(job)) == ["collected"] * 3
