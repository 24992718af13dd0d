"""The one interface every provider implements, and the registry that finds them by name.

A provider answers five questions and nothing else:
1. what a request body looks like for a job (`build_body`) and how it is wrapped in the upload
   (`envelope`);
2. how to put a batch on the provider (`upload`, `create`) and find one whose create response
   was lost (`find_batch`);
3. what state a batch is in (`retrieve`);
4. where its results are (`download_results`) and how their lines map to our result shape
   (`results_sql`, a file in `sql/`);
5. how to cancel it and clean up after it.

The ledger, chunking, hashing, collection and the output table are shared code; a provider
never touches DuckDB state. Provider differences are attributes and small methods here, not
if/else chains elsewhere.
"""
from __future__ import annotations

import email.utils
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping
from urllib.parse import urlsplit

from ..errors import (ConfigurationError, JobFileError, ProviderError, ProviderErrorInfo,
                      UnreachableError)
from ..keys import redact, register_key_env, remember_key

if TYPE_CHECKING:   # annotations only: a poll builds providers without parsing SQL (pollpath)
    from ..spec import JobSpec

PROMPT_PLACEHOLDER = "\u0000warehouse-batch:prompt\u0000"
CUSTOM_ID_PLACEHOLDER = "\u0000warehouse-batch:custom_id\u0000"
BODY_PLACEHOLDER = "\u0000warehouse-batch:body\u0000"


@dataclass(frozen=True)
class Limits:
    """How big one provider batch may be. Any of them closes a chunk."""

    max_requests: int
    max_bytes: int
    max_tokens: int | None = None   # estimated enqueued input tokens per batch


@dataclass
class LedgerBatch:
    """The ledger's view of one batch (a row of warehouse_batch.batches)."""

    batch_id: str
    run_id: str
    job_name: str
    endpoint: str
    model: str
    chunk: int
    state: str
    request_count: int
    bytes: int
    created_at: Any
    input_file_id: str | None = None
    provider_batch_id: str | None = None
    provider_status: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    provider: str | None = None         # the provider it was sent to (polled through it)
    proven: bool | None = None          # False: an adopted candidate not yet proven ours
    est_tokens: int | None = None       # estimated input tokens (enqueued-token budgets)
    mode: str | None = None             # 'realtime': sent through the synchronous API

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "LedgerBatch":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class RemoteBatch:
    """A provider's answer about one batch, normalised."""

    provider_batch_id: str
    status: str                    # the provider's own word, stored as provider_status
    ended: bool                    # terminal: results (if any) can be fetched
    counts: dict = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None       # batch-level failure (e.g. validation), if any
    requeue: bool = False          # failed for capacity (e.g. an enqueued-token limit):
                                   # nothing ran; send again later without counting a failure
    created_at: float | None = None
    raw: dict = field(default_factory=dict)
    proven: bool = True            # False: a lookup matched it by shape only (not yet ours)


@dataclass(frozen=True)
class LightPoll:
    """How to ask for one batch's state with a plain HTTPS GET, without the provider's SDK
    (importing an SDK costs more CPU than a whole poll should: see `lightpoll`).

    Declared by each provider (`Provider.light_poll`) from the settings and environment its
    SDK client is built from, with the headers that client sends. Only a state listed in
    `in_progress` is taken from the answer: anything else (an ended batch, an unknown
    state, an error) is asked again through the SDK, which does everything else."""

    url: str
    headers: dict[str, str]
    status_field: str                 # the JSON field holding the provider's state word
    in_progress: frozenset[str]       # states meaning "not ended yet"
    counts_field: str = "request_counts"
    # the field naming the batch, and what precedes our id in it (`batches/<id>`); fields
    # may be dotted paths into nested objects (`metadata.state`)
    id_field: str = "id"
    id_prefix: str = ""


@dataclass
class SyncAnswer:
    """A provider's answer to one synchronous call (`Provider.call_sync`): the HTTP status
    and the JSON body as it came (an error body too), for `Provider.sync_line` to wrap as a
    batch result line would."""

    status: int
    body: Any                        # the parsed JSON body (a dict), or the text if not JSON
    request_id: str | None = None
    retry_after: float | None = None  # seconds the provider asked to wait (429, 503)


@dataclass
class TaggedBatch:
    """A live provider batch whose tags name one of our batches: enough to rebuild its
    ledger row when that row is gone (see `Provider.tagged_batches`)."""

    remote: RemoteBatch
    batch_id: str
    run_id: str
    chunk: int
    custom_ids: list[str]


class Provider(ABC):
    """Base class; subclasses register themselves under `name`."""

    name: ClassVar[str]
    limits: ClassVar[Limits]
    uploads_files: ClassVar[bool] = True         # False: requests go inline in the create call
    supports_embeddings: ClassVar[bool] = False
    results_sql: ClassVar[str]                   # a file in warehouse_batch/sql/
    # when its results SQL reads typed records (view wb_records, `jsonl.read_records`)
    # rather than raw lines (view wb_lines): each line's columns and DuckDB types
    result_records: ClassVar[dict[str, str] | None] = None
    option_keys: ClassVar[frozenset[str]] = frozenset()   # provider settings it understands
    api_key_env: ClassVar[tuple[str, ...]] = ()  # variables holding its key, first set wins
    # the modules whose exceptions `translate` understands (its SDK and transport); any
    # other exception from an SDK call is a bug and propagates as it is
    sdk_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: JobSpec, env: Mapping[str, str] | None = None):
        self.spec = spec
        self.env = dict(os.environ if env is None else env)
        self.options = dict(spec.provider_options)
        self._client: Any = None

    # -- the SDK client ----------------------------------------------------------------------
    def make_client(self) -> Any:
        """The provider's SDK client, built only from our settings (providers override)."""
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The SDK client, made on first use (a command that only plans never makes one)."""
        if self._client is None:
            self._client = self.make_client()
        return self._client

    @staticmethod
    def translate(exc: BaseException, action: str) -> ProviderError:
        """An SDK or transport exception as a `ProviderError` saying whether it is
        retryable (providers override)."""
        raise NotImplementedError

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, an SDK call, with the SDK's exceptions translated."""
        try:
            return fn(*args, **kwargs)
        except (ProviderError, ConfigurationError):
            raise
        except Exception as e:
            if type(e).__module__.startswith(self.sdk_modules):
                raise self.translate(e, action) from None
            raise

    # -- requests ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse, at plan time, a job this provider cannot run (raise JobFileError)."""
        unknown = set(self.options) - set(self.option_keys)
        if unknown:
            key = sorted(unknown)[0]
            raise JobFileError(f"provider {self.name!r} has no setting {key!r}",
                               self.spec.location_of(key))
        if self.spec.endpoint == "embeddings" and not self.supports_embeddings:
            raise JobFileError(f"provider {self.name!r} has no embeddings batch API",
                               self.spec.location_of("endpoint"))
        self.job_base_url()

    @abstractmethod
    def endpoint_path(self) -> str:
        """The API path this job's requests go to, as recorded in the request identity."""

    @abstractmethod
    def build_body(self, system: str | None, prompt: str) -> dict:
        """The request body for one row (`prompt` may be PROMPT_PLACEHOLDER)."""

    def sent_schema(self) -> dict | None:
        """The form of the job's output schema the bodies carry (the provider's accepted
        form); collect finds a job's typed requests by it. Answers are checked against the
        user's schema (`spec.output_schema`) all the same."""
        return self.spec.output_schema

    @abstractmethod
    def envelope(self, custom_id: str, body: Any) -> dict:
        """One request as it appears in the upload (a JSONL line or an inline list item)."""

    def embedding_dimensions(self) -> int | None:
        """The vector size of an embeddings job (providers with embeddings override this)."""
        return None

    def caches_system_prompt(self) -> bool:
        """Whether every request asks the provider to write its system prompt to a prompt
        cache, which is billed above the input price (`prices.cache_write_1h`): the budget's
        worst case counts that write for every request (budget.py)."""
        return False

    def effective_limits(self) -> Limits:
        s = self.spec
        return Limits(
            max_requests=s.batch_max_requests or self.limits.max_requests,
            max_bytes=s.batch_max_bytes or self.limits.max_bytes,
            max_tokens=s.batch_max_tokens or self.limits.max_tokens,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    @abstractmethod
    def preflight(self) -> None:
        """Check credentials and reachability before anything is written to the ledger."""

    def find_upload(self, batch: LedgerBatch) -> str | None:
        """An input file uploaded for `batch` whose id was never recorded (crash), if any."""
        return None

    def upload(self, batch: LedgerBatch, payload: Path) -> str | None:
        """Upload the batch's JSONL; returns the provider's file id (None if not needed)."""
        return None

    @abstractmethod
    def create(self, batch: LedgerBatch, payload: Path) -> RemoteBatch:
        """Create the provider batch. Raises AmbiguousCreateError if it may have happened."""

    @abstractmethod
    def find_batch(self, batch: LedgerBatch, payload: Path | None = None,
                   known: frozenset[str] = frozenset()) -> RemoteBatch | None:
        """The provider batch created for `batch` whose create response was lost, if any.

        `payload` is the batch's upload (its custom_ids identify it where the provider keeps
        no tag); `known` holds provider batch ids the ledger already owns (never adopt them).
        """

    def tagged_batches(self, job_name: str, known: frozenset[str],
                       owned: frozenset[str]) -> list[TaggedBatch]:
        """Live provider batches tagged as `job_name`'s whose provider id is not in `known`
        and whose tagged batch id is not in `owned` (our ledger's batch ids): batches whose
        ledger row was lost. Providers that cannot tag batches find none."""
        return []

    @abstractmethod
    def retrieve(self, batch: LedgerBatch) -> RemoteBatch:
        """The batch's current state."""

    def light_poll(self, batch: LedgerBatch) -> LightPoll | None:
        """How to poll `batch` without the SDK (`lightpoll`), or None: through the SDK only.
        May raise a WarehouseBatchError (no key, a refused base URL): the SDK path then
        reports it."""
        return None

    @abstractmethod
    def download_results(self, batch: LedgerBatch, remote: RemoteBatch,
                         dest: Path) -> list[Path]:
        """Write the batch's raw result files (JSONL) into `dest`; return their paths."""

    @abstractmethod
    def cancel(self, batch: LedgerBatch) -> RemoteBatch:
        """Ask the provider to cancel; results of finished requests stay collectable."""

    def cleanup(self, batch: LedgerBatch, remote: RemoteBatch | None) -> None:
        """Delete provider-side files we no longer need (after results are stored)."""

    # -- the real-time path (realtime.py) ------------------------------------------------------
    def call_sync(self, body: str) -> SyncAnswer:
        """Send one request body (its exact JSON text, as stored) to the provider's
        synchronous API, once (no SDK retries: `realtime` retries on its injected clock), and
        return the answer, an HTTP error answer included. Raises ProviderError when no answer
        came (connection failure, timeout) or the key was refused."""
        raise ProviderError(f"provider {self.name!r} has no real-time path", retryable=False)

    def sync_line(self, custom_id: str, answer: SyncAnswer) -> dict:
        """One synchronous answer as the line a batch result file would hold for it, so
        the provider's results SQL reads it like any other."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------
    def job_base_url(self) -> str | None:
        """The job file's `base_url`, if it has one and the operator allows its host.

        The API key goes wherever the base URL points, and a job file travels; so a base URL
        written in it is honoured only for a host the operator allowed (`--allow-host`,
        $WAREHOUSE_BATCH_ALLOWED_HOSTS), loopback included. A base URL set in the
        environment (e.g. OPENAI_BASE_URL) is the operator's own and needs no allowance.
        Checked by `validate` (at plan) and again whenever a client is built.
        """
        url = self.options.get("base_url")
        if url is None:
            return None
        where = self.spec.location_of("base_url")
        if not isinstance(url, str) or not url:
            raise JobFileError(f"base_url must be a URL string, got {url!r}", where)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise JobFileError(f"base_url {url!r} is not a valid URL ({e})", where) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JobFileError(f"base_url {url!r} is not an http(s) URL with a host", where)
        if parts.username or parts.password:
            raise JobFileError("base_url must not carry credentials", where)
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        scope = self.spec.scope
        if scope is None or not scope.allows_host(host, port):
            shown = f"[{host}]" if ":" in host else host
            raise JobFileError(
                f"base_url names the host {host}:{port}, which the operator has not allowed: "
                f"the API key in ${self.api_key_env[0] if self.api_key_env else 'API key'} "
                "would be sent there",
                where,
                hint=f"if you trust this host, run with --allow-host {shown} (or "
                     f"--allow-host {shown}:{port}, or set $WAREHOUSE_BATCH_ALLOWED_HOSTS); "
                     "or remove base_url and set the provider's base URL variable instead")
        return url

    def require_env(self, *names: str) -> str:
        for n in names:
            if self.env.get(n):
                remember_key(self.env[n])
                return self.env[n]
        raise ConfigurationError(
            f"no API key for provider {self.name!r}: set {' or '.join(names)}",
            hint="to try a job offline, start `warehouse-batch emulator` and point the "
                 "provider's base URL at it (see the README)")


RETRYABLE_STATUS = frozenset({408, 409, 429})   # plus every 5xx, as both SDKs retry them


def sdk_url(base: str, path: str) -> str | None:
    """`path` under `base` as the SDKs join them (base with a trailing slash, then the path
    without its leading one); None for a base with a query or fragment (left to the SDK)."""
    parts = urlsplit(base)
    if parts.query or parts.fragment or parts.scheme not in ("http", "https"):
        return None
    return (base if base.endswith("/") else base + "/") + path.lstrip("/")


def status_error(action: str, status: int, message: str, info: ProviderErrorInfo,
                 who: str = "the provider") -> ProviderError:
    """An HTTP error answer as a ProviderError: 408/409/429/5xx may pass, the rest will not.

    The provider's message is redacted: a 401 quotes a masked fragment of the key."""
    message = redact(message) or ""
    if status == 401:
        return ProviderError(f"{action}: {who} refused the API key ({message})",
                             retryable=False, info=info)
    return ProviderError(f"{action}: HTTP {status}: {message}",
                         retryable=status in RETRYABLE_STATUS or status >= 500, info=info)


MAX_RETRY_AFTER = 3600.0   # a longer (or absurd) `retry-after` is capped: we poll again then


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a provider asked for in an error answer's headers, in seconds, or None.

    `retry-after-ms` (OpenAI, Anthropic) first, then `retry-after` as seconds or as an HTTP
    date, as both SDKs read them. Capped at MAX_RETRY_AFTER; negative values count as 0."""
    if headers is None:
        return None
    seconds: float | None = None
    try:
        seconds = float(headers.get("retry-after-ms")) / 1000
    except (TypeError, ValueError):
        raw = headers.get("retry-after")
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            parsed = email.utils.parsedate_tz(raw) if isinstance(raw, str) else None
            if parsed is not None:
                seconds = email.utils.mktime_tz(parsed) - time.time()
    if seconds is None or seconds != seconds:   # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_info(exc: Any, **fields: Any) -> ProviderErrorInfo:
    """ProviderErrorInfo for an SDK status error, with the `retry-after` it carried."""
    response = getattr(exc, "response", None)
    return ProviderErrorInfo(status=getattr(exc, "status_code", None),
                             request_id=getattr(exc, "request_id", None),
                             retry_after=retry_after_seconds(getattr(response, "headers", None)),
                             **fields)


_CONNECT_FAILURES = ("ConnectError", "ConnectTimeout")   # httpx: no connection was made


def unreachable_error(action: str, url: Any, exc: Exception) -> ProviderError:
    """A connection failure, naming the host and port that could not be reached.

    No connection at all (refused, DNS, connect timeout) is an `UnreachableError`; a
    connection that timed out or dropped mid-answer is a plain transient error."""
    where = ""
    if url is not None:
        port = url.port or (443 if url.scheme == "https" else 80)
        where = f" {url.scheme}://{url.host}:{port}"
    cause: BaseException | None = exc
    while cause is not None:
        if type(cause).__name__ in _CONNECT_FAILURES:
            return UnreachableError(redact(f"{action}: cannot reach the provider at{where} "
                                           f"({exc})"))
        cause = cause.__cause__ or cause.__context__
    return ProviderError(redact(f"{action}: the connection to the provider at{where} failed "
                                f"({type(exc).__name__}: {exc})"), retryable=True)


_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator: make a provider available to job files under `cls.name`."""
    _REGISTRY[cls.name] = cls
    register_key_env(cls.api_key_env)
    return cls


def provider_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def provider_env(name: str) -> tuple[str, str] | None:
    """(base URL variable, first API key variable) of a registered provider, or None: what a
    project file's `[providers.<name>]` table sets (`project.apply`)."""
    _load_builtin()
    cls = _REGISTRY.get(name)
    url = getattr(cls, "base_url_env", None)
    if cls is None or not isinstance(url, str) or not cls.api_key_env:
        return None
    return url, cls.api_key_env[0]


def get_provider(spec: JobSpec, env: Mapping[str, str] | None = None) -> Provider:
    """The provider a job names, constructed for it."""
    _load_builtin()
    cls = _REGISTRY.get(spec.provider)
    if cls is None:
        raise JobFileError(f"unknown provider {spec.provider!r}",
                           spec.location_of("provider"),
                           hint="one of: " + ", ".join(sorted(_REGISTRY)))
    return cls(spec, env)


def _load_builtin() -> None:
    import importlib

    for module in ("openai", "anthropic", "azure", "gemini"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise
