"""A dbt `schema.yml` entry for an enriched model: its columns, their types and what they
mean, and the tests every enriched table passes (`_status` in succeeded/failed/pending, the
key unique and not null), so `dbt docs` and `dbt test` see the model.

The columns and types are the job's output table's as they are in the warehouse (the model
is a copy of it), read after the job (or `dbt build`) has run once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from ..dbtproject import DbtProject, yaml_dump
from ..errors import UserError
from ..spec import JobSpec
from ..sqlutil import quote_ident

STATUS_VALUES = ["succeeded", "failed", "pending"]

# what the columns warehouse-batch adds mean (README: The output table)
COLUMNS = {
    "response": "The answer text. NULL while pending or failed.",
    "embedding": "The embedding vector. NULL while pending or failed.",
    "_raw": "The answer as returned (typed answers).",
    "_status": "succeeded, failed (see _error) or pending (in flight, or to be sent).",
    "_error": "The provider's message for a failed row.",
    "_failure": "For a failed row: retryable (the next build sends it again) or permanent.",
    "_request_hash": "The request this row needed (joins to warehouse_batch.results).",
    "_finish_reason": "Why the answer ended, e.g. stop; length when max_tokens cut it.",
    "_input_tokens": "Input tokens the answer was billed for.",
    "_output_tokens": "Output tokens the answer was billed for.",
    "_attempts": "How many sends the answer took.",
}


def model_entry(spec: JobSpec, model: str, db: str) -> dict[str, Any]:
    """The `models:` entry for dbt model `model`, a copy of `spec`'s output table in `db`."""
    columns = _columns(spec, db)
    props = (spec.output_schema or {}).get("properties", {})
    out = []
    for name, sql_type in columns:
        entry: dict[str, Any] = {"name": name, "data_type": sql_type.lower()}
        if name in COLUMNS:
            entry["description"] = COLUMNS[name]
        elif name in props:
            entry["description"] = props[name].get("description") or \
                f"The answer's field {name}. NULL while pending or failed."
        elif spec.output_columns and name in spec.output_columns:
            entry["description"] = f"From the answer: {spec.output_columns[name]}."
        elif name in spec.unique_key:
            entry["description"] = "The row's key (the job's unique_key)."
        else:
            entry["description"] = "From the job's SELECT."
        tests: list[Any] = []
        if spec.unique_key == [name]:
            tests = ["unique", "not_null"]
        elif name == "_status":
            tests = ["not_null", {"accepted_values": {"arguments": {"values": STATUS_VALUES}}}]
        if tests:
            entry["data_tests"] = tests
        out.append(entry)
    description = (f"{spec.description + ' ' if spec.description else ''}Enriched by the "
                   f"warehouse-batch job {Path(spec.path).name} ({spec.provider} / "
                   f"{spec.model}); rows whose answer has not come back yet have "
                   "_status = 'pending'.")
    return {"name": model, "description": description, "columns": out}


def schema_yaml(entries: list[dict[str, Any]]) -> str:
    """A whole `schema.yml` (version 2) with these model entries."""
    return yaml_dump({"version": 2, "models": entries})


def python_models_for(project: DbtProject, job: Path) -> list[str]:
    """The Python models of the project that name the job file (its path from the project)."""
    rel = job.resolve().relative_to(project.root).as_posix() \
        if job.resolve().is_relative_to(project.root) else str(job)
    return sorted(p.stem for p in (project.root / "models").rglob("*.py")
                  if rel in p.read_text(encoding="utf-8", errors="replace"))


def _columns(spec: JobSpec, db: str) -> list[tuple[str, str]]:
    if not Path(db).exists():
        raise UserError(f"{db} does not exist", hint="pass --db with the warehouse file")
    con = duckdb.connect(db, read_only=True)
    try:
        name = ".".join(quote_ident(p) for p in spec.name.split("."))
        try:
            return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
        except duckdb.CatalogException:
            raise UserError(f"the job's output table {spec.name!r} is not in {db} yet",
                            hint="run the job (or dbt build) once first") from None
    finally:
        con.close()
