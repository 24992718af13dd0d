"""Anthropic Message Batches over the official `anthropic` SDK.

Protocol facts: ../shared/reference/batch-apis.md §2 and
https://platform.claude.com/docs/en/build-with-claude/batch-processing

How this provider differs from OpenAI's:

* **Inline requests.** There is no file upload: `create` reads the batch's payload (one
  `{"custom_id", "params"}` line per request, exactly `envelope()`) and sends the list in the
  body of `POST /v1/messages/batches`. `upload` is a no-op.
* **Results** are one JSONL stream per batch (`results_url`), one line per request, in any
  order, typed `succeeded | errored | canceled | expired` (§2.6). `sql/anthropic_results.sql`
  maps them to our result columns.
* **API version.** SDK 2.x sends `anthropic-version: 2026-10-21`, under which `temperature`,
  `top_p` and `top_k` are refused (§0.2). A job that sets them must pin
  `anthropic_version='2023-06-01'`; `validate` refuses it otherwise, at plan time.
* **Prompt caching.** `cache_system_prompt=True` marks the system prompt with a 1-hour
  `cache_control` (batches outlive the 5-minute default, §2.9).
* **Cleanup does nothing.** A batch leaves nothing of ours behind but itself; its results
  are archived by Anthropic 29 days after creation (§2.10). Deleting it would gain nothing and
  would throw away the only copy of the raw answers should the DuckDB file be lost.

**Lost create responses.** A Message Batch carries no metadata we could tag it with, so a
batch whose create response was lost (timeout, 5xx, dropped connection) is found by its
shape instead. `find_batch` lists batches newest first and keeps the candidates that

1. were created at or after the ledger's intent time minus `FIND_SKEW_SECONDS` (clock skew),
2. are not already owned by the ledger (`known`), and
3. hold exactly the batch's number of requests (the sum of `request_counts`).

A candidate that has **ended** is confirmed by reading its results: its custom_ids must be
exactly the payload's. A candidate still **in progress** (whose requests cannot be read yet)
is adopted only if it is the one candidate left once ended non-matches are ruled out; with
two or more, none is adopted. Without a payload (e.g. from `cancel`) nothing can be confirmed,
so the same "exactly one candidate" rule applies to ended candidates too.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Iterator
from urllib.parse import quote, urlsplit

from ..errors import (AmbiguousCreateError, ConfigurationError, JobFileError,
                      LookupUndecidedError, ProviderError,
                      ProviderErrorInfo)
from ..keys import redact
from .. import params
from ..schema import anthropic_form
from .base import (LedgerBatch, LightPoll, Limits, Provider, RemoteBatch, SyncAnswer,
                   error_info, register, retry_after_seconds,
                   sdk_url, status_error, unreachable_error)

DEFAULT_BASE_URL = "https://api.anthropic.com"
PINNED_VERSION = "2023-06-01"            # the API version that still takes sampling parameters
SDK_VERSION = "2026-10-21"               # the anthropic-version the installed SDK sends (§0.2)
IN_PROGRESS = frozenset({"in_progress", "canceling"})
SAMPLING_KEYS = ("temperature", "top_p", "top_k")   # refused under 2026-10-21 (§0.2)
FIND_SKEW_SECONDS = 600                  # look this far before the intent for clock skew
CACHE_CONTROL = {"type": "ephemeral", "ttl": "1h"}  # batches outlive the 5-minute TTL (§2.9)


def translate_error(exc: Exception, action: str) -> ProviderError:
    """An `anthropic` SDK exception as a ProviderError that says whether retrying can help."""
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        info = error_info(exc, type=getattr(exc, "type", None),
                          code=getattr(exc, "error_code", None))
        message = getattr(exc, "api_message", None) or exc.message
        return status_error(action, exc.status_code, message, info, who="Anthropic")
    if isinstance(exc, anthropic.APIConnectionError):
        return unreachable_error(action, getattr(getattr(exc, "request", None), "url", None),
                                 exc)
    if isinstance(exc, httpx2.TransportError):   # e.g. the results stream broke off
        return ProviderError(redact(f"{action}: the connection to the provider failed "
                                    f"({exc!r})"), retryable=True)
    return ProviderError(redact(f"{action}: {exc}"), retryable=False)


@register
class AnthropicProvider(Provider):
    """api.anthropic.com's Message Batches API (or anything speaking it, e.g. the emulator)."""

    name: ClassVar[str] = "anthropic"
    # 256 MB is the create request's size limit (a 413 from Cloudflare, §2.10). Chunks are
    # measured in JSONL line bytes, which is the request body minus ~15 bytes of wrapper;
    # decimal MB keeps us under the limit whichever unit Cloudflare means.
    limits: ClassVar[Limits] = Limits(max_requests=100_000, max_bytes=256_000_000)
    uploads_files: ClassVar[bool] = False
    supports_embeddings: ClassVar[bool] = False
    results_sql: ClassVar[str] = "anthropic_results.sql"
    result_records: ClassVar[dict[str, str] | None] = {
        "custom_id": "VARCHAR",
        "result": "STRUCT(type VARCHAR, message JSON, "
                  "error STRUCT(error STRUCT(type VARCHAR, message VARCHAR)))"}
    option_keys: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "anthropic_version", "cache_system_prompt"})
    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_env: ClassVar[str] = "ANTHROPIC_BASE_URL"

    sdk_modules = ("anthropic", "httpx")
    translate = staticmethod(translate_error)

    # -- requests ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse at plan time what Anthropic would only refuse per request, hours later."""
        super().validate()
        s = self.spec
        for key, want in (("base_url", str), ("anthropic_version", str),
                          ("cache_system_prompt", bool)):
            if key in self.options and not isinstance(self.options[key], want):
                raise JobFileError(f"{key} must be a {'string' if want is str else 'boolean'}, "
                                   f"got {self.options[key]!r}", s.location_of(key))
        if "max_tokens" not in s.generation and "max_tokens" not in s.params:
            raise JobFileError(
                "provider 'anthropic' needs max_tokens: the Messages API has no default",
                s.location_of("provider"),
                hint="add max_tokens=<the longest answer you expect, in tokens> to the config "
                     "block, e.g. max_tokens=1024")
        # Messages API fields and what model families refuse: a table (data/params.json)
        params.check(s, self.name)
        if "stop" in s.generation and "stop_sequences" in s.generation:
            raise JobFileError("give either stop or stop_sequences, not both",
                               s.location_of("stop_sequences"))
        version = self.options.get("anthropic_version")
        if version is not None and not (isinstance(version, str)
                                        and re.fullmatch(r"\d{4}-\d{2}-\d{2}", version)):
            # it is sent as a header: anything else fails every request (a line break
            # even looks like a connection error)
            raise JobFileError(f"anthropic_version must be a date such as "
                               f"'{PINNED_VERSION}', got {version!r}",
                               s.location_of("anthropic_version"))
        for key in SAMPLING_KEYS:
            if (key in s.generation or key in s.params) and version != PINNED_VERSION:
                where = key if key in s.generation else "params"
                raise JobFileError(
                    f"{key!r} is refused by the Anthropic API version the SDK sends "
                    f"({version or '2026-10-21'}): every request would fail",
                    s.location_of(where),
                    hint=f"add anthropic_version='{PINNED_VERSION}' to the config block to "
                         f"send {key}, or drop {key}")
        if self.options.get("cache_system_prompt") and s.system is None:
            raise JobFileError("cache_system_prompt=True needs a system prompt to cache",
                               s.location_of("cache_system_prompt"),
                               hint="add system=... (or system_file=...), or drop the setting")
        if s.output_schema is not None and "format" in (s.params.get("output_config") or {}):
            raise JobFileError("output_config.format is set by columns/output_schema; remove it",
                               s.location_of("params"))
        base = self.options.get("base_url")
        if base and _ends_in_v1(base):
            raise JobFileError(f"base_url {base!r} must not end in /v1 for Anthropic (the SDK "
                               "adds /v1/messages/batches itself)", s.location_of("base_url"))

    def endpoint_path(self) -> str:
        return "/v1/messages"

    def sent_schema(self) -> dict | None:
        """The output schema in the form Anthropic accepts (`schema.anthropic_form`)."""
        s = self.spec.output_schema
        return None if s is None else anthropic_form(s)

    def caches_system_prompt(self) -> bool:
        return bool(self.options.get("cache_system_prompt"))

    def build_body(self, system: str | None, prompt: str) -> dict:
        s = self.spec
        body: dict[str, Any] = {"model": s.model,
                                "messages": [{"role": "user", "content": prompt}]}
        if system is not None:
            body["system"] = ([{"type": "text", "text": system, "cache_control": CACHE_CONTROL}]
                              if self.caches_system_prompt() else system)
        generation = dict(s.generation)
        if "stop" in generation:
            stop = generation.pop("stop")
            generation["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        body.update(generation)
        body.update(s.params)
        if s.output_schema is not None:
            # Structured outputs, the answer as JSON text:
            # https://platform.claude.com/docs/en/build-with-claude/structured-outputs
            # The accepted form (no numeric or length constraints, additionalProperties false);
            # collect still checks answers against the user's full schema.
            body["output_config"] = {**body.get("output_config", {}), "format": {
                "type": "json_schema", "schema": self.sent_schema()}}
        return body

    def envelope(self, custom_id: str, body: Any) -> dict:
        return {"custom_id": custom_id, "params": body}

    # -- client ------------------------------------------------------------------------------
    def base_url(self) -> str:
        """The job's `base_url` if the operator allows its host (else refused), or the
        operator's ANTHROPIC_BASE_URL, or api.anthropic.com."""
        return self.job_base_url() or self.env.get(self.base_url_env) or DEFAULT_BASE_URL

    def make_client(self) -> Any:
        """An `anthropic.Anthropic` built only from our settings (never the SDK's own
        environment or profile discovery), with the API version pinned if asked."""
        import anthropic

        secret = self.require_env(*self.api_key_env)
        base = self.base_url()
        if _ends_in_v1(base):
            raise ConfigurationError(
                f"the Anthropic base URL {base!r} ends in /v1",
                hint="ANTHROPIC_BASE_URL / base_url must be the host only, e.g. "
                     "https://api.anthropic.com (the SDK adds /v1/...)")
        credential = ({"api_key": secret} if self.env.get("ANTHROPIC_API_KEY")
                      else {"auth_token": secret})
        version = self.options.get("anthropic_version")
        headers = {"anthropic-version": version} if version else None
        return anthropic.Anthropic(**credential, base_url=base, max_retries=2,
                                   default_headers=headers)

    # -- lifecycle -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._call("checking the provider",
                   lambda: self.client.with_options(max_retries=1)
                   .messages.batches.list(limit=1))

    def create(self, batch: LedgerBatch, payload: Path) -> RemoteBatch:
        import anthropic
        from anthropic.types.messages import MessageBatch

        # The request body is the payload's lines as they are (`{"requests": [line, ...]}`),
        # written next to it and streamed from disk: no per-request Python objects, and the
        # bytes sent are exactly the payload's.
        body = _request_body(payload)
        # SDK retries are off: a retried POST can create a second, paid batch (no idempotency
        # key, batch-apis.md §0.1). The ledger retries, after looking for the batch.
        client = self.client.with_options(max_retries=0)
        action = f"creating batch {batch.batch_id}"
        try:
            with open(body, "rb") as fh:
                b = client.post("/v1/messages/batches", cast_to=MessageBatch, content=fh,
                                options={"headers": {"Content-Type": "application/json"}})
        except anthropic.APIConnectionError as e:   # includes timeouts
            raise AmbiguousCreateError(redact(
                f"{action}: Anthropic may or may not have created it ({e})")) from None
        except anthropic.APIStatusError as e:
            if e.status_code >= 500 or e.status_code == 408:
                raise AmbiguousCreateError(f"{action}: HTTP {e.status_code}",
                                           info=ProviderErrorInfo(status=e.status_code,
                                                                  request_id=e.request_id)
                                           ) from None
            raise translate_error(e, action) from None
        finally:
            body.unlink(missing_ok=True)
        return self._remote(b)

    def find_batch(self, batch: LedgerBatch, payload: Path | None = None,
                   known: frozenset[str] = frozenset()) -> RemoteBatch | None:
        """See the module docstring: by time, request count, and custom_ids once ended."""
        since = _epoch(batch.created_at) - FIND_SKEW_SECONDS
        wanted = (frozenset(json.loads(line)["custom_id"] for line in _lines(payload))
                  if payload is not None else None)

        def scan() -> RemoteBatch | None:
            undecided = []
            for b in self.client.messages.batches.list(limit=100):
                if b.created_at.timestamp() < since:
                    break   # newest first: everything further is older still
                if b.id in known or _total(b) != batch.request_count:
                    continue
                if b.processing_status == "ended" and wanted is not None:
                    if self._custom_ids(b.id) == wanted:
                        return self._remote(b)   # proven: its requests are exactly ours
                    continue   # ended with other requests: not ours
                undecided.append(b)
            if len(undecided) > 1:
                raise LookupUndecidedError(
                    f"batch {batch.batch_id}: {len(undecided)} running batches could be the one "
                    "whose create response was lost; waiting until they end to tell which")
            if not undecided:
                return None
            # matched by shape only: maybe another job's batch on the same key. Adopted as
            # unproven (never cancelled by us); its custom_ids decide once it ends.
            found = self._remote(undecided[0])
            found.proven = False
            return found

        return self._call("looking for a batch whose create response was lost", scan)

    def retrieve(self, batch: LedgerBatch) -> RemoteBatch:
        b = self._call(f"polling batch {batch.provider_batch_id}",
                       self.client.messages.batches.retrieve, batch.provider_batch_id)
        return self._remote(b)

    def light_poll(self, batch: LedgerBatch) -> LightPoll | None:
        """GET {base}/v1/messages/batches/{id} with the headers the SDK sends: the key as
        `Authorization: Bearer` (SDK 2.x sends both ANTHROPIC_API_KEY and
        ANTHROPIC_AUTH_TOKEN that way, batch-apis.md §2) and `anthropic-version` (ours if
        pinned, else the SDK's)."""
        secret = self.require_env(*self.api_key_env)
        base = self.base_url()
        if _ends_in_v1(base):
            return None   # make_client refuses it, with the reason
        url = sdk_url(base, "/v1/messages/batches/" + quote(batch.provider_batch_id or "",
                                                             safe=""))
        if url is None:
            return None
        version = self.options.get("anthropic_version") or SDK_VERSION
        return LightPoll(url=url, headers={"Authorization": f"Bearer {secret}",
                                           "anthropic-version": version},
                         status_field="processing_status", in_progress=IN_PROGRESS)

    def download_results(self, batch: LedgerBatch, remote: RemoteBatch,
                         dest: Path) -> list[Path]:
        """Stream the results JSONL to one file, line by line, raw (no blank lines)."""
        if remote.raw.get("archived_at"):
            return []   # results are gone (29 days, §2.5): collect records `remote.error`
        path = dest / f"{batch.batch_id}.results.jsonl"

        def fetch() -> None:
            with open(path, "wb") as fh:
                for line in self._result_lines(remote.provider_batch_id):
                    fh.write(line)
                    fh.write(b"\n")

        self._call(f"downloading the results of {remote.provider_batch_id}", fetch)
        return [path]

    def cancel(self, batch: LedgerBatch) -> RemoteBatch:
        try:
            b = self._call(f"cancelling batch {batch.provider_batch_id}",
                           self.client.messages.batches.cancel, batch.provider_batch_id)
        except ProviderError as e:
            # Cancelling a batch that has already ended is a 400 (§2.5): nothing to cancel.
            if e.info.status != 400:
                raise
            remote = self.retrieve(batch)
            if not remote.ended:
                raise
            return remote
        return self._remote(b)

    def cleanup(self, batch: LedgerBatch, remote: RemoteBatch | None) -> None:
        """Nothing to delete: no files were uploaded, and the batch (with its results) is
        archived by Anthropic 29 days after creation. See the module docstring."""

    # -- helpers -------------------------------------------------------------------------------
    def _result_lines(self, provider_batch_id: str) -> Iterator[bytes]:
        """The batch's result lines as raw bytes, streamed (memory bounded by one line)."""
        decoder = self.client.messages.batches.results(provider_batch_id)
        # The SDK's decoder json-parses every line into models (and raises on a blank line,
        # §2.6); we want the server's bytes, so read its still-unread HTTP stream directly.
        response = decoder.http_response
        try:
            pending = bytearray()
            for chunk in response.iter_bytes():
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    pending += chunk[start:end]
                    if pending.strip():
                        yield bytes(pending.rstrip(b"\r"))
                    pending.clear()
                    start = end + 1
                pending += chunk[start:]
            if pending.strip():
                yield bytes(pending.rstrip(b"\r"))
        finally:
            response.close()

    def _custom_ids(self, provider_batch_id: str) -> frozenset[str]:
        ids = set()
        for line in self._result_lines(provider_batch_id):
            try:
                ids.add(json.loads(line)["custom_id"])
            except (ValueError, KeyError, TypeError):
                continue
        return frozenset(ids)

    # -- the real-time path ----------------------------------------------------------------
    def call_sync(self, body: str) -> SyncAnswer:
        """POST the exact body bytes a batch request's `params` hold to `/v1/messages`, with
        the same client (key, base URL, pinned `anthropic-version`) and its retries off."""
        import anthropic
        import httpx2

        client = self.client.with_options(max_retries=0)
        try:
            response = client.post("/v1/messages", cast_to=httpx2.Response,
                                   content=body.encode("utf-8"),
                                   options={"headers": {"Content-Type": "application/json"}})
        except anthropic.APIStatusError as e:
            if e.status_code == 401:
                raise translate_error(e, "calling the real-time API") from None
            return SyncAnswer(e.status_code, _response_json(e.response),
                              getattr(e, "request_id", None),
                              retry_after_seconds(e.response.headers))
        except anthropic.APIConnectionError as e:
            raise translate_error(e, "calling the real-time API") from None
        return SyncAnswer(response.status_code, _response_json(response),
                          response.headers.get("request-id"))

    def sync_line(self, custom_id: str, answer: SyncAnswer) -> dict:
        """A Message Batches results line: `succeeded` with the message, or `errored` with
        the error body (`{"type": "error", "error": {"type", "message"}}`)."""
        if 200 <= answer.status < 300 and isinstance(answer.body, dict):
            return {"custom_id": custom_id,
                    "result": {"type": "succeeded", "message": answer.body}}
        error = answer.body if isinstance(answer.body, dict) else None
        if error is None or not isinstance(error.get("error"), dict):
            kind = ("api_error" if answer.status >= 500 else "rate_limit_error"
                    if answer.status == 429 else "invalid_request_error")
            error = {"type": "error", "error": {
                "type": kind, "message": f"HTTP {answer.status}: {str(answer.body)[:2000]}"}}
        return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}

    def _remote(self, b: Any) -> RemoteBatch:
        error = None
        if b.archived_at is not None:
            error = (f"results archived by Anthropic at {b.archived_at.isoformat()} "
                     "(they are kept 29 days after the batch was created)")
        return RemoteBatch(
            provider_batch_id=b.id, status=b.processing_status,
            ended=b.processing_status == "ended", counts=b.request_counts.model_dump(),
            error=error, created_at=b.created_at.timestamp() if b.created_at else None,
            raw=b.model_dump(mode="json"))


def _request_body(payload: Path) -> Path:
    """`{"requests": [<line>, ...]}` from the payload's JSONL lines, as a file beside it."""
    path = payload.with_name(payload.name + ".create.json")
    with open(path, "wb") as out:
        out.write(b'{"requests":[')
        for i, line in enumerate(_lines(payload)):
            if i:
                out.write(b",")
            out.write(line.rstrip(b"\r\n"))
        out.write(b"]}")
    return path


def _lines(payload: Path) -> Iterator[bytes]:
    """The payload's JSONL lines (bytes: JSON text never holds a raw newline)."""
    with open(payload, "rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def _total(b: Any) -> int:
    return sum(v for v in b.request_counts.model_dump().values() if isinstance(v, int))


def _response_json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _ends_in_v1(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/v1")


def _epoch(ts: Any) -> float:
    """Seconds since the epoch of a ledger timestamp (naive datetimes are UTC)."""
    if isinstance(ts, dt.datetime):
        return (ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts).timestamp()
    return float(ts or 0)
