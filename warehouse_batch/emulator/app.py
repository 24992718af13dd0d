"""The emulator application: state, settings and the request pipeline.

:class:`Emulator` owns the configuration, the clock, the store and the fault
book, and turns a :class:`~.wire.Request` into a :class:`~.wire.Response`:

1. ``/_emulator/…`` goes to the admin API (not logged, no faults);
2. provider calls are classified (Anthropic ``/v1/messages/…``, OpenAI
   ``/v1/…``, Azure ``/openai/…``, Gemini ``/v1beta/…`` and
   ``/upload/v1beta/files``), a matching scripted fault may answer
   instead (after an optional delay), otherwise the protocol module answers;
3. every provider response gets its request-id header, and the call is
   appended to the request log.

All state access happens under one re-entrant lock; only fault delays and
socket I/O run outside it.

On start, persisted knobs (``state_dir/docs/config.json``) take precedence
over the ``EmulatorConfig`` passed in, except host, port and state_dir, so a
restarted emulator behaves like the one that was stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
import time
import traceback
from copy import deepcopy
from typing import Any

from . import admin_api, anthropic_api, gemini_api, openai_api
from .clock import Clock
from .config import READ_ONLY_KNOBS, EmulatorConfig
from .faults import FaultBook
from .ids import anthropic_request_id, openai_request_id
from .persist import DiskBackend, MemoryBackend
from .store import Store
from .wire import Request, Response, anthropic_error, canned_error, openai_error


def classify(path: str) -> str:
    """Return which protocol a provider path belongs to: 'anthropic', 'openai', 'azure' or
    'gemini'."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if gemini_api.is_gemini(path):
        return "gemini"
    if path == "/openai" or path.startswith("/openai/"):
        return "azure"
    return "openai"


class Emulator:
    """One emulator instance (see the module docstring)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = deepcopy(config)
        backend = DiskBackend(config.state_dir) if config.state_dir else MemoryBackend()
        self.store = Store(backend)
        saved = self.store.load_setting("config")
        if isinstance(saved, dict):
            try:
                self.config.update({k: v for k, v in saved.items() if k not in READ_ONLY_KNOBS})
            except ValueError:
                pass  # a config from an incompatible version: keep the one we were given
        clock_state = self.store.load_setting("clock") or {}
        self.clock = Clock(self.config.clock)
        if clock_state.get("mode") == self.config.clock:
            self.clock.offset = float(clock_state.get("offset", 0.0))
        self.store.id_seed = self.config.seed
        self.lock = threading.RLock()
        self.faults = FaultBook()
        self.create_calls = 0   # creates seen while create_429_rate > 0 (in memory only)
        self.sync_calls = 0     # synchronous model calls seen (sync_api.py; in memory only)
        self.sync_window: tuple[int, int] = (-1, 0)   # (minute of the clock, calls in it)
        self.closed = False
        self.save_settings()

    # -- settings ----------------------------------------------------------
    def now(self) -> float:
        """Return the emulated time."""
        return self.clock.now()

    def save_settings(self) -> None:
        """Persist the knobs and the clock."""
        self.store.save_setting("config", self.config.mutable_knobs())
        self.store.save_setting("clock", self.clock.state())

    def update_config(self, changes: dict[str, Any]) -> None:
        """Apply a partial knob update (ValueError on bad input) and persist it."""
        self.config.update(changes)
        self.clock.set_mode(self.config.clock)
        self.store.id_seed = self.config.seed
        self.save_settings()

    def take_create_fault(self) -> str | None:
        """Return the create fault to apply to this create call, using it up."""
        kind = self.config.create_fault
        if kind is None or self.config.create_fault_count <= 0:
            return None
        self.config.create_fault_count -= 1
        if self.config.create_fault_count <= 0:
            self.config.create_fault = None
            self.config.create_fault_count = 1
        self.save_settings()
        return kind

    def create_rate_limited(self, protocol: str) -> Response | None:
        """A 429 for this batch create, for a `create_429_rate` fraction of creates (the
        n-th create call and the seed decide, so a run is reproducible); None otherwise.
        Nothing is created: the field's batch-creation limits refuse before validation."""
        rate = self.config.create_429_rate
        if rate <= 0:
            return None
        self.create_calls += 1
        digest = hashlib.sha256(f"{self.config.seed}:create:{self.create_calls}".encode())
        if int.from_bytes(digest.digest()[:8], "big") / 2**64 >= rate:
            return None
        after = self.config.create_retry_after
        if protocol == "gemini":
            response = gemini_api.canned(429)
        elif protocol == "anthropic":
            response = anthropic_error(429, "Number of batches being created exceeds your "
                                            "rate limit. Please try again later.",
                                       "rate_limit_error")
        else:
            response = openai_error(429, "Rate limit reached for batch creation. Please try "
                                         "again later.", "requests", None,
                                    "rate_limit_exceeded")
        response.headers["retry-after"] = f"{math.ceil(after):d}"
        response.headers["retry-after-ms"] = f"{after * 1000:g}"
        return response

    def release(self) -> None:
        """Free what the stopped emulator holds (the temporary blob directory of an emulator
        without a state_dir); persisted state stays."""
        self.store.backend.close()

    def reset(self) -> None:
        """Forget files, batches, logs, faults and clock advances; keep the knobs."""
        self.store.reset()
        self.clock.reset()
        self.faults.clear()
        self.save_settings()

    # -- pipeline ----------------------------------------------------------
    def handle(self, req: Request) -> Response:
        """Answer one HTTP request (see the module docstring)."""
        if req.path == "/_emulator" or req.path.startswith("/_emulator/"):
            with self.lock:
                return Response(0, drop=True) if self.closed else admin_api.handle(self, req)
        protocol = classify(req.path)
        with self.lock:
            fault = self.faults.take(req.method, req.path)
        response: Response | None = None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
                if self.closed:  # stopped while we slept: answer nothing rather than touch old state
                    return Response(0, drop=True)
            if fault.status is not None:
                response = self._fault_response(protocol, fault)
                response.headers.update(fault.headers())
        if response is None:
            with self.lock:
                response = self._route(protocol, req)
        return self._finish(protocol, req, response)

    def _route(self, protocol: str, req: Request) -> Response:
        if self.closed:  # stopped: never touch state that a successor may now own
            return Response(0, drop=True)
        try:
            if protocol == "anthropic":
                return anthropic_api.handle(self, req)
            if protocol == "gemini":
                return gemini_api.handle(self, req)
            return openai_api.handle(self, req, protocol)
        except Exception:  # pragma: no cover - a bug in the emulator itself
            traceback.print_exc(file=sys.stderr)
            return gemini_api.canned(500) if protocol == "gemini" else canned_error(protocol, 500)

    @staticmethod
    def _fault_response(protocol: str, fault: Any) -> Response:
        if fault.body is not None:
            return Response(fault.status, fault.body.encode("utf-8"), {"content-type": "text/html; charset=utf-8"})
        if protocol == "gemini":
            return gemini_api.canned(fault.status)
        return canned_error(protocol, fault.status)

    def _finish(self, protocol: str, req: Request, response: Response) -> Response:
        """Add the request id, fill it into Anthropic error bodies, and log the call."""
        if protocol == "anthropic":
            rid = anthropic_request_id()
            response.headers["request-id"] = rid
            if response.status >= 400 and response.body.startswith(b'{"type": "error"'):
                payload = json.loads(response.body)
                payload["request_id"] = rid
                response.body = json.dumps(payload).encode("utf-8")
        else:
            response.headers["x-request-id"] = openai_request_id()
        with self.lock:
            if not self.closed:
                self.store.log_request({
                    "method": req.method,
                    "path": req.path,
                    "query": dict(req.query),
                    "status": None if response.drop else response.status,
                    "time": self.now(),
                    "protocol": protocol,
                    "retry_count": _int_or_none(req.header("x-stainless-retry-count")),
                })
        return response


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
