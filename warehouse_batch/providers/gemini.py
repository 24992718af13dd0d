"""Gemini Batch Mode (the Gemini Developer API) over the official `google-genai` SDK.

Protocol facts: ../shared/reference/batch-apis.md §3.2, https://ai.google.dev/gemini-api/docs/batch-mode,
and the SDK's own source (google/genai/batches.py, files.py, _api_client.py).

How this provider differs from OpenAI's:

* **Requests** are `GenerateContentRequest`s (`systemInstruction`, `contents`,
  `generationConfig` with `maxOutputTokens`, `temperature`, `topP`, `topK`, `stopSequences`,
  …), one `{"key": custom_id, "request": …}` JSONL line each, uploaded with the Files API's
  resumable protocol; embeddings are `EmbedContentRequest`s sent to
  `models/{m}:asyncBatchEmbedContent`. The model is in the create call's path, not the line.
* **A batch job is a long-running operation** (`batches/<id>`) whose state is
  `BATCH_STATE_*` on the wire and `JOB_STATE_*` in the SDK: both are accepted
  (`job_state`), and the wire word is what the ledger stores.
* **Results** are one generated JSONL file (`metadata.output.responsesFile`), one line per
  processed request, in any order: `{"key", "response": GenerateContentResponse}` or
  `{"key", "error": {code, message, status}}`. A cancelled or expired job keeps the lines of
  what it processed; requests without a line are sent again. `sql/gemini_results.sql` maps
  the lines to our result columns.
* **Lost creates** are found by `display_name`, which is the ledger's batch id (random per
  run), as the metadata tag finds them for OpenAI.
* **Typed answers**: `responseMimeType: application/json` with `responseSchema` in the
  OpenAPI subset Gemini accepts (`gemini_form`); collect checks the user's full schema.
* **Polling** a running job is one plain GET (`light_poll`: the state at `metadata.state`);
  an ended one, and every other call, goes through the SDK.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from ..errors import (AmbiguousCreateError, ConfigurationError, JobFileError,
                      LookupUndecidedError, ProviderError)
from ..keys import redact
from .. import params
from .base import (LedgerBatch, LightPoll, Limits, Provider, RemoteBatch, error_info, register,
                   sdk_url, status_error, unreachable_error)

API_VERSION = "v1beta"            # the version that serves batches and files
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"   # the SDK's
IN_PROGRESS = frozenset({"BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"})
ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
FIND_MAX_ITEMS = 20_000           # a lookup never lists more batches than this
# Default vector sizes: https://ai.google.dev/gemini-api/docs/embeddings
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
# config keys -> generationConfig fields
GENERATION_FIELDS = {"max_tokens": "maxOutputTokens", "temperature": "temperature",
                     "top_p": "topP", "top_k": "topK", "seed": "seed",
                     "presence_penalty": "presencePenalty",
                     "frequency_penalty": "frequencyPenalty"}
# what responseSchema (an OpenAPI 3.0 Schema subset) takes besides its structure; other
# keywords move into the description, where the model still reads them
_SCHEMA_KEEPS = frozenset({"enum", "description", "title", "minimum", "maximum", "minItems",
                           "maxItems", "minLength", "maxLength", "pattern", "required"})
_SCHEMA_FORMATS = frozenset({"date-time", "enum", "int32", "int64", "float", "double"})
_SCHEMA_DROPPED = frozenset({"additionalProperties", "default", "examples", "$comment",
                             "deprecated", "readOnly", "writeOnly", "$schema", "$id"})


def sdk(spec: Any = None) -> Any:
    """The `google.genai` package (the `[gemini]` extra), imported on first use: a command
    that only polls other providers never pays for it. Missing: a JobFileError saying how
    to install it."""
    try:
        from google import genai
        from google.genai import errors, types   # noqa: F401  (loaded for genai.errors/types)
    except ImportError as e:
        where = spec.location_of("provider") if spec is not None else None
        raise JobFileError(f"provider 'gemini' needs the google-genai package, which is not "
                           f"installed ({e})", where,
                           hint="pip install 'warehouse-batch[gemini]'") from None
    return genai


def job_state(state: Any) -> str:
    """A job state in the wire's words (`BATCH_STATE_RUNNING`), from either vocabulary:
    `BATCH_STATE_*` (REST), `JOB_STATE_*` (the SDK's enum or its value)."""
    word = str(getattr(state, "value", state) or "BATCH_STATE_UNSPECIFIED")
    for prefix in ("BATCH_STATE_", "JOB_STATE_"):
        if word.startswith(prefix):
            return "BATCH_STATE_" + word[len(prefix):]
    return word


def gemini_form(schema: dict) -> dict:
    """The output schema as Gemini's `responseSchema` takes it: upper-case types, a type list
    with null as `nullable`, `propertyOrdering` for the answer's key order, unsupported
    keywords moved into the description as `{key: value, ...}`."""
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            real = [k for k in kinds if k != "null"]
            if len(real) == 1:
                out["type"] = str(real[0]).upper()
            elif real:
                out["anyOf"] = [{"type": str(k).upper()} for k in real]
            if "null" in kinds:
                out["nullable"] = True
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: gemini_form(v) for k, v in value.items()}
            out["propertyOrdering"] = list(value)
        elif key == "items" and isinstance(value, dict):
            out["items"] = gemini_form(value)
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [gemini_form(v) for v in value]
        elif key == "format":
            (out if value in _SCHEMA_FORMATS else moved)[key] = value
        elif key in _SCHEMA_KEEPS:
            out[key] = value
        elif key in _SCHEMA_DROPPED:
            continue
        else:
            moved[key] = value
    if "enum" in out and out.get("type") == "STRING":
        out.setdefault("format", "enum")   # Gemini's spelling of a string enum
    if moved:
        extra = json.dumps(moved, sort_keys=True)
        out["description"] = f"{out['description']} {extra}" if out.get("description") else extra
    return out


def translate_error(exc: Exception, action: str) -> ProviderError:
    """An SDK (or transport) exception as a ProviderError that says whether retrying helps."""
    if isinstance(exc, sdk().errors.APIError):
        code = int(exc.code or 0)
        info = error_info(exc, type=exc.status, code=exc.status)
        info.status = code
        message = exc.message or str(exc)
        if code == 400 and "API key not valid" in message:
            return ProviderError(f"{action}: Gemini refused the API key ({redact(message)})",
                                 retryable=False, info=info)
        return status_error(action, code, message, info, who="Gemini")
    if type(exc).__module__.startswith(("httpx", "httpcore")):
        return unreachable_error(action, getattr(getattr(exc, "request", None), "url", None),
                                 exc)
    return ProviderError(redact(f"{action}: {exc}"), retryable=False)


@register
class GeminiProvider(Provider):
    """generativelanguage.googleapis.com's batch mode (or anything speaking it: the emulator)."""

    name: ClassVar[str] = "gemini"
    # Files API: 2 GB per file (batch-apis.md §3.2); decimal, to stay under whichever unit.
    limits: ClassVar[Limits] = Limits(max_requests=100_000, max_bytes=2_000_000_000)
    supports_embeddings: ClassVar[bool] = True
    results_sql: ClassVar[str] = "gemini_results.sql"
    # each result line read once as a typed record (jsonl.read_records): the response kept as
    # JSON (its text is stored and json_transform reads it), the error as a google.rpc.Status
    result_records: ClassVar[dict[str, str] | None] = {
        "key": "VARCHAR", "response": "JSON",
        "error": "STRUCT(code INTEGER, message VARCHAR, status VARCHAR)"}
    option_keys: ClassVar[frozenset[str]] = frozenset({"base_url"})
    api_key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_url_env: ClassVar[str] = "GOOGLE_GEMINI_BASE_URL"   # the SDK's own variable

    sdk_modules = ("google.genai", "httpx", "httpcore")
    translate = staticmethod(translate_error)

    # -- requests ----------------------------------------------------------------------------
    def validate(self) -> None:
        super().validate()
        s = self.spec
        sdk(s)
        params.check(s, self.name)   # accepted keys: data/params.json
        if s.endpoint == "embeddings" and self.embedding_dimensions() is None:
            raise JobFileError(f"unknown vector size for model {s.model!r}: set dimensions=N",
                               s.location_of("model"))
        config = s.params.get("generationConfig", {})
        if not isinstance(config, dict):
            raise JobFileError(f"params.generationConfig must be a dict of GenerationConfig "
                               f"fields, got {config!r}", s.location_of("params"))
        if s.output_schema is not None and any(
                k in config for k in ("responseSchema", "responseMimeType", "responseJsonSchema")):
            raise JobFileError("generationConfig.responseSchema is set by columns/output_schema; "
                               "remove it", s.location_of("params"))
        base = self.options.get("base_url")
        if isinstance(base, str) and _ends_in_version(base):
            raise JobFileError(f"base_url {base!r} must not end in an API version (the SDK adds "
                               f"/{API_VERSION}/... itself)", s.location_of("base_url"))

    def endpoint_path(self) -> str:
        verb = "embedContent" if self.spec.endpoint == "embeddings" else "generateContent"
        return f"/{API_VERSION}/models/{self.spec.model}:{verb}"

    def sent_schema(self) -> dict | None:
        """The output schema in the form Gemini accepts (`gemini_form`)."""
        s = self.spec.output_schema
        return None if s is None else gemini_form(s)

    def embedding_dimensions(self) -> int | None:
        return (self.spec.generation.get("dimensions")
                or EMBEDDING_DIMENSIONS.get(self.spec.model.removeprefix("models/")))

    def build_body(self, system: str | None, prompt: str) -> dict:
        s = self.spec
        if s.endpoint == "embeddings":
            body: dict[str, Any] = {"content": {"parts": [{"text": prompt}]}}
            if s.generation.get("dimensions"):
                body["outputDimensionality"] = s.generation["dimensions"]
            body.update(s.params)
            return body
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        generation: dict[str, Any] = {}
        for key, value in s.generation.items():
            if key in ("stop", "stop_sequences"):
                generation["stopSequences"] = [value] if isinstance(value, str) else value
            elif key in GENERATION_FIELDS:
                generation[GENERATION_FIELDS[key]] = value
        extra = dict(s.params)
        generation.update(extra.pop("generationConfig", None) or {})
        if s.output_schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseSchema"] = self.sent_schema()
        if generation:
            body["generationConfig"] = generation
        body.update(extra)
        return body

    def envelope(self, custom_id: str, body: Any) -> dict:
        return {"key": custom_id, "request": body}

    # -- client ------------------------------------------------------------------------------
    def base_url(self) -> str | None:
        """The job's `base_url` if the operator allows its host, else GOOGLE_GEMINI_BASE_URL,
        else None (the SDK's default host)."""
        return self.job_base_url() or self.env.get(self.base_url_env) or None

    def make_client(self) -> Any:
        """A `genai.Client` for the Developer API (never Vertex), built from our settings."""
        genai = sdk(self.spec)
        key = self.require_env(*self.api_key_env)
        base = self.base_url()
        if base and _ends_in_version(base):
            raise ConfigurationError(f"the Gemini base URL {base!r} ends in an API version",
                                     hint="GOOGLE_GEMINI_BASE_URL / base_url is the host only, "
                                          "e.g. https://generativelanguage.googleapis.com")
        # No SDK retries (the SDK's default too): its retries sleep on the wall clock, while
        # transient trouble is waited out by the command's own backoff (run --wait), whose
        # clock is injected, or ends the command with exit 75.
        return genai.Client(vertexai=False, api_key=key, http_options=genai.types.HttpOptions(
            base_url=base, api_version=API_VERSION))

    @staticmethod
    def _once() -> dict:
        """Per-request HTTP options without retries (a retried POST may create twice)."""
        types = sdk().types
        return {"http_options": types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))}

    # -- lifecycle -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._call("checking the provider",
                   lambda: self.client.batches.list(config={"page_size": 1}))

    def find_upload(self, batch: LedgerBatch) -> str | None:
        name = _filename(batch)

        def scan() -> str | None:
            for seen, f in enumerate(self.client.files.list(config={"page_size": 100})):
                if f.display_name == name:
                    return f.name
                if seen >= FIND_MAX_ITEMS:
                    break
            return None   # not seen: uploading again costs a file, never a batch

        return self._call("looking for an earlier upload", scan)

    def upload(self, batch: LedgerBatch, payload: Path) -> str | None:
        f = self._call("uploading the batch file", self.client.files.upload, file=str(payload),
                       config={"mime_type": "application/jsonl", "display_name": _filename(batch)})
        return f.name

    def create(self, batch: LedgerBatch, payload: Path) -> RemoteBatch:
        action = f"creating batch {batch.batch_id}"
        config = {"display_name": batch.batch_id, **self._once()}
        try:
            if self.spec.endpoint == "embeddings":
                with warnings.catch_warnings():   # create_embeddings is "experimental"
                    warnings.simplefilter("ignore")
                    job = self.client.batches.create_embeddings(
                        model=self.spec.model, src={"file_name": batch.input_file_id},
                        config=config)
            else:
                job = self.client.batches.create(model=self.spec.model, src=batch.input_file_id,
                                                 config=config)
        except sdk().errors.APIError as e:
            if int(e.code or 0) >= 500 or e.code == 408:
                raise AmbiguousCreateError(f"{action}: HTTP {e.code}") from None
            raise translate_error(e, action) from None
        except Exception as e:
            if type(e).__module__.startswith(("httpx", "httpcore")):
                # no answer: the job may or may not exist; found by display_name next time
                raise AmbiguousCreateError(redact(
                    f"{action}: Gemini may or may not have created it ({e!r})")) from None
            raise
        return self.retrieve_name(job.name)

    def find_batch(self, batch: LedgerBatch, payload: Path | None = None,
                   known: frozenset[str] = frozenset()) -> RemoteBatch | None:
        """The job whose display_name is our batch id (random per run: proven ours)."""
        def scan() -> RemoteBatch | None:
            for seen, job in enumerate(self.client.batches.list(config={"page_size": 100})):
                if _short(job.name) not in known and job.display_name == batch.batch_id:
                    return self.retrieve_name(job.name)
                if seen >= FIND_MAX_ITEMS:
                    raise LookupUndecidedError(
                        f"looking for batch {batch.batch_id}: Gemini's job list goes on past "
                        f"{FIND_MAX_ITEMS} jobs without it; not creating it again (that could "
                        "pay twice): it is looked up again on the next run")
            return None

        return self._call("looking for a batch whose create response was lost", scan)

    def retrieve(self, batch: LedgerBatch) -> RemoteBatch:
        return self.retrieve_name(batch.provider_batch_id or "")

    def retrieve_name(self, name: str) -> RemoteBatch:
        """The job as the wire shows it (the SDK's own request: the typed BatchJob drops the
        stats and the error of a failed job)."""
        def get() -> dict:
            answer = self.client._api_client.request("get", "batches/" + _short(name), {}, None)
            return json.loads(answer.body) if answer.body else {}

        return _remote(self._call(f"polling batch {name}", get))

    def light_poll(self, batch: LedgerBatch) -> LightPoll | None:
        """GET {base}/v1beta/batches/{id} with `x-goog-api-key`, as the SDK sends it. The
        state is `metadata.state` (wire words); the counts (int64 as strings) are left to the
        SDK path, which also reads every ended job."""
        key = self.require_env(*self.api_key_env)
        base = self.base_url() or os.environ.get(self.base_url_env) or DEFAULT_BASE_URL
        if _ends_in_version(base):
            return None   # make_client refuses it, with the reason
        url = sdk_url(base, f"/{API_VERSION}/batches/" + quote(batch.provider_batch_id or "",
                                                               safe=""))
        if url is None:
            return None
        return LightPoll(url=url, headers={"x-goog-api-key": key}, status_field="metadata.state",
                         in_progress=IN_PROGRESS, counts_field="metadata.noCounts",
                         id_field="name", id_prefix="batches/")

    def download_results(self, batch: LedgerBatch, remote: RemoteBatch,
                         dest: Path) -> list[Path]:
        """Stream the responses file to disk (inline responses, if any, are written as the
        same JSONL lines)."""
        path = dest / f"{batch.batch_id}.results.jsonl"
        if remote.output_file_id:
            self._call(f"downloading the results of {remote.provider_batch_id}",
                       self.client.files.download, file=remote.output_file_id,
                       destination=str(path))
            return [path]
        inline = ((remote.raw.get("metadata") or {}).get("output") or {})
        items = ((inline.get("inlinedResponses") or {}).get("inlinedResponses")
                 or (inline.get("inlinedEmbedContentResponses") or {}).get("inlinedResponses"))
        if not items:
            return []
        with open(path, "w", encoding="utf-8") as fh:
            for item in items:
                line = {k: v for k, v in item.items() if k in ("response", "error")}
                line["key"] = (item.get("metadata") or {}).get("key")
                fh.write(json.dumps(line) + "\n")
        return [path]

    def cancel(self, batch: LedgerBatch) -> RemoteBatch:
        try:
            self._call(f"cancelling batch {batch.provider_batch_id}", self.client.batches.cancel,
                       name="batches/" + _short(batch.provider_batch_id or ""))
        except ProviderError as e:
            if e.info.status != 400:   # FAILED_PRECONDITION: it has ended already
                raise
            remote = self.retrieve(batch)
            if not remote.ended:
                raise
            return remote
        return self.retrieve(batch)

    def cleanup(self, batch: LedgerBatch, remote: RemoteBatch | None) -> None:
        """Delete the uploaded requests and the responses file (the job itself stays listed,
        as a batch does at the other providers)."""
        names = {batch.input_file_id, remote.output_file_id if remote is not None else None}
        for name in sorted(n for n in names if n):
            try:
                self.client.files.delete(name=name)
            except sdk().errors.APIError as e:
                if e.code not in (403, 404):   # gone already (Google answers 403 for those)
                    raise translate_error(e, f"deleting file {name}") from None


def _remote(op: dict) -> RemoteBatch:
    """A long-running operation (`batches/<id>`) as a RemoteBatch."""
    meta = op.get("metadata") or {}
    state = job_state(meta.get("state"))
    stats = meta.get("batchStats") or {}

    def count(field: str) -> int:
        try:
            return int(stats.get(field) or 0)
        except (TypeError, ValueError):
            return 0

    error = None
    if isinstance(op.get("error"), dict):
        err = op["error"]
        error = f"{err.get('status') or err.get('code')}: {err.get('message')}"
    output = meta.get("output") or {}
    created = meta.get("createTime")
    return RemoteBatch(
        provider_batch_id=_short(op.get("name") or ""), status=state,
        ended=state.removeprefix("BATCH_STATE_") in ENDED,
        counts={"completed": count("successfulRequestCount"),
                "failed": count("failedRequestCount"), "total": count("requestCount")},
        output_file_id=output.get("responsesFile") or None, error=error,
        created_at=_epoch(created), raw=op)


def _short(name: str) -> str:
    """A job's id without the `batches/` of its resource name (the ledger stores the id)."""
    return name.removeprefix("batches/")


def _filename(batch: LedgerBatch) -> str:
    return f"{batch.batch_id}.jsonl"


def _ends_in_version(url: str) -> bool:
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return last in ("v1", "v1beta", "v1alpha")


def _epoch(stamp: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC stamp (Google prints up to 9 digits)."""
    if not isinstance(stamp, str) or not stamp.endswith("Z"):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    try:
        return dt.datetime.fromisoformat(f"{whole}.{(fraction or '0')[:6]}+00:00").timestamp()
    except ValueError:
        return None
