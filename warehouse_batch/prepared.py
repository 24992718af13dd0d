"""`Prepared`: what `source.prepare` learned about a job, shared by every later stage."""
from __future__ import annotations

from dataclasses import dataclass

from .identity import json_string_sql, json_template_sql, request_identity
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
    keep_rows: bool = True  # wb_src holds every column of every row (output built in full)
    shape: str = ""         # the output table's column shape (source.output_shape)

    def body_sql(self, prompt_expr: str = "prompt") -> str:
        """SQL for the canonical JSON body of a request, given the prompt expression."""
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        return json_template_sql(body, {PROMPT_PLACEHOLDER: json_string_sql(prompt_expr)})

    def identity_sql(self, prompt_expr: str = "prompt") -> str:
        body = self.provider.build_body(self.system_text, PROMPT_PLACEHOLDER)
        ident = request_identity(self.provider.name, self.provider.endpoint_path(), body)
        return json_template_sql(ident, {PROMPT_PLACEHOLDER: json_string_sql(prompt_expr)})
