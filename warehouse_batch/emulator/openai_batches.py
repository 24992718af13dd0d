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

import json
from typing import Any

from . import openai_bodies
from .lifecycle import Schedule, View
from .openai_files import THIRTY_DAYS, create_file
from .ids import b62_token, hex_token, shuffled
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


def load_requests(store: Store, batch_id: str) -> list[dict[str, Any]]:
    """Return the batch's requests (custom_id + body) in input order."""
    return [json.loads(line) for line in store.blob(f"requests/{batch_id}").splitlines() if line.strip()]


def materialise(store: Store, rec: dict[str, Any], view: View) -> dict[str, Any]:
    """Write the output/error files of a batch that just ended; return the frozen extras."""
    end = view.end_time() or rec["created_at"]
    extras: dict[str, Any] = {"output_file_id": None, "error_file_id": None,
                              "request_counts": {"total": 0, "completed": 0, "failed": 0}, "usage": _usage(0, 0)}
    if view.status == "failed":
        if rec.get("errors") is None:
            extras["errors"] = [FORCED_FAILURE]
        return extras
    azure = rec["protocol"] == "azure"
    endpoint = openai_bodies.normalise_endpoint(rec["endpoint"])
    requests = load_requests(store, rec["id"])
    sch = Schedule(rec)
    ok_lines: list[tuple[str, str]] = []
    err_lines: list[tuple[str, str]] = []
    log: list[dict[str, Any]] = []
    tokens_in = tokens_out = 0
    for pos, index in enumerate(rec["order"]):
        req = requests[index]
        cid = req["custom_id"]
        line_id = "batch_req_" + hex_token(32, rec["id"], cid)
        if pos < view.processed:
            finished = int(min(sch.finish_time(pos + 1), end))
            kind, error = rec["kinds"][pos], None
            if kind != "s":  # the plan knows successes; recompute only to get error details
                kind, error = openai_bodies.decide(endpoint, req["body"], custom_id=cid, batch_id=rec["id"],
                                                   seed=rec["seed"], failure_rate=rec["failure_rate"],
                                                   allow_never=False)
            request_id = "req_" + hex_token(32, rec["id"], cid, "request")
            if kind == "f" and error is not None:
                body = {"error": {k: error[k] for k in ("message", "type", "param", "code")}}
                line = {"id": line_id, "custom_id": cid,
                        "response": {"status_code": error["status"], "request_id": request_id, "body": body},
                        "error": None}
                err_lines.append((cid, json.dumps(line)))
                log.append(_entry(rec, cid, "errored"))
            elif _no_answer(endpoint, req["body"], line_id, cid, request_id, ok_lines, err_lines):
                log.append(_entry(rec, cid, "noanswer"))
            else:
                salt = b62_token(16, rec["id"], cid)
                body = openai_bodies.success_body(endpoint, req["body"], salt, finished, azure)
                used_in, used_out = openai_bodies.body_usage(endpoint, body)
                tokens_in, tokens_out = tokens_in + used_in, tokens_out + used_out
                line = {"id": line_id, "custom_id": cid,
                        "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": None}
                ok_lines.append((cid, json.dumps(line)))
                log.append(_entry(rec, cid, "succeeded"))
            continue
        if view.status == "expired":
            err_lines.append((cid, json.dumps({"id": line_id, "custom_id": cid, "response": None,
                                               "error": EXPIRED_ERROR})))
            log.append(_entry(rec, cid, "expired"))
        else:
            if rec.get("cancel_writes_error_lines", True):
                err_lines.append((cid, json.dumps({"id": line_id, "custom_id": cid, "response": None,
                                                   "error": CANCELLED_ERROR})))
            log.append(_entry(rec, cid, "cancelled"))
    extras["output_file_id"] = _write(store, rec, ok_lines, "output", end, force=False)
    extras["error_file_id"] = _write(store, rec, err_lines, "error", end, force=azure)
    extras["request_counts"] = {"total": rec["total"], "completed": len(ok_lines),
                                "failed": sum(1 for e in log if e["outcome"] == "errored")}
    extras["usage"] = _usage(tokens_in, tokens_out)
    store.log_processed(log)
    return extras


def _no_answer(endpoint: str, body: Any, line_id: str, cid: str, request_id: str,
               ok_lines: list[tuple[str, str]], err_lines: list[tuple[str, str]]) -> bool:
    """The ``noanswer`` / ``noresult`` markers: a 200 line whose body holds no answer, or a
    line with neither response nor error. Returns whether a line was written."""
    marks = openai_bodies.prompt_for(endpoint, body).markers() if isinstance(body, dict) else set()
    if "noresult" in marks:
        err_lines.append((cid, json.dumps({"id": line_id, "custom_id": cid, "response": None,
                                           "error": None})))
        return True
    if "noanswer" in marks:
        empty = {"id": "chatcmpl-" + line_id[-12:], "object": "chat.completion", "model": body.get("model")}
        ok_lines.append((cid, json.dumps({"id": line_id, "custom_id": cid, "response": {
            "status_code": 200, "request_id": request_id, "body": empty}, "error": None})))
        return True
    return False


def _entry(rec: dict[str, Any], custom_id: str, outcome: str) -> dict[str, Any]:
    return {"protocol": rec["protocol"], "batch_id": rec["id"], "custom_id": custom_id, "outcome": outcome,
            "billed": outcome == "succeeded"}


def _write(store: Store, rec: dict[str, Any], lines: list[tuple[str, str]], kind: str, end: float,
           *, force: bool) -> str | None:
    """Write one result file (shuffled, newline-terminated) and return its id, or None when empty."""
    if not lines and not force:
        return None
    ordered = shuffled(lines, lambda pair: pair[0], rec["seed"], rec["id"], kind)
    data = "".join(text + "\n" for _, text in ordered).encode("utf-8")
    ttl = rec.get("output_expires_after") or THIRTY_DAYS
    file_rec = create_file(store, protocol=rec["protocol"], filename=f"{rec['id']}_{kind}.jsonl",
                           purpose="batch_output", data=data, created_at=end, expires_at=int(end) + int(ttl))
    return file_rec["id"]
