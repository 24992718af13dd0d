"""Deterministic fake model answers: what the emulator "says" to a request.

The answer depends only on the request body, never on the batch or the time,
so the same row always gets the same answer. The rules:

Text
    If the system prompt (OpenAI ``system``/``developer`` messages or Responses
    ``instructions``; Anthropic ``system``) or any user message mentions
    "sentiment" (any case), the answer is exactly one of ``positive``,
    ``negative`` or ``neutral``: the words of the *last* user message are
    matched against a tiny lexicon (:data:`POSITIVE`, :data:`NEGATIVE`); more
    positive hits gives ``positive``, more negative hits ``negative``, a tie
    (including none) ``neutral``. Otherwise the answer is
    ``"emulated answer to: "`` + the first 60 characters of the last user message.

Tokens
    input tokens = ceil(total characters of all message and system text / 4);
    output tokens = ceil(len(answer) / 4), at least 1.

Markers in the last user message (see :data:`MARKERS`)
    ``[[emu:error400]]`` permanent failure (400 ``context_length_exceeded`` /
    Anthropic ``invalid_request_error``); ``[[emu:error500]]`` retryable failure
    every time (500 ``server_error`` / Anthropic ``api_error``);
    ``[[emu:never]]`` never processed; ``[[emu:truncate]]`` a success whose
    answer is cut in half (``finish_reason: "length"`` / ``stop_reason:
    "max_tokens"``); ``[[emu:badjson]]`` / ``[[emu:badschema]]`` for structured
    requests: content that is not JSON / JSON missing a required property;
    ``[[emu:noanswer]]`` a 200 / ``succeeded`` result without an answer (OpenAI: a body
    without ``choices`` or ``data``; Anthropic: a message with no content blocks);
    ``[[emu:noresult]]`` a result line without one (OpenAI ``response: null`` and
    ``error: null``; Anthropic a line without ``result``). Neither is billed in the
    processed log (outcome ``noanswer``).
    ``[[emu:refuse]]`` the model declines (billed): OpenAI chat ``message.content: null``
    with ``message.refusal`` = :data:`REFUSAL_TEXT` (Responses: an output content part of
    type ``refusal``); Anthropic ``stop_reason: "refusal"`` with the text.
    ``[[emu:filter]]`` the answer is stopped by the content filter (billed): OpenAI
    ``finish_reason: "content_filter"`` with half an answer (Azure also marks
    ``content_filter_results`` filtered; Responses ``status: incomplete`` with
    ``incomplete_details.reason: content_filter``); Anthropic has no content filter: the
    same as ``refuse``.
    ``[[emu:err_<type>]]`` (Anthropic) the result is ``errored`` with that ``error.type``,
    one of :data:`ANTHROPIC_ERROR_TYPES` (e.g. ``[[emu:err_not_found_error]]``).

Embeddings
    One unit-length vector per input, from a SHA-256 stream of the exact text
    (identical texts give identical vectors); the dimension is ``dimensions``
    if given, else 3072 for ``text-embedding-3-large`` and 1536 otherwise.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .ids import digest

MARKERS = ("error400", "error500", "never", "truncate", "badjson", "badschema", "noanswer",
           "noresult", "refuse", "filter")

REFUSAL_TEXT = "I'm sorry, but I can't help with that."
# Anthropic's per-request error types (docs "Errors"), each with a message of its kind.
ANTHROPIC_ERROR_TYPES = {
    "invalid_request_error": "There was an issue with the format or content of your request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "model: claude-nonexistent",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}


def anthropic_error_type(marks: set[str]) -> str | None:
    """Return the error type an ``[[emu:err_<type>]]`` marker asks for (None if none)."""
    for mark in sorted(marks):
        if mark.startswith("err_") and mark[4:] in ANTHROPIC_ERROR_TYPES:
            return mark[4:]
    return None
_MARKER_RE = re.compile(r"\[\[emu:([a-z0-9_]+)\]\]")
_WORD_RE = re.compile(r"[a-z']+")

POSITIVE = frozenset({"love", "loved", "loves", "great", "excellent", "perfect", "perfectly", "happy"})
NEGATIVE = frozenset({"broken", "bad", "terrible", "refund", "refunds", "disappointed", "disappointing", "worst"})
LABELS = ("positive", "negative", "neutral")
# only the lexicon's words, as whole [a-z']+ runs: the same counts as splitting into words
_LEXICON_RE = re.compile(r"(?<![a-z'])(?:" + "|".join(sorted(POSITIVE | NEGATIVE, key=len, reverse=True))
                         + r")(?![a-z'])")

DEFAULT_EMBEDDING_DIMS = 1536
_EMBEDDING_DIMS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}


@dataclass
class Prompt:
    """The text of one request, reduced to what the answer rules need."""

    system: str = ""
    users: list[str] = field(default_factory=list)
    chars: int = 0

    @property
    def last_user(self) -> str:
        """Return the text of the last user message ('' if none)."""
        return self.users[-1] if self.users else ""

    def markers(self) -> set[str]:
        """Return the ``[[emu:…]]`` markers found in the last user message."""
        last = self.last_user
        return set(_MARKER_RE.findall(last)) if "[[emu:" in last else set()

    def input_tokens(self) -> int:
        """Return the emulated prompt size: ceil(chars / 4)."""
        return math.ceil(self.chars / 4)


def content_text(content: Any) -> str:
    """Return the plain text of a message ``content`` (string or list of blocks/parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:  # Anthropic tool_result
                    parts.append(content_text(block["content"]))
        return "\n".join(p for p in parts if p)
    return ""


def content_chars(content: Any) -> int:
    """Return the number of text characters in a ``content`` (no separators counted)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for block in content:
            if isinstance(block, str):
                total += len(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    total += len(block["text"])
                elif "content" in block:
                    total += content_chars(block["content"])
        return total
    return 0


def _prompt(system_parts: list[Any], turns: list[tuple[str, Any]]) -> Prompt:
    """Build a Prompt from raw system contents and (role, raw content) turns."""
    system = "\n".join(t for t in (content_text(p) for p in system_parts) if t)
    users = [content_text(raw) for role, raw in turns if role == "user"]
    chars = sum(content_chars(p) for p in system_parts) + sum(content_chars(raw) for _, raw in turns)
    return Prompt(system=system, users=users, chars=chars)


def openai_chat_prompt(body: dict[str, Any]) -> Prompt:
    """Build the prompt of a Chat Completions body (what :func:`_prompt` builds, with a fast
    path for plain-string contents: this runs for every request of every batch)."""
    system: list[str] = []
    users: list[str] = []
    chars = 0
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            text, size = content, len(content)
        else:
            text, size = content_text(content), content_chars(content)
        chars += size
        role = message.get("role")
        if role in ("system", "developer"):
            if text:
                system.append(text)
        elif role == "user":
            users.append(text)
    return Prompt(system="\n".join(system), users=users, chars=chars)


def openai_responses_prompt(body: dict[str, Any]) -> Prompt:
    """Build the prompt of a Responses API body (``instructions`` + ``input``)."""
    system: list[Any] = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    raw = body.get("input")
    turns: list[tuple[str, Any]] = []
    if isinstance(raw, str):
        turns.append(("user", raw))
    elif isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict):
                continue
            if item.get("role") in ("system", "developer"):
                system.append(item.get("content"))
            else:
                turns.append((str(item.get("role", "user")), item.get("content")))
    return _prompt(system, turns)


def openai_completions_prompt(body: dict[str, Any]) -> Prompt:
    """Build the prompt of a legacy Completions body."""
    raw = body.get("prompt")
    texts = raw if isinstance(raw, list) else [raw]
    return _prompt([], [("user", t) for t in texts if isinstance(t, str)])


def anthropic_prompt(params: dict[str, Any]) -> Prompt:
    """Build the prompt of Anthropic Messages params."""
    system = [params.get("system")] if params.get("system") else []
    turns = [(str(m.get("role")), m.get("content")) for m in params.get("messages") or [] if isinstance(m, dict)]
    return _prompt(system, turns)


def sentiment(text: str) -> str:
    """Return positive/negative/neutral for a text using the tiny lexicon (words are the
    maximal runs of ``[a-z']`` in the lower-cased text)."""
    hits = _LEXICON_RE.findall(text.lower())
    pos = sum(w in POSITIVE for w in hits)
    neg = len(hits) - pos
    if pos > neg:
        return "positive"
    if neg > pos:
        return "negative"
    return "neutral"


def wants_sentiment(prompt: Prompt) -> bool:
    """Return whether the system prompt or a user message mentions 'sentiment'."""
    return "sentiment" in prompt.system.lower() or any("sentiment" in u.lower() for u in prompt.users)


def text_answer(prompt: Prompt) -> str:
    """Return the deterministic text answer for a prompt (see the module rules)."""
    if wants_sentiment(prompt):
        return sentiment(prompt.last_user)
    return "emulated answer to: " + prompt.last_user[:60]


def output_tokens(text: str) -> int:
    """Return the emulated completion size: ceil(len / 4), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def truncate(text: str) -> str:
    """Return the answer cut in half, as a model hitting its token limit would leave it."""
    return text[: max(1, len(text) // 2)] if len(text) > 1 else text


def embedding_dims(model: str, requested: Any = None) -> int:
    """Return the vector size for a model, honouring an explicit ``dimensions``."""
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        return requested
    return _EMBEDDING_DIMS.get(model, DEFAULT_EMBEDDING_DIMS)


def embed(text: str, dims: int) -> list[float]:
    """Return a deterministic unit-length vector for a text."""
    values: list[float] = []
    block = 0
    while len(values) < dims:
        chunk = digest("embedding", text, block)
        block += 1
        for i in range(0, 32, 4):
            values.append(int.from_bytes(chunk[i:i + 4], "big") / 2**31 - 1.0)
    values = values[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 8) for v in values]
