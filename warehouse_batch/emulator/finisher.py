"""Results written ahead: a daemon thread that materialises ended batches before anyone asks.

Writing a batch's result files is the costly step of its life (about a second for 50,000
requests). Done only on demand, it lands on the first read after the end, so a client that
collects 200 ended batches waits for all of them inside its own calls. The :class:`Finisher`
does the same work as soon as a batch has ended by the clock, one batch per hold of the
emulator lock, so it overlaps with whatever the client does meanwhile. Nothing observable
changes: a terminal batch's results depend only on its record, not on when they are written.

Anthropic batches are left to the on-demand path: their prompt-cache accounting depends on
the order in which batches are materialised, which stays the order the client reads them in.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import engine

if TYPE_CHECKING:
    from .app import Emulator


class Finisher:
    """The background thread of one emulator (see the module docstring)."""

    def __init__(self, app: Emulator, interval: float = 0.2) -> None:
        self.app = app
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-batch-emulator-finisher",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and wait for the batch it may be writing."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def step(self) -> bool:
        """Materialise one ended batch, if there is one; return whether one was."""
        app = self.app
        with app.lock:
            if app.closed:
                return False
            return engine.finish_next(app.store, app.now())

    def _run(self) -> None:
        while not self._stopped.is_set():
            if not self.step():
                self._stopped.wait(self.interval)
