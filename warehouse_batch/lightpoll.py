"""Polling a batch without the provider's SDK: one plain HTTPS GET, as a shortcut.

Why: a poll is one small GET per batch, but importing the official SDK costs more CPU than
the whole poll may (`openai` ~0.5 s, `anthropic` ~1.1 s, against a budget of ~0.2 s for a
`status` or a `collect` with nothing ended). So each provider declares, as data
(`Provider.light_poll` → `providers.base.LightPoll`), the URL and headers its SDK client
would use to retrieve one batch and which states mean "still running"; this module sends
that GET with the standard library (proxy variables honoured as urllib does; redirects not
followed, as the SDKs do not) and reads the state and counts.

The answer is used only when it says the batch is still in progress. Anything else (the
batch ended, a state this module does not know, a non-200 answer, JSON of another shape, a
timeout, a missing key or a setting only the SDK handles) returns None, and the caller asks
again through the SDK (`retrieve`), which does everything else: collecting, losing, error
translation with retryability.
"""
from __future__ import annotations

import functools
import json
import ssl
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any

from .errors import WarehouseBatchError
from .providers.base import LedgerBatch, LightPoll, Provider, RemoteBatch

TIMEOUT_SECONDS = 30.0          # then the SDK asks again, with its own timeout and retries
MAX_ANSWER_BYTES = 1 << 20      # a batch object is a few KB


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the headers carry the API key (the SDKs do not follow)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@functools.lru_cache(maxsize=None)
def _opener(https: bool) -> urllib.request.OpenerDirector:
    """One opener per process (ProxyHandler included: *_proxy honoured). For HTTPS it holds
    one TLS context: urllib would otherwise load the CA certificates for every request."""
    handlers: list[Any] = [_NoRedirect]
    if https:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
    return urllib.request.build_opener(*handlers)


def light_retrieve(provider: Provider, batch: LedgerBatch) -> RemoteBatch | None:
    """`batch`'s state when a plain GET finds it still in progress, else None (then ask
    the SDK: `provider.retrieve`)."""
    try:
        route = provider.light_poll(batch)
    except WarehouseBatchError:
        return None   # e.g. no API key: the SDK path says so properly
    if route is None or not batch.provider_batch_id:
        return None
    answer = _get_json(route)
    if answer is None:
        return None
    return read_state(route, answer, batch.provider_batch_id)


def retrieve(provider: Provider, batch: LedgerBatch) -> RemoteBatch:
    """`batch`'s state: from a plain GET while it runs, else through the SDK."""
    remote = light_retrieve(provider, batch)
    return remote if remote is not None else provider.retrieve(batch)


def read_state(route: LightPoll, answer: Any, provider_batch_id: str) -> RemoteBatch | None:
    """The batch object `answer` as a RemoteBatch when it is the batch asked about and in a
    state `route` lists as in progress; None for anything else."""
    if not isinstance(answer, dict) or \
            _field(answer, route.id_field) != route.id_prefix + provider_batch_id:
        return None
    status = _field(answer, route.status_field)
    if not isinstance(status, str) or status not in route.in_progress:
        return None
    counts = _field(answer, route.counts_field)
    if counts is None:
        counts = {}
    if not isinstance(counts, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        return None
    files = {k: answer.get(k) for k in ("output_file_id", "error_file_id")}
    if not all(v is None or isinstance(v, str) for v in files.values()):
        return None
    created = answer.get("created_at")
    return RemoteBatch(provider_batch_id=provider_batch_id, status=status, ended=False,
                       counts=dict(counts), output_file_id=files["output_file_id"] or None,
                       error_file_id=files["error_file_id"] or None,
                       created_at=created if isinstance(created, (int, float)) else None,
                       raw=answer)


def _field(answer: dict, path: str) -> Any:
    """The value at a dotted path (`metadata.state`) of a JSON object, or None."""
    value: Any = answer
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _get_json(route: LightPoll) -> Any:
    """The JSON of a 200 answer to GET `route.url`, or None for anything else."""
    request = urllib.request.Request(route.url, method="GET",
                                     headers={**route.headers, "Accept": "application/json"})
    try:
        opener = _opener(route.url.startswith("https:"))
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            if response.status != 200:
                return None
            body = response.read(MAX_ANSWER_BYTES + 1)
    except (OSError, HTTPException, ValueError):   # HTTPError and URLError are OSErrors
        return None
    if len(body) > MAX_ANSWER_BYTES:
        return None
    try:
        return json.loads(body)
    except ValueError:   # not JSON, or not UTF-8
        return None
