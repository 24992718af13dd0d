"""Starting and stopping the emulator: :func:`serve` (blocking) and :func:`start` (background).

``start`` runs the server in a daemon thread and returns a
:class:`RunningEmulator` handle once the socket accepts connections; the handle
knows the URLs to give each SDK and offers small admin helpers. ``serve``
blocks until SIGTERM or Ctrl-C, printing one "listening" line to stderr.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

from .app import Emulator
from .config import EmulatorConfig
from .finisher import Finisher
from .server import EmulatorHTTPServer

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AdminError(RuntimeError):
    """An admin call answered with an error status."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(f"admin call failed with {status}: {payload}")
        self.status = status
        self.payload = payload


class RunningEmulator:
    """A handle on an emulator running in a background thread (also a context manager)."""

    def __init__(self, app: Emulator, server: EmulatorHTTPServer, thread: threading.Thread,
                 finisher: Finisher) -> None:
        self._app = app
        self._server = server
        self._thread = thread
        self._finisher = finisher
        self.port: int = server.server_address[1]
        host = app.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        self.url: str = f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``OpenAI(base_url=…)`` (includes ``/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``Anthropic(base_url=…)`` (no ``/v1``)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """Base URL for ``genai.Client(http_options=HttpOptions(base_url=…))`` (no version)."""
        return self.url

    @property
    def azure_endpoint(self) -> str:
        """Endpoint for ``AzureOpenAI(azure_endpoint=…)``, which appends ``/openai``."""
        return self.url

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call an admin endpoint (``/_emulator/…``; the prefix may be omitted) and return its JSON.

        Raises AdminError (with ``status`` and ``payload``) on an error status.
        """
        if not path.startswith("/"):
            path = "/" + path
        if not path.startswith("/_emulator"):
            path = "/_emulator" + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method.upper(),
                                         headers={"content-type": "application/json"})
        try:
            with _OPENER.open(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            raise AdminError(exc.code, payload) from None

    def advance(self, seconds: float) -> float:
        """Move the emulated clock forward and return the new time."""
        return float(self.admin("POST", "/_emulator/clock", {"advance": seconds})["now"])

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port. Safe to call twice."""
        if self._app.closed:
            return
        with self._app.lock:
            self._app.closed = True
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._finisher.stop()
        self._app.release()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _build(config: EmulatorConfig) -> tuple[Emulator, EmulatorHTTPServer, Finisher]:
    app = Emulator(config)
    server = EmulatorHTTPServer((config.host, config.port), app)
    app.config.port = server.server_address[1]  # report the real port when 0 was asked for
    return app, server, Finisher(app)


def start(config: EmulatorConfig) -> RunningEmulator:
    """Run an emulator in a daemon thread; return once it accepts connections."""
    app, server, finisher = _build(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"warehouse-batch-emulator:{server.server_address[1]}", daemon=True)
    thread.start()
    finisher.start()
    running = RunningEmulator(app, server, thread, finisher)
    running.admin("GET", "/_emulator/health")  # the socket listens already; this proves the loop answers
    return running


def serve(config: EmulatorConfig) -> None:
    """Run an emulator in the foreground until SIGTERM or KeyboardInterrupt."""
    app, server, finisher = _build(config)
    finisher.start()
    port = server.server_address[1]
    host = config.host if config.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    previous = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()
        previous = signal.signal(signal.SIGTERM, _on_term)
    print(f"warehouse-batch emulator listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        with app.lock:
            app.closed = True
        server.close_all()
        server.server_close()
        finisher.stop()
        app.release()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
