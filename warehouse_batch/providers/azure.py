"""OpenAI-shaped batch services that are not api.openai.com: Azure OpenAI and any
OpenAI-compatible endpoint.

Both reuse `OpenAIProvider`'s whole flow (upload, create with metadata, lookup of lost creates
by tag, polling, download, cleanup); they differ only in how the client is built and in a few
class attributes. Protocol facts: ../shared/reference/batch-apis.md §3.1 and §3.3.

Azure OpenAI Global Batch (§3.3):
* the client is `openai.AzureOpenAI` (`api-key` header, `?api-version=` on every call, paths
  under `{endpoint}/openai/`);
* `model` is the Global-Batch *deployment* name, and the line `url` / batch `endpoint` are
  `/chat/completions` (no `/v1`);
* completed batches carry an `error_file_id` pointing at an empty file, and ids may be `""`:
  `OpenAIProvider` treats null, `""` and empty files alike;
* jobs never expire (they run until cancelled), so `expires_at` is null;
* embeddings are not offered in batch; 100,000 requests / 200 MB (200,000,000 bytes) per file;
* listings: GET /openai/files (2024-10-21) takes only `purpose` and answers `{data, object}`
  (no `has_more`, `after` ignored), and the batch list's order is undocumented: lookups scan
  through `openai.Listing` (page cap, stop on a repeated cursor) and never stop early on age.
"""
from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from ..errors import ConfigurationError, JobFileError
from .base import LedgerBatch, LightPoll, Limits, register, sdk_url
from .openai import IN_PROGRESS, OpenAIProvider

AZURE_DEFAULT_API_VERSION = "2024-10-21"   # the GA version with Global Batch (§3.3)


@register
class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI Global Batch through `openai.AzureOpenAI`."""

    name: ClassVar[str] = "azure_openai"
    limits: ClassVar[Limits] = Limits(max_requests=100_000, max_bytes=200_000_000)  # 200 MB
    supports_embeddings: ClassVar[bool] = False
    option_keys: ClassVar[frozenset[str]] = frozenset({"base_url", "api_version"})
    api_key_env: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)
    base_url_env: ClassVar[str] = "AZURE_OPENAI_ENDPOINT"
    line_url_prefix: ClassVar[str] = ""
    empty_error_file_on_success: ClassVar[bool] = True   # §0.5; collect skips empty files
    # 2024-10-21: GET /openai/files has no order, has_more or after (openai.Listing stops on
    # the repeated cursor); the order of GET /openai/batches is undocumented.
    newest_first: ClassVar[bool] = False

    def api_version(self) -> str:
        """The `api_version` setting, else OPENAI_API_VERSION (the SDK's variable), else GA."""
        return (self.options.get("api_version") or self.env.get("OPENAI_API_VERSION")
                or AZURE_DEFAULT_API_VERSION)

    def make_client(self) -> Any:
        """`AzureOpenAI` on the resource endpoint (`base_url` setting or
        AZURE_OPENAI_ENDPOINT), e.g. https://my-resource.openai.azure.com."""
        import openai

        key = self.require_env(*self.api_key_env)
        endpoint = self.base_url()
        if not endpoint:
            raise ConfigurationError(
                "no endpoint for provider 'azure_openai'",
                hint="set AZURE_OPENAI_ENDPOINT (https://<resource>.openai.azure.com) or "
                     "base_url='…' in the config block")
        return openai.AzureOpenAI(azure_endpoint=endpoint, api_version=self.api_version(),
                                  api_key=key, max_retries=2)

    def light_poll(self, batch: LedgerBatch) -> LightPoll | None:
        """GET {endpoint}/openai/batches/{id}?api-version=… with the `api-key` header, as
        `AzureOpenAI` sends it (API keys only: other credentials go through the SDK)."""
        key = self.require_env(*self.api_key_env)
        endpoint = self.base_url()
        url = (sdk_url(endpoint.rstrip("/") + "/openai", self.batch_path(batch)) if endpoint
               else None)
        if url is None:
            return None
        return LightPoll(url=f"{url}?api-version={quote(self.api_version(), safe='')}",
                         headers={**self.sdk_env_headers(), "api-key": key},
                         status_field="status", in_progress=IN_PROGRESS)


@register
class OpenAICompatibleProvider(OpenAIProvider):
    """A third-party server speaking OpenAI's Files + Batches protocol (§3.1).

    Its address is the operator's OPENAI_COMPATIBLE_BASE_URL, or a `base_url` in the job
    file whose host the operator allowed (`--allow-host`). OPENAI_BASE_URL is never used: it
    is meant for OpenAI, and sending a compatible job there would be a surprise.
    """

    name: ClassVar[str] = "openai_compatible"
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_COMPATIBLE_API_KEY", "OPENAI_API_KEY")
    base_url_env: ClassVar[str] = "OPENAI_COMPATIBLE_BASE_URL"

    def validate(self) -> None:
        super().validate()   # a job-file base_url is checked against the allowed hosts there
        if not self.options.get("base_url") and not self.env.get(self.base_url_env):
            raise JobFileError(
                "provider 'openai_compatible' needs a base URL: the server to send batches to",
                self.spec.location_of("provider"),
                hint=f"set {self.base_url_env}=https://host/v1 (the server's OpenAI-style "
                     "base, usually ending in /v1), or add base_url='https://host/v1' to the "
                     "config block and run with --allow-host host")

    def base_url(self) -> str | None:
        """The job's allowed `base_url`, else OPENAI_COMPATIBLE_BASE_URL; never
        OPENAI_BASE_URL, which is meant for OpenAI."""
        url = self.job_base_url() or self.env.get(self.base_url_env)
        if not url:
            raise ConfigurationError(
                "provider 'openai_compatible' needs a base URL",
                hint=f"set {self.base_url_env}, or base_url in the config block "
                     "(with --allow-host)")
        return url
