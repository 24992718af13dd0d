"""OpenAI/Azure Batch objects: creation, rendering and the output/error files.

When a batch becomes terminal, :func:`materialise` writes its files once, at
the (deterministic) moment it ended:

* processed successes go to the output file (``purpose: batch_output``);
* processed failures go to the error file as
  ``{"response": {"status_code": 4xx/5xx, "request_id", "body": {"error": …}}, "error": null}``;
* unprocessed requests of an expired batch get ``batch_expired`` lines
  (``response: null``); of a cancelled batch ``batch_cancelled`` lines, or
  nothing when the batch's ``cancel_writes_error_lines`` knob was off;
* lines end in ``\\n`` and are in a seeded shuffled order;
* ``output_file_id``/``error_file_id`` are null when there is nothing to put
  in them, except that Azure always has an (maybe empty) error file.

Request counts: ``completed`` = successes, ``failed`` = processed failures
(expired/cancelled requests are not counted), ``total`` = all requests once
validation passed.
"""
from __future__ import annotations

import binascii
import hashlib
import json
from typing import Any, BinaryIO

from . import answers, openai_bodies
from .ids import digester
from .lifecycle import Schedule, View
from .openai_files import THIRTY_DAYS, create_file
from .openai_validate import parse_line
from .plan import counts_so_far
from .store import Store

EXPIRED_ERROR = {"code": "batch_expired",
                 "message": "This request could not be executed before the completion window expired."}
CANCELLED_ERROR = {"code": "batch_cancelled",
                   "message": "This request could not be executed because the batch was cancelled."}
FORCED_FAILURE = {"code": "batch_failed", "message": "The batch failed due to an internal error.",
                  "param": None, "line": None}


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def render(rec: dict[str, Any], view: View) -> dict[str, Any]:
    """Return the public Batch object for a record in a given state (every field present)."""
    final = rec.get("final") or {}
    errors = final.get("errors", rec.get("errors"))
    if final:
        counts = final["request_counts"]
        usage = final["usage"]
    else:
        total = 0 if view.status in ("validating", "failed") else rec["total"]
        ok, bad = counts_so_far(rec, view.processed)
        counts = {"total": total, "completed": ok, "failed": bad}
        usage = _usage(0, 0)
    return {
        "id": rec["id"],
        "object": "batch",
        "endpoint": rec["endpoint"],
        "model": rec.get("model"),
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": rec["input_file_id"],
        "completion_window": rec["completion_window"],
        "status": view.status,
        "output_file_id": final.get("output_file_id"),
        "error_file_id": final.get("error_file_id"),
        "created_at": int(rec["created_at"]),
        "in_progress_at": _int(view.times.get("in_progress_at")),
        "expires_at": _int(rec.get("expires_at")),
        "finalizing_at": _int(view.times.get("finalizing_at")),
        "completed_at": _int(view.times.get("completed_at")),
        "failed_at": _int(view.times.get("failed_at")),
        "expired_at": _int(view.times.get("expired_at")),
        "cancelling_at": _int(view.times.get("cancelling_at")),
        "cancelled_at": _int(view.times.get("cancelled_at")),
        "request_counts": counts,
        "usage": usage,
        "metadata": rec.get("metadata"),
    }


def _usage(tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens_in + tokens_out}


def request_lines(store: Store, batch_id: str) -> list[bytes]:
    """Return the batch's request lines (JSON with ``custom_id`` and ``body``) in input order."""
    handle = store.open_blob(f"requests/{batch_id}")
    if handle is None:
        return []
    with handle:
        return [line for line in handle if line.strip()]


def materialise(store: Store, rec: dict[str, Any], view: View) -> dict[str, Any]:
    """Write the output/error files of a batch that just ended; return the frozen extras.

    Requests are parsed again one at a time from the stored input lines; only the result
    lines of this batch are held (to shuffle them) until they are written.
    """
    end = view.end_time() or rec["created_at"]
    extras: dict[str, Any] = {"output_file_id": None, "error_file_id": None,
                              "request_counts": {"total": 0, "completed": 0, "failed": 0}, "usage": _usage(0, 0)}
    if view.status == "failed":
        if rec.get("errors") is None:
            extras["errors"] = [FORCED_FAILURE]
        return extras
    azure = rec["protocol"] == "azure"
    endpoint = openai_bodies.normalise_endpoint(rec["endpoint"])
    batch_id, seed = rec["id"], rec["seed"]
    lines = request_lines(store, batch_id)
    sch = Schedule(rec)
    kinds: str = rec["kinds"]
    processed = view.processed
    ids = _Ids(batch_id)
    out_key, err_key = digester(seed, batch_id, "output"), digester(seed, batch_id, "error")
    ok_lines: list[tuple[bytes, str]] = []
    err_lines: list[tuple[bytes, str]] = []
    outcomes: list[tuple[str, str]] = []
    tokens_in = tokens_out = failed = 0
    dumps, loads = json.dumps, parse_line
    cancel_lines = rec.get("cancel_writes_error_lines", True)
    plain_chat = endpoint == "/chat/completions" and not azure
    for pos, index in enumerate(store.order(rec)):
        req = loads(lines[index])
        cid = req["custom_id"]
        line_id = ids.line_id(cid)
        if pos >= processed:
            if view.status == "expired":
                err_lines.append((err_key(cid), dumps({"id": line_id, "custom_id": cid, "response": None,
                                                        "error": EXPIRED_ERROR})))
                outcomes.append((cid, "expired"))
            else:
                if cancel_lines:
                    err_lines.append((err_key(cid), dumps({"id": line_id, "custom_id": cid, "response": None,
                                                            "error": CANCELLED_ERROR})))
                outcomes.append((cid, "cancelled"))
            continue
        body = req["body"]
        finished = int(min(sch.finish_time(pos + 1), end))
        request_id = ids.request_id(cid)
        prompt = openai_bodies.prompt_for(endpoint, body) if isinstance(body, dict) else None
        kind, error = kinds[pos], None
        if kind != "s":  # the plan knows successes; recompute only to get error details
            kind, error = openai_bodies.decide(endpoint, body, custom_id=cid, batch_id=batch_id, seed=seed,
                                               failure_rate=rec["failure_rate"], allow_never=False, prompt=prompt)
        if kind == "f" and error is not None:
            response = {"status_code": error["status"], "request_id": request_id,
                        "body": {"error": {k: error[k] for k in ("message", "type", "param", "code")}}}
            err_lines.append((err_key(cid), dumps({"id": line_id, "custom_id": cid, "response": response,
                                                    "error": None})))
            outcomes.append((cid, "errored"))
            failed += 1
            continue
        marks = prompt.markers() if prompt is not None else set()
        if "noresult" in marks:  # a line with neither response nor error
            err_lines.append((err_key(cid), dumps({"id": line_id, "custom_id": cid, "response": None,
                                                    "error": None})))
            outcomes.append((cid, "noanswer"))
        elif "noanswer" in marks:  # a 200 line whose body holds no answer
            empty = {"id": "chatcmpl-" + line_id[-12:], "object": "chat.completion", "model": body.get("model")}
            ok_lines.append((out_key(cid), dumps({"id": line_id, "custom_id": cid, "response": {
                "status_code": 200, "request_id": request_id, "body": empty}, "error": None})))
            outcomes.append((cid, "noanswer"))
        elif plain_chat and (fast := _plain_chat_line(line_id, cid, request_id, ids.salt(cid), finished, body,
                                                      prompt)) is not None:
            text, used_in, used_out = fast
            tokens_in, tokens_out = tokens_in + used_in, tokens_out + used_out
            ok_lines.append((out_key(cid), text))
            outcomes.append((cid, "succeeded"))
        else:
            answer = openai_bodies.success_body(endpoint, body, ids.salt(cid), finished, azure, prompt)
            used_in, used_out = openai_bodies.body_usage(endpoint, answer)
            tokens_in, tokens_out = tokens_in + used_in, tokens_out + used_out
            ok_lines.append((out_key(cid), dumps({"id": line_id, "custom_id": cid, "response": {
                "status_code": 200, "request_id": request_id, "body": answer}, "error": None})))
            outcomes.append((cid, "succeeded"))
    del lines
    completed = len(ok_lines)
    extras["output_file_id"] = _write(store, rec, ok_lines, "output", end, force=False)
    extras["error_file_id"] = _write(store, rec, err_lines, "error", end, force=azure)
    extras["request_counts"] = {"total": rec["total"], "completed": completed, "failed": failed}
    extras["usage"] = _usage(tokens_in, tokens_out)
    store.log_processed(rec["protocol"], batch_id, outcomes)
    return extras


def _plain_chat_line(line_id: str, cid: str, request_id: str, salt: str, created: int, body: dict[str, Any],
                     prompt: answers.Prompt | None) -> tuple[str, int, int] | None:
    """The success line of a plain chat request (a text answer: no markers, no structured
    output, no forced tool; OpenAI, not Azure) written straight from a template, byte for
    byte what ``json.dumps`` gives for :func:`.openai_bodies.chat_body` in its line, with its
    (input, output) tokens; None for any other request. Most requests of a large batch
    take this path, which costs a fraction of building and encoding the nested dicts."""
    if prompt is None or "[[emu:" in prompt.last_user or body.get("tool_choice") is not None:
        return None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return None
    model = body.get("model")
    if not isinstance(model, str):
        return None
    content = answers.text_answer(prompt)
    tin, tout = prompt.input_tokens(), answers.output_tokens(content)
    dumps = json.dumps
    return (f'{{"id": "{line_id}", "custom_id": {dumps(cid)}, "response": {{"status_code": 200, '
            f'"request_id": "{request_id}", "body": {{"id": "chatcmpl-{_b62(salt, "chatcmpl", 29)}", '
            f'"object": "chat.completion", "created": {created}, "model": {dumps(model)}, "choices": '
            f'[{{"index": 0, "message": {{"role": "assistant", "content": {dumps(content)}, "refusal": null, '
            f'"annotations": []}}, "logprobs": null, "finish_reason": "stop"}}], "usage": {{"prompt_tokens": '
            f'{tin}, "completion_tokens": {tout}, "total_tokens": {tin + tout}, "prompt_tokens_details": '
            f'{{"cached_tokens": 0, "audio_tokens": 0}}, "completion_tokens_details": {{"reasoning_tokens": 0, '
            f'"audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}}}, '
            f'"service_tier": "default", "system_fingerprint": "fp_emulator"}}}}, "error": null}}'), tin, tout


_ALTCHARS = bytes.maketrans(b"+/", b"Ab")  # what base64.b64encode(altchars=b"Ab") does


def _b62(salt: str, label: str, length: int) -> str:
    """b62_token(length, salt, label) for lengths up to 43 (one digest)."""
    raw = hashlib.sha256(f"0\x1f{salt}\x1f{label}".encode("utf-8")).digest()
    return binascii.b2a_base64(raw, newline=False).translate(_ALTCHARS).decode("ascii")[:length]


class _Ids:
    """The per-request ids of one batch's results (each a hash of the batch id and the
    custom_id, as :func:`.ids.hex_token` / :func:`.ids.b62_token` would give them)."""

    def __init__(self, batch_id: str) -> None:
        self._line = digester(batch_id)
        self._salt = digester(0, batch_id)
        self._request = "\x1frequest".encode("utf-8")
        self._prefix = f"{batch_id}\x1f"

    def line_id(self, cid: str) -> str:
        """``batch_req_`` + hex_token(32, batch_id, cid)."""
        return "batch_req_" + self._line(cid).hex()[:32]

    def request_id(self, cid: str) -> str:
        """``req_`` + hex_token(32, batch_id, cid, "request")."""
        return "req_" + hashlib.sha256((self._prefix + cid).encode("utf-8") + self._request).hexdigest()[:32]

    def salt(self, cid: str) -> str:
        """b62_token(16, batch_id, cid)."""
        return binascii.b2a_base64(self._salt(cid), newline=False).translate(_ALTCHARS).decode("ascii")[:16]


def _write(store: Store, rec: dict[str, Any], lines: list[tuple[bytes, str]], kind: str, end: float,
           *, force: bool) -> str | None:
    """Write one result file and return its id, or None when empty. ``lines`` are
    (shuffle key, text) pairs: the file holds the texts sorted by key (the seeded shuffled
    order of :func:`.ids.shuffled`), each ending in a newline."""
    if not lines and not force:
        return None
    lines.sort()

    def write(handle: BinaryIO) -> None:
        for start in range(0, len(lines), 4096):
            handle.write("".join(text + "\n" for _, text in lines[start:start + 4096]).encode("utf-8"))

    ttl = rec.get("output_expires_after") or THIRTY_DAYS
    file_rec = create_file(store, protocol=rec["protocol"], filename=f"{rec['id']}_{kind}.jsonl",
                           purpose="batch_output", write=write, created_at=end, expires_at=int(end) + int(ttl))
    return file_rec["id"]
