"""Gemini batch jobs: what each request yields, the job as the wire shows it, its results.

The wire shapes follow the Gemini Developer API (``v1beta``) as the official ``google-genai``
SDK reads them (batches.py ``_BatchJob_from_mldev``; reference/batch-apis.md §3.2):

* a batch job is a long-running operation: ``{"name": "batches/<id>", "metadata": {
  "@type", "model", "displayName", "state", "createTime", "updateTime", "endTime",
  "batchStats", "output": {"responsesFile"}}, "done", "response" | "error"}``; the state is
  ``BATCH_STATE_PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED | EXPIRED`` (the SDK
  maps it to ``JOB_STATE_*``); int64 counts are JSON strings;
* each request line is ``{"key", "request": GenerateContentRequest}`` (or an
  ``EmbedContentRequest`` for ``asyncBatchEmbedContent``); each result line is ``{"key",
  "response": GenerateContentResponse}`` or ``{"key", "error": {code, message, status}}``.
  Requests a cancelled or expired job never processed have no line.

The shared lifecycle (:mod:`.lifecycle`) drives the job: validating is ``PENDING``;
in progress, finalizing and cancelling are ``RUNNING``. Answers come from :mod:`.answers`
(the same words and token counts as the other protocols); markers map as follows:
``truncate`` → ``finishReason: MAX_TOKENS`` with half an answer; ``refuse`` →
``finishReason: SAFETY`` without content; ``filter`` → ``promptFeedback.blockReason:
PROHIBITED_CONTENT`` without candidates; ``noanswer`` → a candidate with no parts;
``noresult`` → a line with the key only; ``error400`` / ``error500`` / the failure rate →
an ``error`` line (400 ``INVALID_ARGUMENT`` / 500 ``INTERNAL``).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from . import answers, gemini_files, schemas
from .ids import b62_token, digest, hex_token, shuffled, unit
from .lifecycle import View
from .plan import counts_so_far
from .store import Store

API_VERSION = "v1beta"
BATCH_TYPE = f"type.googleapis.com/google.ai.generativelanguage.{API_VERSION}.GenerateContentBatch"
EMBED_BATCH_TYPE = f"type.googleapis.com/google.ai.generativelanguage.{API_VERSION}.EmbedContentBatch"
OUTPUT_TYPE = f"type.googleapis.com/google.ai.generativelanguage.{API_VERSION}.GenerateContentBatchOutput"
STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
          "finalizing": "BATCH_STATE_RUNNING", "cancelling": "BATCH_STATE_RUNNING",
          "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
          "expired": "BATCH_STATE_EXPIRED", "cancelled": "BATCH_STATE_CANCELLED"}
FORCE = {"BATCH_STATE_SUCCEEDED": "completed", "BATCH_STATE_FAILED": "failed",
         "BATCH_STATE_EXPIRED": "expired", "BATCH_STATE_CANCELLED": "cancelled",
         "completed": "completed", "failed": "failed", "expired": "expired", "cancelled": "cancelled"}
EMBEDDING_DIMS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
INVALID = {"code": 400, "status": "INVALID_ARGUMENT"}
INTERNAL = {"code": 500, "status": "INTERNAL",
            "message": "An internal error has occurred. Please retry or report in "
                       "https://developers.generativeai.google/guide/troubleshooting"}


def hex_id(seed: int, seq: int) -> str:
    """A batch id: lowercase letters and digits, like Gemini's."""
    return hex_token(16, seed, "gemini-batch", seq)


def rfc3339(moment: float | None) -> str | None:
    """RFC 3339 UTC with nanosecond-style digits and ``Z``, as Google APIs print them."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _texts(content: Any) -> list[str]:
    """The texts of a Content (``{"parts": [{"text"}]}``) or a list of them."""
    if isinstance(content, list):
        return [t for c in content for t in _texts(c)]
    if not isinstance(content, dict):
        return []
    return [p["text"] for p in content.get("parts") or [] if isinstance(p, dict)
            and isinstance(p.get("text"), str)]


def prompt_of(request: dict[str, Any]) -> answers.Prompt:
    """The Prompt of a GenerateContentRequest (or an EmbedContentRequest's ``content``)."""
    system = request.get("systemInstruction") or request.get("system_instruction")
    system_texts = _texts(system)
    users: list[str] = []
    chars = sum(len(t) for t in system_texts)
    contents = request.get("contents")
    if contents is None and "content" in request:
        contents = [request["content"]]
    for turn in contents if isinstance(contents, list) else []:
        texts = _texts(turn)
        chars += sum(len(t) for t in texts)
        if not isinstance(turn, dict) or turn.get("role", "user") == "user":
            users.append("\n".join(texts))
    return answers.Prompt(system="\n".join(system_texts), users=users, chars=chars)


def _generation(request: dict[str, Any]) -> dict[str, Any]:
    cfg = request.get("generationConfig") or request.get("generation_config") or {}
    return cfg if isinstance(cfg, dict) else {}


def problem(request: Any, embed: bool) -> str | None:
    """Why Gemini would refuse this request (an INVALID_ARGUMENT line), or None."""
    if not isinstance(request, dict):
        return "Invalid JSON payload received. Expected an object for 'request'."
    if embed:
        return None if _texts(request.get("content")) else "* content: field is required"
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    cfg = _generation(request)
    limit = cfg.get("maxOutputTokens", cfg.get("max_output_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
    if cfg.get("responseSchema") is not None and cfg.get("responseMimeType") != "application/json":
        return ("* GenerateContentRequest.generation_config.response_mime_type: must be "
                "application/json when response_schema is set")
    return None


def decide(request: Any, *, key: str, batch_id: str, seed: int, failure_rate: float, embed: bool,
           allow_never: bool = True) -> tuple[str, dict[str, Any] | None]:
    """Classify one request: ('s', None), ('f', error) or ('n', None) (never processed)."""
    if not isinstance(request, dict):
        return "f", {**INVALID, "message": "Invalid JSON payload received."}
    marks = prompt_of(request).markers()
    if "never" in marks and allow_never:
        return "n", None
    if "error400" in marks:
        return "f", {**INVALID, "message": "The input token count exceeds the maximum number of "
                                           "tokens allowed 1048576."}
    if "error500" in marks:
        return "f", dict(INTERNAL)
    why = problem(request, embed)
    if why:
        return "f", {**INVALID, "message": why}
    if failure_rate > 0 and unit(seed, batch_id, key, "failure") < failure_rate:
        return "f", dict(INTERNAL)
    return "s", None


def openapi_to_json_schema(node: Any) -> Any:
    """Gemini's OpenAPI-subset ``responseSchema`` back as JSON Schema (for :mod:`.schemas`)."""
    if isinstance(node, list):
        return [openapi_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties",) and isinstance(value, dict):
            out[key] = {k: openapi_to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = openapi_to_json_schema(value)
        elif key in ("nullable", "propertyOrdering"):
            continue
        else:
            out[key] = value
    return out


def _json_schema(request: dict[str, Any]) -> Any | None:
    cfg = _generation(request)
    if cfg.get("responseMimeType") != "application/json":
        return None
    if cfg.get("responseJsonSchema") is not None:
        return cfg["responseJsonSchema"]
    if cfg.get("responseSchema") is not None:
        return openapi_to_json_schema(cfg["responseSchema"])
    return {"type": "object"}


def response(request: dict[str, Any], model: str, salt: str) -> dict[str, Any]:
    """The GenerateContentResponse for a successful request (see the module docstring)."""
    prompt = prompt_of(request)
    marks = prompt.markers()
    schema = _json_schema(request)
    if schema is not None:
        doc = schemas.instance(schema, prompt, digest("body", json.dumps(request, sort_keys=True)).hex()[:32])
        if "badschema" in marks:
            doc = schemas.drop_required(schema, doc)
        if "badrange" in marks:
            doc = schemas.out_of_range(schema, doc)
        text = schemas.BAD_JSON if "badjson" in marks else json.dumps(doc)
    else:
        text = answers.text_answer(prompt)
    reason = "STOP"
    if "truncate" in marks:
        text, reason = answers.truncate(text), "MAX_TOKENS"
    tokens_in = prompt.input_tokens()
    usage: dict[str, Any] = {"promptTokenCount": tokens_in}
    out: dict[str, Any] = {"modelVersion": model, "responseId": b62_token(22, salt, "response")}
    if "filter" in marks:
        out["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
        usage["totalTokenCount"] = tokens_in
    elif "refuse" in marks:
        out["candidates"] = [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}]
        usage["totalTokenCount"] = tokens_in
    else:
        parts = [] if "noanswer" in marks else [{"text": text}]
        out["candidates"] = [{"content": {"parts": parts, "role": "model"}, "finishReason": reason,
                              "index": 0}]
        produced = answers.output_tokens(text)
        usage.update(candidatesTokenCount=produced, totalTokenCount=tokens_in + produced)
    out["usageMetadata"] = usage
    return out


def embedding(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The EmbedContentResponse of an embeddings request."""
    dims = request.get("outputDimensionality") or request.get("output_dimensionality")
    if not (isinstance(dims, int) and not isinstance(dims, bool) and dims > 0):
        dims = EMBEDDING_DIMS.get(model.removeprefix("models/"), 3072)
    text = "\n".join(_texts(request.get("content")))
    return {"embedding": {"values": answers.embed(text, dims)}}


def state(view: View) -> str:
    """The wire state of a lifecycle view."""
    return STATES[view.status]


def render(rec: dict[str, Any], view: View) -> dict[str, Any]:
    """The batch job as the wire shows it: a long-running operation (every field present)."""
    final = rec.get("final") or {}
    wire_state = state(view)
    if view.terminal:
        stats = dict(final.get("stats") or {})
    else:
        ok, bad = counts_so_far(rec, view.processed)
        stats = {"requestCount": str(rec["total"]), "successfulRequestCount": str(ok),
                 "failedRequestCount": str(bad), "pendingRequestCount": str(rec["total"] - ok - bad)}
    end = view.end_time()
    metadata: dict[str, Any] = {
        "@type": EMBED_BATCH_TYPE if rec["endpoint"] == "embed" else BATCH_TYPE,
        "model": rec["model"], "displayName": rec.get("display_name") or "",
        "inputConfig": rec["input_config"],
        "createTime": rfc3339(rec["created_at"]),
        "updateTime": rfc3339(end if end is not None else rec["created_at"]),
        "batchStats": stats, "state": wire_state, "name": f"batches/{rec['id']}",
    }
    if end is not None:
        metadata["endTime"] = rfc3339(end)
    op: dict[str, Any] = {"name": f"batches/{rec['id']}", "metadata": metadata}
    if view.terminal:
        op["done"] = True
        if final.get("responses_file"):
            metadata["output"] = {"responsesFile": f"files/{final['responses_file']}"}
        if view.status == "failed":
            op["error"] = {"code": 400, "message": "; ".join(rec.get("errors") or [])
                           or "The batch job failed.", "status": "INVALID_ARGUMENT"}
        else:
            op["response"] = {"@type": OUTPUT_TYPE, **({"responsesFile": metadata["output"]["responsesFile"]}
                                                       if "output" in metadata else {})}
    return op


def load_requests(store: Store, batch_id: str) -> list[dict[str, Any]]:
    """The batch's request lines (``{"key", "request"}``) in input order."""
    return json.loads(store.blob(f"requests/{batch_id}") or b"[]")


def materialise(store: Store, rec: dict[str, Any], view: View) -> dict[str, Any]:
    """Write the results of a job that just ended (a generated file, :mod:`.gemini_files`);
    return the frozen extras (the stats and the responses file)."""
    if view.status == "failed":
        store.log_processed("gemini", rec["id"], [])
        return {"stats": {"requestCount": str(rec["total"]), "failedRequestCount": "0",
                          "successfulRequestCount": "0", "pendingRequestCount": "0"},
                "responses_file": None}
    requests = load_requests(store, rec["id"])
    embed = rec["endpoint"] == "embed"
    lines: list[tuple[str, str]] = []
    log: list[tuple[str, str]] = []
    ok = bad = 0
    for pos, index in enumerate(store.order(rec)):
        item = requests[index]
        key, request = item["key"], item["request"]
        if pos >= view.processed:
            log.append((key, "expired" if view.status == "expired" else "cancelled"))
            continue
        kind, error = rec["kinds"][pos], None
        if kind != "s":
            kind, error = decide(request, key=key, batch_id=rec["id"], seed=rec["seed"],
                                 failure_rate=rec["failure_rate"], embed=embed, allow_never=False)
        if kind == "f" and error is not None:
            lines.append((key, json.dumps({"key": key, "error": error})))
            log.append((key, "errored"))
            bad += 1
            continue
        marks = prompt_of(request).markers()
        if "noresult" in marks:
            lines.append((key, json.dumps({"key": key})))
            log.append((key, "noanswer"))
        else:
            body = (embedding(request, rec["model"]) if embed
                    else response(request, rec["model"].removeprefix("models/"),
                                  b62_token(16, rec["id"], key)))
            lines.append((key, json.dumps({"key": key, "response": body})))
            log.append((key, "noanswer" if "noanswer" in marks else "succeeded"))
        ok += 1
    del requests
    ordered = shuffled(lines, lambda pair: pair[0], rec["seed"], rec["id"], "results")
    file_id = None
    if ordered:
        texts = [text for _, text in ordered]
        end = view.end_time() or rec["created_at"]
        file_id = gemini_files.create(
            store, display_name=f"batch-{rec['id']}", mime_type="application/jsonl", created_at=end,
            source="GENERATED", write=lambda handle: [
                handle.write("".join(t + "\n" for t in texts[i:i + 4096]).encode("utf-8"))
                for i in range(0, len(texts), 4096)])["id"]
    store.log_processed("gemini", rec["id"], log)
    pending = rec["total"] - ok - bad
    return {"stats": {"requestCount": str(rec["total"]), "successfulRequestCount": str(ok),
                      "failedRequestCount": str(bad), "pendingRequestCount": str(pending)},
            "responses_file": file_id}
