"""Time, injected: polling and backoff take a `Clock`, so tests never sleep.

Two backoffs drive `run --wait`: the polling one (`Backoff()`, 10 s doubling to 10 min, for
batches that take minutes to hours) and the trouble one (`trouble_backoff()`, 2 s doubling to
5 min, for a provider answering 429/5xx or dropping connections), which honours the
provider's `retry-after` (`Backoff.delay_for`).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Backoff:
    """Exponential backoff with jitter for polling batches (which take minutes to hours).

    Delays grow from `initial` by `factor` up to `maximum`; each is stretched by a random
    fraction up to `jitter` so many pipelines polling the same provider spread out.
    """

    initial: float = 10.0
    factor: float = 2.0
    maximum: float = 600.0
    jitter: float = 0.25
    rng: random.Random = field(default_factory=random.Random)
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next * (1 + self.rng.uniform(0, self.jitter))
        self._next = min(self.maximum, self._next * self.factor)
        return min(delay, self.maximum * (1 + self.jitter))

    def delay_for(self, retry_after: float | None) -> float:
        """The next delay, but never shorter than a `retry-after` the provider asked for
        (stretched by the same jitter, so clients told the same wait do not return at once)."""
        delay = self.next_delay()
        if retry_after is not None:
            delay = max(delay, retry_after * (1 + self.rng.uniform(0, self.jitter)))
        return delay

    def reset(self) -> None:
        self._next = self.initial


def trouble_backoff() -> Backoff:
    """Backoff after a transient provider error (429, 5xx, timeout, dropped connection)."""
    return Backoff(initial=2.0, factor=2.0, maximum=300.0, jitter=0.5)
