"""Azure OpenAI api-version 2024-10-21 listings (issue 8, item 8; field-facts.md):
`GET /openai/files` takes only `purpose` and answers `{data, object}` (no `has_more`, `after`
ignored), so the openai SDK's cursor page asks for the same page for ever; the order of
`GET /openai/batches` is undocumented (the emulator lists Azure batches oldest first). The
lookups of lost uploads and lost creates must end and must not stop early on age.

Every lookup runs under a page counter (`page_budget`): code that pages for ever fails the
test instead of hanging it."""
from __future__ import annotations

import datetime as dt
import io
import itertools
import json

import openai
import pytest
from openai.pagination import SyncCursorPage

from warehouse_batch.providers.base import LedgerBatch
from warehouse_batch.providers.openai import Listing

import helpers
from helpers import billed_counts, creates

DEPLOYMENT = "gpt-4o-mini-batch"
LINE = {"custom_id": "a", "method": "POST", "url": "/chat/completions",
        "body": {"model": DEPLOYMENT, "messages": [{"role": "user", "content": "hi"}]}}


class TooManyPages(AssertionError):
    pass


@pytest.fixture
def page_budget(monkeypatch):
    """Fail (rather than hang) when anything fetches more than 50 next pages."""
    fetched = {"pages": 0}
    real = SyncCursorPage.get_next_page

    def counted(self):
        fetched["pages"] += 1
        if fetched["pages"] > 50:
            raise TooManyPages("paged more than 50 times: the listing never ends")
        return real(self)

    monkeypatch.setattr(SyncCursorPage, "get_next_page", counted)
    return fetched


def azure_client(emu) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version="2024-10-21",
                              api_key="k")


def upload(client, name: str) -> str:
    data = (json.dumps(LINE) + "\n").encode()
    return client.files.create(file=(name, io.BytesIO(data), "application/jsonl"),
                               purpose="batch").id


class Job(helpers.Job):
    def __init__(self, tmp_path, emu, **kw):
        kw.setdefault("provider", "azure_openai")
        kw.setdefault("model", DEPLOYMENT)
        kw.setdefault("AZURE_OPENAI_API_KEY", "k")
        kw.setdefault("AZURE_OPENAI_ENDPOINT", emu.azure_endpoint)
        super().__init__(tmp_path, emu, **kw)


def ledger_batch(emu, batch_id: str) -> LedgerBatch:
    now = emu.admin("GET", "/_emulator/clock")["now"]
    return LedgerBatch(batch_id=batch_id, run_id="r1", job_name="enriched",
                       endpoint="/chat/completions", model=DEPLOYMENT, chunk=0,
                       state="creating", request_count=1, bytes=1,
                       created_at=dt.datetime.fromtimestamp(now, dt.timezone.utc))


# -- the listing shape, and why the SDK alone never stops ------------------------------------

def test_the_ga_file_listing_has_no_has_more_and_ignores_after(emulator, page_budget):
    client = azure_client(emulator)
    ids = [upload(client, f"f{i}.jsonl") for i in range(3)]
    raw = client.files.with_raw_response.list(purpose="batch").http_response.json()
    assert set(raw) == {"data", "object"} and [f["id"] for f in raw["data"]] == ids
    # the SDK keeps asking with after=<last id> and gets the same page: it would never stop
    pages = list(itertools.islice(client.files.list(purpose="batch").iter_pages(), 5))
    assert len(pages) == 5 and all([f.id for f in p.data] == ids for p in pages)


def test_listing_stops_on_the_repeated_cursor(emulator, page_budget):
    client = azure_client(emulator)
    ids = [upload(client, f"f{i}.jsonl") for i in range(3)]
    listing = Listing(client.files.list(purpose="batch"))
    assert [f.id for f in listing] == ids
    assert listing.complete and listing.pages == 2 and page_budget["pages"] == 1


class EndlessPage:
    """A server that always has one more new page."""

    def __init__(self, n: int = 0):
        self.n = n
        self.data = [type("Item", (), {"id": f"item{n}"})()]

    def has_next_page(self) -> bool:
        return True

    def get_next_page(self) -> "EndlessPage":
        return EndlessPage(self.n + 1)


def test_listing_stops_at_the_page_cap():
    listing = Listing(EndlessPage(), max_pages=7)
    assert len(list(listing)) == 7 and listing.pages == 7 and not listing.complete


# -- lookups through the provider ------------------------------------------------------------

def test_find_upload_ends_and_does_not_stop_on_age(tmp_path, emulator, page_budget):
    job = Job(tmp_path, emulator)
    provider = job.provider()
    client = azure_client(emulator)
    upload(client, "someone-elses-old-file.jsonl")     # listed first (oldest first)
    emulator.advance(3 * 3600)
    mine = upload(client, "wb-123.jsonl")
    assert provider.find_upload(ledger_batch(emulator, "wb-123")) == mine
    assert provider.find_upload(ledger_batch(emulator, "wb-absent")) is None   # and it ends


def test_find_batch_scans_an_oldest_first_list(tmp_path, emulator, page_budget):
    job = Job(tmp_path, emulator)
    provider = job.provider()
    client = azure_client(emulator)
    old = client.batches.create(input_file_id=upload(client, "old.jsonl"),
                                endpoint="/chat/completions", completion_window="24h")
    emulator.advance(3 * 3600)
    ours = client.batches.create(input_file_id=upload(client, "wb-9.jsonl"),
                                 endpoint="/chat/completions", completion_window="24h",
                                 metadata={"warehouse_batch": "wb-9"})
    assert [b.id for b in client.batches.list()] == [old.id, ours.id]   # oldest first
    found = provider.find_batch(ledger_batch(emulator, "wb-9"))
    assert found is not None and found.provider_batch_id == ours.id
    assert provider.find_batch(ledger_batch(emulator, "wb-absent")) is None


def test_lost_create_on_azure_is_found_behind_older_batches(tmp_path, emulator, page_budget):
    """End to end: an older batch is listed first; the create whose response is dropped is
    still found, so it is not created (and paid) twice."""
    import time

    # the ledger dates intents by the wall clock: put the other job's batch 3 days before it
    emulator.admin("POST", "/_emulator/clock", {"set": time.time() - 3 * 86400})
    (tmp_path / "a").mkdir()
    first = Job(tmp_path / "a", emulator)
    assert first.run().rows.succeeded == 12
    emulator.admin("POST", "/_emulator/clock", {"set": time.time()})
    emulator.admin("POST", "/_emulator/config", {"create_fault": "drop_after_create",
                                                 "create_fault_count": 1})
    (tmp_path / "b").mkdir()
    job = Job(tmp_path / "b", emulator)
    assert job.run().rows.succeeded == 12
    # one create per job (the dropped one was found, not repeated); the two jobs' identical
    # rows are billed once each
    assert len(creates(emulator)) == 2 and sum(billed_counts(emulator).values()) == 24
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches") == [(1,)]
