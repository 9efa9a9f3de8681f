"""The app's clock, and the one timestamp format its API and records use.

Code that reads the time or waits takes a `Clock`, so tests pass a fake one and
run hours of job time, TTLs and stale rules without waiting:

    clock: Clock = SYSTEM_CLOCK
    created_at = epoch_ms(clock.now())
    iso_utc(created_at)  # '2024-05-01T12:00:00.123Z'
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time and sleeping."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def epoch_ms(seconds: float) -> int:
    """Epoch seconds (as `Clock.now()` gives them) -> integer milliseconds, as stored."""
    return int(seconds * 1000)


def iso_utc(epoch_milliseconds: int) -> str:
    """Epoch milliseconds -> ISO 8601 UTC with milliseconds, the one format the API and logs show.

    iso_utc(1714564800123)  # '2024-05-01T12:00:00.123Z'
    """
    # Whole seconds plus exact milliseconds: a float division could round .999 up.
    seconds, millis = divmod(epoch_milliseconds, 1000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
