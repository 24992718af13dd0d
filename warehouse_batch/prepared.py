"""`Prepared`: what `source.prepare` learned about a job, shared by every later stage."""
from __future__ import annotations

from dataclasses import dataclass

from .identity import (canonical_json, custom_id_for, json_string_sql, json_template_sql,
                       request_identity)
from .providers.base import PROMPT_PLACEHOLDER, Provider
from .spec import JobSpec


@dataclass
class Prepared:
    """What `prepare` learned, for plan/submit/output to use."""

    spec: JobSpec
    provider: Provider
    columns: list[str]
    types: dict[str, str]
    system_text: str | None
    render_mode: str        # "sql" or "python"
    rows: int
    changed: int = 0        # rows whose input fingerprint changed (rendered and hashed)
    rendered: int = 0       # rows whose prompt was rendered (changed, or not yet answered)
    keep_rows: bool = True  # wb_src holds every column of every row (output built in full)
    shape: str = ""         # the output table's column shape (source.output_shape)

    def body_sql(self, prompt_expr: str = "prompt") -> str:
        """SQL for the canonical JSON body of a request, given the prompt expression."""
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        return json_template_sql(body, {PROMPT_PLACEHOLDER: json_string_sql(prompt_expr)})

    def _bytes(self, obj: object) -> int:
        return len(canonical_json(obj).encode("utf-8"))

    def identity_overhead(self) -> int:
        """Bytes of a request's identity JSON beyond its body (the same for every row)."""
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        ident = request_identity(self.provider.name, self.provider.endpoint_path(), body)
        return self._bytes(ident) - self._bytes(body)

    def line_overhead(self) -> int:
        """Bytes of an upload line beyond its body, newline included (custom_ids all have
        the same length)."""
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        line = self.provider.envelope(custom_id_for("0" * 64), body)
        return self._bytes(line) - self._bytes(body) + 1

    def identity_sql(self, prompt_expr: str = "prompt") -> str:
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        ident = request_identity(self.provider.name, self.provider.endpoint_path(), body)
        return json_template_sql(ident, {PROMPT_PLACEHOLDER: json_string_sql(prompt_expr)})
