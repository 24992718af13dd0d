"""What one OpenAI batch request yields: its outcome and its response body.

:func:`decide` classifies a request (success, HTTP error or never processed)
from its body, the seed and the batch's failure rate, in this precedence:
``[[emu:never]]`` > ``[[emu:error400]]`` > ``[[emu:error500]]`` > a malformed
body (400) > a seeded failure-rate draw (500) > success.

:func:`success_body` builds the body the synchronous endpoint would return:
``chat.completion`` (with json_schema / json_object / forced function tool
support), ``response``, ``text_completion``, embedding ``list``, moderation,
image and video objects. The answer text and token counts come from
:mod:`.answers`, typed documents from :mod:`.schemas`.
"""
from __future__ import annotations

import base64
import json
import struct
from typing import Any

from . import answers, request_rules, schemas
from .ids import b62_token, digest, hex_token, unit

SUPPORTED_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
_TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
_MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)
_FILTER = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


def normalise_endpoint(url: str) -> str:
    """Return an endpoint path without the ``/v1`` prefix (``/v1/x`` and ``/x`` are the same)."""
    url = url.split("?", 1)[0]
    return url[3:] if url.startswith("/v1/") else url


def prompt_for(endpoint: str, body: dict[str, Any]) -> answers.Prompt:
    """Return the prompt of a request body for a (normalised) endpoint."""
    if endpoint == "/chat/completions":
        return answers.openai_chat_prompt(body)
    if endpoint == "/responses":
        return answers.openai_responses_prompt(body)
    if endpoint in ("/embeddings", "/moderations"):
        texts = [t for t in _inputs(body.get("input")) if isinstance(t, str)]
        return answers.Prompt(users=texts, chars=sum(len(t) for t in texts))
    if endpoint == "/completions":
        return answers.openai_completions_prompt(body)
    text = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
    return answers.Prompt(users=[text], chars=len(text))


def request_tokens(endpoint: str, body: dict[str, Any], prompt: answers.Prompt | None = None) -> int:
    """Return the enqueued-token estimate of one request (``prompt``: its prompt, if known)."""
    if endpoint == "/embeddings":
        return sum(_input_tokens(i) for i in _inputs(body.get("input")))
    return (prompt or prompt_for(endpoint, body)).input_tokens()


def _inputs(raw: Any) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]  # one tokenised input
    return raw if isinstance(raw, list) else [raw]


def _input_tokens(item: Any) -> int:
    if isinstance(item, list):
        return len(item)
    return answers.Prompt(chars=len(str(item))).input_tokens()


def _problem(endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Return a 400 error for a body the real endpoint would reject, else None."""
    if body.get("stream") is True:
        return _bad("Streaming is not supported for batch requests.", "stream")
    if endpoint not in ("/images/generations", "/images/edits", "/videos") and not isinstance(body.get("model"), str):
        return _bad("you must provide a model parameter", None)
    required = {"/chat/completions": "messages", "/embeddings": "input", "/moderations": "input",
                "/completions": "prompt", "/responses": "input", "/images/generations": "prompt",
                "/videos": "prompt"}.get(endpoint)
    if required and body.get(required) in (None, [], ""):
        return _bad(f"Missing required parameter: '{required}'.", required)
    return request_rules.openai_problem(endpoint, body)   # parameters, strict schemas


def _bad(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {"status": 400, "type": "invalid_request_error", "param": param, "code": code, "message": message}


CONTEXT_ERROR = {
    "status": 400,
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
    "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
    "1000024 tokens. Please reduce the length of the messages.",
}
SERVER_ERROR = {
    "status": 500,
    "type": "server_error",
    "param": None,
    "code": None,
    "message": "The server had an error while processing your request. Sorry about that!",
}


def decide(
    endpoint: str,
    body: Any,
    *,
    custom_id: str,
    batch_id: str,
    seed: int,
    failure_rate: float,
    allow_never: bool = True,
    prompt: answers.Prompt | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Classify one request: ('s', None) success, ('f', error) failure, ('n', None) never run.
    ``prompt`` is the body's prompt when the caller has it already."""
    if not isinstance(body, dict):
        return "f", _bad("The request body must be a JSON object.", None)
    marks = (prompt or prompt_for(endpoint, body)).markers()
    if "never" in marks and allow_never:
        return "n", None
    if "error400" in marks:
        return "f", CONTEXT_ERROR
    if "error500" in marks:
        return "f", SERVER_ERROR
    problem = _problem(endpoint, body)
    if problem:
        return "f", problem
    if failure_rate > 0 and unit(seed, batch_id, custom_id, "failure") < failure_rate:
        return "f", SERVER_ERROR
    return "s", None


def _usage_chat(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def body_salt(body: Any) -> str:
    """Return a salt that depends only on the request body (so answers never depend on the batch)."""
    return digest("body", json.dumps(body, sort_keys=True)).hex()[:32]


def _typed(schema: Any, prompt: answers.Prompt, body: dict[str, Any], marks: set[str]) -> str:
    """Return JSON text for a schema, honouring the badjson/badschema/badrange markers."""
    if "badjson" in marks:
        return schemas.BAD_JSON
    doc = schemas.instance(schema, prompt, body_salt(body))
    if "badschema" in marks:
        doc = schemas.drop_required(schema, doc)
    if "badrange" in marks:
        doc = schemas.out_of_range(schema, doc)
    return json.dumps(doc)


def _forced_function(body: dict[str, Any]) -> dict[str, Any] | None:
    """Return the function tool a chat body forces (tool_choice names one, or 'required')."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return next((t["function"] for t in tools if t["function"].get("name") == name), None)
    if choice == "required" and tools:
        return tools[0]["function"]
    return None


def chat_body(body: dict[str, Any], salt: str, created: int, azure: bool,
              prompt: answers.Prompt | None = None) -> dict[str, Any]:
    """Return a ``chat.completion`` for a Chat Completions body."""
    prompt = prompt or answers.openai_chat_prompt(body)
    marks = prompt.markers()
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    function = _forced_function(body)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    finish = "stop"
    if function is not None:
        arguments = _typed(function.get("parameters") or {"type": "object"}, prompt, body, marks)
        if "truncate" in marks:
            arguments, finish = answers.truncate(arguments), "length"
        message["tool_calls"] = [{"id": "call_" + b62_token(24, salt, "call"), "type": "function",
                                  "function": {"name": function.get("name"), "arguments": arguments}}]
        produced = arguments
    else:
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            content = _typed(spec.get("schema") or {"type": "object"}, prompt, body, marks)
        elif fmt.get("type") == "json_object":
            content = schemas.BAD_JSON if "badjson" in marks else json.dumps({"answer": answers.text_answer(prompt)})
        else:
            content = answers.text_answer(prompt)
        if "truncate" in marks:
            content, finish = answers.truncate(content), "length"
        if "filter" in marks:
            content, finish = answers.truncate(content), "content_filter"
        message["content"] = content
        produced = content
        if "refuse" in marks:
            message["content"], message["refusal"], finish = None, answers.REFUSAL_TEXT, "stop"
            produced = answers.REFUSAL_TEXT
    choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    out: dict[str, Any] = {
        "id": "chatcmpl-" + b62_token(29, salt, "chatcmpl"),
        "object": "chat.completion",
        "created": created,
        "model": body.get("model"),
        "choices": [choice],
        "usage": _usage_chat(prompt.input_tokens(), answers.output_tokens(produced)),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }
    if azure:
        choice["content_filter_results"] = dict(_FILTER)
        if finish == "content_filter":
            choice["content_filter_results"]["violence"] = {"filtered": True, "severity": "high"}
        out["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": dict(_FILTER)}]
    return out


def responses_body(body: dict[str, Any], salt: str, created: int) -> dict[str, Any]:
    """Return a ``response`` object for a Responses API body."""
    prompt = answers.openai_responses_prompt(body)
    marks = prompt.markers()
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    fmt = text_cfg.get("format") if isinstance(text_cfg.get("format"), dict) else {}
    if fmt.get("type") == "json_schema":
        text = _typed(fmt.get("schema") or {"type": "object"}, prompt, body, marks)
    else:
        text = answers.text_answer(prompt)
    truncated = bool(marks & {"truncate", "filter"})
    if truncated:
        text = answers.truncate(text)
    reason = "content_filter" if "filter" in marks else "max_output_tokens"
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    if "refuse" in marks:
        part, text = {"type": "refusal", "refusal": answers.REFUSAL_TEXT}, answers.REFUSAL_TEXT
    tin, tout = prompt.input_tokens(), answers.output_tokens(text)
    return {
        "id": "resp_" + hex_token(48, salt, "resp"),
        "object": "response",
        "created_at": created,
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": reason} if truncated else None,
        "error": None,
        "model": body.get("model"),
        "instructions": body.get("instructions"),
        "output": [{
            "type": "message", "id": "msg_" + hex_token(48, salt, "msg"),
            "status": "incomplete" if truncated else "completed", "role": "assistant",
            "content": [part],
        }],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": fmt or {"type": "text"}},
        "usage": {"input_tokens": tin, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tout,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tin + tout},
    }


def completions_body(body: dict[str, Any], salt: str, created: int) -> dict[str, Any]:
    """Return a ``text_completion`` for a legacy Completions body."""
    prompt = answers.openai_completions_prompt(body)
    text = answers.text_answer(prompt)
    finish = "stop"
    if "truncate" in prompt.markers():
        text, finish = answers.truncate(text), "length"
    if "filter" in prompt.markers():
        text, finish = answers.truncate(text), "content_filter"
    return {
        "id": "cmpl-" + b62_token(29, salt, "cmpl"), "object": "text_completion", "created": created,
        "model": body.get("model"),
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": _usage_chat(prompt.input_tokens(), answers.output_tokens(text)),
    }


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """Return an embedding ``list``: one deterministic unit vector per input."""
    model = str(body.get("model"))
    dims = answers.embedding_dims(model, body.get("dimensions"))
    data, tokens = [], 0
    for index, item in enumerate(_inputs(body.get("input"))):
        text = item if isinstance(item, str) else json.dumps(item)
        tokens += _input_tokens(item)
        vector: Any = answers.embed(text, dims)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def moderations_body(body: dict[str, Any], salt: str) -> dict[str, Any]:
    """Return a moderation result that flags nothing."""
    results = [{
        "flagged": False,
        "categories": {c: False for c in _MODERATION_CATEGORIES},
        "category_scores": {c: 0.0001 for c in _MODERATION_CATEGORIES},
    } for _ in _inputs(body.get("input"))]
    return {"id": "modr-" + b62_token(24, salt, "modr"), "model": body.get("model") or "omni-moderation-latest",
            "results": results}


def success_body(endpoint: str, body: dict[str, Any], salt: str, created: int, azure: bool,
                 prompt: answers.Prompt | None = None) -> dict[str, Any]:
    """Return the 200 response body for a request to a (normalised) endpoint.

    ``salt`` (per batch and custom_id) only shapes the ids in the body; the
    content depends on the request body alone. ``prompt``: the chat body's prompt, if known.
    """
    if endpoint == "/chat/completions":
        return chat_body(body, salt, created, azure, prompt)
    if endpoint == "/responses":
        return responses_body(body, salt, created)
    if endpoint == "/completions":
        return completions_body(body, salt, created)
    if endpoint == "/embeddings":
        return embeddings_body(body)
    if endpoint == "/moderations":
        return moderations_body(body, salt)
    if endpoint == "/videos":
        return {"id": "video_" + hex_token(32, salt, "video"), "object": "video", "model": body.get("model"),
                "status": "completed", "progress": 100, "created_at": created, "completed_at": created,
                "seconds": str(body.get("seconds", "4")), "size": body.get("size", "720x1280")}
    return {"created": created, "data": [{"b64_json": _TINY_PNG}],
            "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}


def body_usage(endpoint: str, response_body: dict[str, Any]) -> tuple[int, int]:
    """Return (input, output) tokens of a success body, for the batch's ``usage``."""
    usage = response_body.get("usage") or {}
    if "prompt_tokens" in usage:
        return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0) or 0)
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
