"""Anthropic MessageBatch objects: rendering and the results JSONL.

Status mapping from the shared lifecycle: validating/in_progress/finalizing →
``in_progress``; cancelling → ``canceling``; any terminal state → ``ended``.
Request counts: ``processing = N`` and everything else 0 until the batch has
ended; then the sum of succeeded/errored/canceled/expired equals N.
``results_url`` is absolute, on the host the client used, and only set once
ended. ``archived_at`` is ``created_at + 29 days`` once the clock passes it;
results are gone from then on.

Results: one line per request, ``\\n``-terminated, seeded shuffled order:
processed requests are ``succeeded`` (a full Message) or ``errored``
(``{"type": "error", "error": {type, message}, "request_id"}``); the rest are
``canceled`` (cancelled batch) or ``expired`` (expired batch), bare.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from . import answers, anthropic_messages
from .ids import b62_token, shuffled
from .lifecycle import View
from .store import Store

ARCHIVE_AFTER = 29 * 24 * 3600


def rfc3339(moment: float | None) -> str | None:
    """Return an RFC 3339 UTC timestamp with microseconds and ``Z`` (None stays None)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def archived_at(rec: dict[str, Any], now: float) -> float | None:
    """Return when the batch's results were archived, or None if not yet (or not ended)."""
    moment = float(rec["created_at"]) + ARCHIVE_AFTER
    return moment if rec.get("final") and now >= moment else None


def processing_status(view: View) -> str:
    """Map a lifecycle status onto in_progress / canceling / ended."""
    if view.terminal:
        return "ended"
    return "canceling" if view.status == "cancelling" else "in_progress"


def render(rec: dict[str, Any], view: View, now: float, origin: str) -> dict[str, Any]:
    """Return the public MessageBatch object (every field present)."""
    status = processing_status(view)
    final = rec.get("final") or {}
    if status == "ended":
        counts = dict(final["request_counts"])
        results_url = f"{origin}/v1/messages/batches/{rec['id']}/results"
    else:
        counts = {"processing": rec["total"], "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        results_url = None
    return {
        "id": rec["id"],
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": rfc3339(view.end_time()) if status == "ended" else None,
        "created_at": rfc3339(rec["created_at"]),
        "expires_at": rfc3339(rec["expires_at"]),
        "archived_at": rfc3339(archived_at(rec, now)),
        "cancel_initiated_at": rfc3339(view.times.get("cancelling_at")),
        "results_url": results_url,
    }


def load_requests(store: Store, batch_id: str) -> list[dict[str, Any]]:
    """Return the batch's requests (custom_id + params) in input order."""
    return json.loads(store.blob(f"requests/{batch_id}") or b"[]")


def materialise(store: Store, rec: dict[str, Any], view: View) -> dict[str, Any]:
    """Write the results of a batch that just ended; return the frozen extras (request counts)."""
    requests = load_requests(store, rec["id"])
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    lines: list[tuple[str, str]] = []
    log: list[tuple[str, str]] = []
    for pos, index in enumerate(store.order(rec)):
        req = requests[index]
        cid, params = req["custom_id"], req["params"]
        if pos < view.processed:
            kind, error = rec["kinds"][pos], None
            if kind != "s":  # the plan knows successes; recompute only to get error details
                kind, error = anthropic_messages.decide(
                    params, custom_id=cid, batch_id=rec["id"], seed=rec["seed"], failure_rate=rec["failure_rate"],
                    version=rec["anthropic_version"], strict=rec["strict_version"], allow_never=False)
            if kind == "f" and error is not None:
                result: dict[str, Any] = {"type": "errored", "error": {
                    "type": "error", "error": error, "request_id": "req_011C" + b62_token(20, rec["id"], cid)}}
                outcome = "errored"
            else:
                salt = b62_token(16, rec["id"], cid)
                result = {"type": "succeeded",
                          "message": anthropic_messages.message(params, salt, store.cache_seen)}
                outcome = "succeeded"
                marks = answers.anthropic_prompt(params).markers()
                if marks & {"noanswer", "noresult"}:   # a result without an answer
                    result["message"]["content"] = []
                    outcome = "noanswer"
        else:
            outcome = "expired" if view.status == "expired" else "canceled"
            result = {"type": outcome}
        counts["succeeded" if outcome == "noanswer" else outcome] += 1
        line = {"custom_id": cid, "result": result}
        if outcome == "noanswer" and "noresult" in answers.anthropic_prompt(params).markers():
            del line["result"]
        lines.append((cid, json.dumps(line)))
        log.append((cid, "cancelled" if outcome == "canceled" else outcome))
    del requests
    ordered = shuffled(lines, lambda pair: pair[0], rec["seed"], rec["id"], "results")
    with store.blob_writer(f"results/{rec['id']}") as handle:
        for start in range(0, len(ordered), 4096):
            handle.write("".join(text + "\n" for _, text in ordered[start:start + 4096]).encode("utf-8"))
    store.log_processed("anthropic", rec["id"], log)
    return {"request_counts": counts}
