"""OpenAI Batch API (Files + Batches) over the official `openai` SDK.

Also the base for every OpenAI-shaped service (Azure OpenAI, OpenAI-compatible endpoints):
they differ in how the client is built and in a few flags, not in the flow.
Protocol facts: ../shared/reference/batch-apis.md §1 and
https://developers.openai.com/api/docs/guides/batch
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator
from urllib.parse import quote

import duckdb

from ..errors import (AmbiguousCreateError, JobFileError, LookupUndecidedError,
                      ProviderError)
from ..identity import sql_literal
from ..keys import redact
from .. import params
from ..schema import openai_strict
from .base import (LedgerBatch, LightPoll, Limits, Provider, RemoteBatch, SyncAnswer,
                   TaggedBatch, error_info, register, retry_after_seconds, sdk_url,
                   status_error, unreachable_error)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
IN_PROGRESS = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
DEFAULT_BASE_URL = "https://api.openai.com/v1"   # the SDK's, when no base URL is set
# Headers the SDK adds from its own environment (openai.OpenAI reads os.environ for them)
SDK_ENV_HEADERS = (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID"))
CAPACITY_CODES = {"token_limit_exceeded"}
METADATA_TAG = "warehouse_batch"   # metadata key holding our batch_id: how lost creates are found
FIND_WINDOW_SECONDS = 3600         # look this far before the intent for clock skew
TAG_SCAN_SECONDS = 3 * 86400       # a live batch is younger (24h window + finalizing + skew)
MAX_LIST_PAGES = 200   # a listing never asks for more pages than this (see `Listing`)
# the longest input line read back (one request: a prompt of at most 4M characters, escaped)
INPUT_LINE_MAX_BYTES = 64 << 20
# Default vector sizes: https://platform.openai.com/docs/guides/embeddings
EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                        "text-embedding-ada-002": 1536}


def translate_error(exc: Exception, action: str) -> ProviderError:
    """An SDK exception as a ProviderError that says whether retrying can help."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        info = error_info(exc, type=getattr(exc, "type", None), code=getattr(exc, "code", None))
        return status_error(action, exc.status_code, getattr(exc, "message", str(exc)), info)
    if isinstance(exc, openai.APIConnectionError):
        return unreachable_error(action, getattr(getattr(exc, "request", None), "url", None),
                                 exc)
    return ProviderError(redact(f"{action}: {exc}"), retryable=False)


class Listing:
    """The items of an SDK cursor-paged listing, fetched page by page, that always ends.

    The SDK asks for the next page (`after=<last id>`) unless a page says `has_more: false`.
    A server that omits `has_more` and ignores `after` (Azure's GET /openai/files at
    api-version 2024-10-21 returns `{data, object}` only: field-facts.md) sends the same page
    again for ever. So: stop when a cursor repeats (the server has shown everything: the
    listing is `complete`), and never fetch more than `max_pages` pages (then `complete` stays
    False: the caller must not conclude "absent"). Items already seen are not yielded twice.
    """

    def __init__(self, first_page: Any, max_pages: int = MAX_LIST_PAGES) -> None:
        self.first_page = first_page
        self.max_pages = max_pages
        self.pages = 0
        self.complete = False

    def __iter__(self) -> Iterator[Any]:
        page, cursors, ids = self.first_page, set(), set()
        while True:
            self.pages += 1
            items = list(page.data or [])
            for item in items:
                if item.id not in ids:
                    ids.add(item.id)
                    yield item
            if not items or not page.has_next_page() or items[-1].id in cursors:
                self.complete = True
                return
            cursors.add(items[-1].id)
            if self.pages >= self.max_pages:
                return
            page = page.get_next_page()


@register
class OpenAIProvider(Provider):
    """api.openai.com, or any server speaking its Files + Batches protocol."""

    name: ClassVar[str] = "openai"
    limits: ClassVar[Limits] = Limits(max_requests=50_000, max_bytes=200_000_000)  # 200 MB, decimal
    supports_embeddings: ClassVar[bool] = True
    results_sql: ClassVar[str] = "openai_results.sql"
    result_records: ClassVar[dict[str, str] | None] = {
        "custom_id": "VARCHAR",
        "response": "STRUCT(status_code INTEGER, body JSON)",
        "error": "STRUCT(code VARCHAR, message VARCHAR)"}
    option_keys: ClassVar[frozenset[str]] = frozenset({"base_url"})
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    line_url_prefix: ClassVar[str] = "/v1"
    empty_error_file_on_success: ClassVar[bool] = False
    # OpenAI documents newest-first listings, so a lookup may stop at the first item older
    # than it looks for; Azure's order is undocumented (a preview shows oldest first).
    newest_first: ClassVar[bool] = True

    sdk_modules = ("openai", "httpx")
    translate = staticmethod(translate_error)

    # -- requests ----------------------------------------------------------------------------
    def endpoint_path(self) -> str:
        return "/v1/embeddings" if self.spec.endpoint == "embeddings" else "/v1/chat/completions"

    def line_url(self) -> str:
        return self.line_url_prefix + self.endpoint_path().removeprefix("/v1")

    def build_body(self, system: str | None, prompt: str) -> dict:
        s = self.spec
        if s.endpoint == "embeddings":
            body = {"model": s.model, "input": prompt}
            body.update({k: v for k, v in s.generation.items() if k == "dimensions"})
        else:
            messages = [{"role": "system", "content": system}] if system is not None else []
            messages.append({"role": "user", "content": prompt})
            body = {"model": s.model, "messages": messages}
            body.update({k: v for k, v in s.generation.items() if k != "dimensions"})
            if s.output_schema is not None:
                # Structured Outputs: https://platform.openai.com/docs/guides/structured-outputs
                # in strict mode's form; collect checks answers against the user's schema.
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "answer", "schema": self.sent_schema(), "strict": True}}
        body.update(s.params)
        # e.g. max_tokens as max_completion_tokens for reasoning models (data/params.json)
        return params.renamed(self.name, s.model, body)

    def sent_schema(self) -> dict | None:
        """Strict mode's form of the output schema (`schema.openai_strict`)."""
        s = self.spec.output_schema
        return None if s is None else openai_strict(s)

    def validate(self) -> None:
        super().validate()
        s = self.spec
        params.check(s, self.name)   # accepted keys and model families: data/params.json
        if s.output_schema is not None and "response_format" in s.generation:
            raise JobFileError("response_format is set by columns/output_schema; remove it",
                               s.location_of("response_format"))
        if s.endpoint == "embeddings" and self.embedding_dimensions() is None:
            raise JobFileError(f"unknown vector size for model {s.model!r}: set dimensions=N",
                               s.location_of("model"))

    def embedding_dimensions(self) -> int | None:
        """The vector size an embeddings job gets: `dimensions`, else the model's default."""
        return self.spec.generation.get("dimensions") or EMBEDDING_DIMENSIONS.get(self.spec.model)

    def envelope(self, custom_id: str, body: Any) -> dict:
        return {"custom_id": custom_id, "method": "POST", "url": self.line_url(), "body": body}

    # -- client ------------------------------------------------------------------------------
    def base_url(self) -> str | None:
        """The job's `base_url` if the operator allows its host (else refused), or the
        operator's own variable (OPENAI_BASE_URL), or None: the SDK's default host."""
        return self.job_base_url() or self.env.get(self.base_url_env) or None

    def make_client(self) -> Any:
        import openai

        key = self.require_env(*self.api_key_env)
        return openai.OpenAI(api_key=key, base_url=self.base_url(), max_retries=2)

    # -- lifecycle -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._call("checking the provider", lambda: self.client.with_options(max_retries=1)
                   .batches.list(limit=1))

    def find_upload(self, batch: LedgerBatch) -> str | None:
        since = _epoch(batch.created_at) - FIND_WINDOW_SECONDS
        name = _filename(batch)

        def scan():
            kwargs = {"order": "desc", "limit": 1000} if self.newest_first else {}
            for f in Listing(self.client.files.list(purpose="batch", **kwargs)):
                if f.filename == name:
                    return f.id
                if self.newest_first and f.created_at and f.created_at < since:
                    return None
            return None   # not seen (or past the page cap): uploading again costs a file

        return self._call("looking for an earlier upload", scan)

    def upload(self, batch: LedgerBatch, payload: Path) -> str | None:
        with open(payload, "rb") as fh:
            f = self._call("uploading the batch file", self.client.files.create,
                           file=(_filename(batch), fh, "application/jsonl"), purpose="batch")
        return f.id

    def create(self, batch: LedgerBatch, payload: Path) -> RemoteBatch:
        import openai

        # SDK retries are off here: a retried POST can create a second, paid batch
        # (neither SDK sends an idempotency key, batch-apis.md §0.1). We retry ourselves,
        # after looking the batch up by its metadata tag.
        client = self.client.with_options(max_retries=0)
        try:
            b = client.batches.create(
                input_file_id=batch.input_file_id, endpoint=self.line_url(),
                completion_window="24h", metadata=self.metadata(batch))
        except (openai.APIConnectionError, openai.InternalServerError) as e:
            raise AmbiguousCreateError(redact(
                f"creating batch {batch.batch_id}: the provider may or may not have created it "
                f"({e})")) from None
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code == 408:
                raise AmbiguousCreateError(f"creating batch {batch.batch_id}: HTTP "
                                           f"{e.status_code}") from None
            raise translate_error(e, f"creating batch {batch.batch_id}") from None
        return self._remote(b)

    def metadata(self, batch: LedgerBatch) -> dict[str, str]:
        return {METADATA_TAG: batch.batch_id, "wb_job": batch.job_name[:512],
                "wb_run": batch.run_id, "wb_chunk": str(batch.chunk)}

    def find_batch(self, batch: LedgerBatch, payload: Path | None = None,
                   known: frozenset[str] = frozenset()) -> RemoteBatch | None:
        """The batch tagged with our batch id, or None when the listing proves it absent.
        Newest-first listings stop at the first batch older than the intent; others are
        scanned whole (to the page cap: past it the lookup is undecided, never "absent",
        since creating again could pay twice)."""
        since = _epoch(batch.created_at) - FIND_WINDOW_SECONDS

        def scan():
            listing = Listing(self.client.batches.list(limit=100))
            for b in listing:
                if b.id not in known and _tagged_for(b.metadata or {}, batch):
                    return self._remote(b)   # proven: batch ids are random per run
                if self.newest_first and b.created_at and b.created_at < since:
                    return None
            if not listing.complete:
                raise LookupUndecidedError(
                    f"looking for batch {batch.batch_id}: the provider's batch list goes on "
                    f"past {listing.pages} pages without it; not creating it again (that "
                    "could pay twice): it is looked up again on the next run")
            return None

        return self._call("looking for a batch whose create response was lost", scan)

    def tagged_batches(self, job_name: str, known: frozenset[str],
                       owned: frozenset[str]) -> list[TaggedBatch]:
        """Our tags name the batch id, job, run and chunk; the input file holds the
        custom_ids. Only live batches: an ended one holds no further risk of paying twice."""
        horizon = time.time() - TAG_SCAN_SECONDS

        def scan() -> list[TaggedBatch]:
            found = []
            for b in Listing(self.client.batches.list(limit=100)):
                if b.created_at and b.created_at < horizon:
                    if self.newest_first:
                        break
                    continue
                tags = b.metadata or {}
                if (b.id in known or b.status in TERMINAL or tags.get(METADATA_TAG) in owned
                        or not tags.get(METADATA_TAG) or tags.get("wb_job") != job_name[:512]
                        or not str(tags.get("wb_chunk", "")).isdigit()
                        or not tags.get("wb_run") or not b.input_file_id):
                    continue
                ids = self._input_custom_ids(b.input_file_id)
                found.append(TaggedBatch(self._remote(b), tags[METADATA_TAG], tags["wb_run"],
                                         int(tags["wb_chunk"]), ids))
            return found

        return self._call("looking for this job's batches by their tags", scan)

    def _input_custom_ids(self, file_id: str) -> list[str]:
        """The custom_ids of an uploaded input file, in file order. The file is streamed to a
        temporary copy and only its `custom_id` fields are read, by DuckDB: json.loads of
        every line in Python cost ~27 CPU s per million requests (and the whole file was
        held in memory)."""
        with tempfile.TemporaryDirectory(prefix="warehouse-batch-") as tmp:
            path = Path(tmp) / "input.jsonl"
            with self.client.files.with_streaming_response.content(file_id) as response, \
                    open(path, "wb") as fh:
                for chunk in response.http_response.iter_bytes():
                    fh.write(chunk)
            con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                         "memory_limit": "512MB", "threads": 1})
            try:
                rows = con.execute(f"""SELECT custom_id FROM read_json({sql_literal(str(path))},
                        format='newline_delimited', columns={{'custom_id': 'VARCHAR'}},
                        maximum_object_size={INPUT_LINE_MAX_BYTES})
                    WHERE custom_id IS NOT NULL""").fetchall()
            finally:
                con.close()
        return [r[0] for r in rows]

    def retrieve(self, batch: LedgerBatch) -> RemoteBatch:
        b = self._call(f"polling batch {batch.provider_batch_id}", self.client.batches.retrieve,
                       batch.provider_batch_id)
        return self._remote(b)

    def light_poll(self, batch: LedgerBatch) -> LightPoll | None:
        """GET {base}/batches/{id} with the SDK's headers: `Authorization: Bearer`, and
        `OpenAI-Organization` / `OpenAI-Project` when OPENAI_ORG_ID / OPENAI_PROJECT_ID are
        set (the SDK reads them from the process environment)."""
        key = self.require_env(*self.api_key_env)
        url = sdk_url(self.sdk_base_url(), self.batch_path(batch))
        if url is None:
            return None
        return LightPoll(url=url, headers={**self.sdk_env_headers(),
                                           "Authorization": f"Bearer {key}"},
                         status_field="status", in_progress=IN_PROGRESS)

    def sdk_base_url(self) -> str:
        """The base URL the SDK client ends up with: ours, else the SDK's own default
        (which reads OPENAI_BASE_URL from the process environment)."""
        return self.base_url() or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def batch_path(self, batch: LedgerBatch) -> str:
        return "batches/" + quote(batch.provider_batch_id or "", safe="")

    @staticmethod
    def sdk_env_headers() -> dict[str, str]:
        return {header: os.environ[var] for header, var in SDK_ENV_HEADERS
                if os.environ.get(var) is not None}

    def download_results(self, batch: LedgerBatch, remote: RemoteBatch,
                         dest: Path) -> list[Path]:
        paths = []
        for kind, fid in (("output", remote.output_file_id), ("error", remote.error_file_id)):
            if not fid:   # null and "" mean "no file" (Azure sends "", batch-apis.md §0.5)
                continue
            path = dest / f"{batch.batch_id}.{kind}.jsonl"

            def fetch(fid: str = fid, path: Path = path) -> None:
                # streamed to disk as the bytes arrive: a result file can be GBs, never held
                # whole. The chunks are written as httpx decodes them: re-cutting them to a
                # fixed size (the SDK's stream_to_file) copies every byte once more, ~0.3 CPU s
                # per GB.
                with self.client.files.with_streaming_response.content(fid) as response, \
                        open(path, "wb") as fh:
                    for chunk in response.http_response.iter_bytes():
                        fh.write(chunk)

            self._call(f"downloading the {kind} file of {remote.provider_batch_id}", fetch)
            paths.append(path)
        return paths

    def cancel(self, batch: LedgerBatch) -> RemoteBatch:
        b = self._call(f"cancelling batch {batch.provider_batch_id}",
                       self.client.batches.cancel, batch.provider_batch_id)
        return self._remote(b)

    def cleanup(self, batch: LedgerBatch, remote: RemoteBatch | None) -> None:
        import openai

        ids = {batch.input_file_id}
        if remote is not None:
            ids |= {remote.output_file_id, remote.error_file_id}
        for fid in sorted(i for i in ids if i):
            try:
                self.client.files.delete(fid)
            except openai.NotFoundError:
                pass

    # -- the real-time path ----------------------------------------------------------------
    def call_sync(self, body: str) -> SyncAnswer:
        """POST the body to the synchronous endpoint its batch lines name (`/chat/completions`,
        `/embeddings`; Azure: under the deployment named by `model`, as its SDK routes it),
        through the SDK with its retries off: `realtime` honours `retry-after` itself."""
        import httpx2
        import openai

        client = self.client.with_options(max_retries=0)
        path = self.endpoint_path().removeprefix("/v1")
        try:
            response = client.post(path, body=json.loads(body), cast_to=httpx2.Response)
        except openai.APIStatusError as e:
            if e.status_code == 401:
                raise translate_error(e, "calling the real-time API") from None
            return SyncAnswer(e.status_code, response_json(e.response),
                              getattr(e, "request_id", None),
                              retry_after_seconds(e.response.headers))
        except openai.APIConnectionError as e:
            raise translate_error(e, "calling the real-time API") from None
        return SyncAnswer(response.status_code, response_json(response),
                          response.headers.get("x-request-id"))

    def sync_line(self, custom_id: str, answer: SyncAnswer) -> dict:
        """A batch output/error file line: `response.status_code` and the body as sent back
        (an error body as `{"error": {...}}`)."""
        body = answer.body
        if not isinstance(body, dict):
            body = {"error": {"message": str(body)[:2000] or f"HTTP {answer.status}",
                              "type": "server_error" if answer.status >= 500 else None}}
        return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
                "response": {"status_code": answer.status, "request_id": answer.request_id,
                             "body": body}, "error": None}

    def _remote(self, b: Any) -> RemoteBatch:
        counts = b.request_counts.model_dump() if b.request_counts is not None else {}
        error = None
        if b.errors is not None and b.errors.data:
            error = "; ".join(
                f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                for e in b.errors.data)
        # An enqueued-token limit fails the whole batch at validation; it passes once other
        # batches finish (openai/openai-python#2084), so it is capacity, not a bad request.
        capacity = b.status == "failed" and b.errors is not None and any(
            e.code in CAPACITY_CODES for e in (b.errors.data or []))
        return RemoteBatch(
            provider_batch_id=b.id, status=b.status, ended=b.status in TERMINAL, counts=counts,
            output_file_id=b.output_file_id or None, error_file_id=b.error_file_id or None,
            error=error, created_at=b.created_at, raw=b.model_dump(), requeue=capacity)


def response_json(response: Any) -> Any:
    """An HTTP answer's body: its JSON, else its text (a proxy's HTML error page)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def _tagged_for(metadata: dict, batch: LedgerBatch) -> bool:
    """Whether a provider batch's tags say it is `batch`: our batch id, and (when present)
    the same job, run and chunk, so a tag copied onto another batch is not enough."""
    if metadata.get(METADATA_TAG) != batch.batch_id:
        return False
    expected = {"wb_job": batch.job_name[:512], "wb_run": batch.run_id,
                "wb_chunk": str(batch.chunk)}
    return all(metadata.get(k) in (None, v) for k, v in expected.items())


def _filename(batch: LedgerBatch) -> str:
    return f"{batch.batch_id}.jsonl"


def _epoch(ts: Any) -> float:
    if isinstance(ts, dt.datetime):
        return ts.replace(tzinfo=dt.timezone.utc).timestamp() if ts.tzinfo is None \
            else ts.timestamp()
    return float(ts or 0)
