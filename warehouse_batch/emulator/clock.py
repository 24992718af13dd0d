"""The emulator's controllable clock.

Two modes:

* ``real``: wall time plus an offset. ``advance`` grows the offset, so tests
  can jump forward while time still flows.
* ``manual``: starts at :data:`MANUAL_EPOCH` and moves only when told to,
  which makes every batch state reachable without sleeping.

The clock's state is a tiny dict so it can be persisted and restored.
"""
from __future__ import annotations

import time
from typing import Any

MANUAL_EPOCH = 1_800_000_000.0


class Clock:
    """A clock whose current time is ``base + offset`` (base is wall time or a fixed epoch)."""

    def __init__(self, mode: str = "real", offset: float = 0.0) -> None:
        self.mode = mode
        self.offset = float(offset)

    def _base(self) -> float:
        return time.time() if self.mode == "real" else MANUAL_EPOCH

    def now(self) -> float:
        """Return the current emulated time in Unix seconds."""
        return self._base() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("advance must be >= 0")
        self.offset += float(seconds)
        return self.now()

    def set(self, timestamp: float) -> float:
        """Jump to an absolute Unix time and return it."""
        self.offset = float(timestamp) - self._base()
        return self.now()

    def set_mode(self, mode: str) -> None:
        """Switch between ``real`` and ``manual`` without a jump in the current time."""
        if mode == self.mode:
            return
        current = self.now()
        self.mode = mode
        self.set(current)

    def state(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot for persistence."""
        return {"mode": self.mode, "offset": self.offset}

    def reset(self) -> None:
        """Forget all advances: manual mode returns to the epoch, real mode to wall time."""
        self.offset = 0.0
