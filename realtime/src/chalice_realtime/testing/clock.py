"""A `Clock` for tests: time stands still unless slept through, advanced, or read with a tick.

    clock = FakeClock()
    clock.sleep(60)  # returns at once, a minute later
    clock.now()      # START + 60

Standard library only.
"""

from __future__ import annotations

import threading

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    """A `chalice_realtime.clock.Clock` whose `sleep` advances time instead of waiting, so a job of
    minutes runs at once. Kept in whole microseconds, so sums are exact; `tick` is added after each
    reading (ids and timestamps taken in a row then differ)."""

    def __init__(self, start: float = START, *, tick: float = 0.0) -> None:
        self._us = round(start * 1_000_000)
        self._tick_us = round(tick * 1_000_000)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            now = self._us
            self._us += self._tick_us
        return now / 1_000_000

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._us += round(seconds * 1_000_000)
