"""How fast a process posts to the Management API: one controller shared by every notify of the process.

API Gateway throttles `@connections` posts per account and Region (10,000 requests/s, burst
5,000, shared with the account's REST and WebSocket traffic) and answers what is over the limit
with `429 LimitExceededException`. Retrying each 429 on its own timer keeps the sender above the
limit, so most retries are throttled again. Instead every post takes a token from one bucket
whose rate follows the answers (AIMD, as TCP's congestion control):

- each 429 cuts the rate by `decrease` (0.7), at most once per `hold` (two round trips), since
  the posts already in flight when the first 429 came were sent at the old rate; when posts sent
  after a cut are throttled too, the rate falls to the rate at which API Gateway admitted those
  posts (a little under it), so a sender far over the limit gets there in two cuts, not ten;
- without 429s the rate climbs back by `increase` posts/s every second (a tenth of the ceiling);
- it never exceeds `ceiling` (`REALTIME_MAX_POSTS_PER_SECOND`), which leaves the rest of the
  account's budget to its REST traffic.

The bound on requests in flight follows the rate: by Little's law `rate x latency` posts are in
flight when each takes `latency`, so the bound is that (with headroom) between `min_in_flight` and
`max_in_flight`, and a slow Management API does not cap the rate at `min_in_flight / latency`.

    controller = RateController(ceiling=5_000)
    granted = controller.take(100, time.monotonic())  # posts that may start now
    controller.wait(time.monotonic())                  # seconds until the next token
    controller.answered(sent, time.monotonic())        # each answer: delivered or gone ...
    controller.throttled(sent, time.monotonic())       # ... or 429
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

DEFAULT_CEILING = 10_000.0  # API Gateway's default account throttle, in requests per second
_HEADROOM = 1.5  # in-flight bound over rate x latency: room for jitter in answer times
_LATENCY_WEIGHT = 1 / 32  # weight of the newest answer time in the moving average
_BURST_SECONDS = 0.02  # tokens saved while idle, in seconds of the current rate
_ADMITTED_WINDOW = 1.0  # a cut this soon after the last one measures the rate admitted in between
_UNDER_ADMITTED = 0.95
_MEASURED_ANSWERS = 20  # answers since the last cut it takes to trust the rate they show


@dataclass(frozen=True)
class RateSnapshot:
    """What the controller is doing, for logs and tests."""

    rate: float
    ceiling: float
    in_flight_limit: int
    latency: float
    throttled: int  # 429s seen since the controller was made
    cuts: int  # times the rate was cut


class RateController:
    """A token bucket whose rate follows API Gateway's 429s (AIMD) under a ceiling; thread-safe.

    Times are the caller's `time.monotonic()` readings, so tests drive it with a clock of their own.
    """

    def __init__(
        self,
        ceiling: float = DEFAULT_CEILING,
        *,
        decrease: float = 0.7,
        increase: float | None = None,
        floor: float = 10.0,
        min_in_flight: int = 64,
        max_in_flight: int = 512,
    ) -> None:
        if ceiling <= 0:
            raise ValueError(f"the ceiling must be positive, not {ceiling}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, not {decrease}")
        self.ceiling = float(ceiling)
        self.decrease = decrease
        self.increase = ceiling / 10 if increase is None else increase
        self.floor = min(floor, self.ceiling)
        self.min_in_flight = min_in_flight
        # select(2), which pycurl's multi waits with, handles file descriptors below 1,024 only.
        self.max_in_flight = max(min_in_flight, max_in_flight)
        self._rate = self.ceiling
        self._tokens = 1.0
        self._updated: float | None = None
        self._hold_until = -math.inf
        self._latency = 0.0
        self._throttled = 0
        self._cuts = 0
        self._cut_at = -math.inf
        self._admitted = 0  # posts sent since the last cut and delivered (or gone)
        self._refused = 0  # posts sent since the last cut and answered 429
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    def snapshot(self) -> RateSnapshot:
        with self._lock:
            return RateSnapshot(
                self._rate, self.ceiling, self._in_flight_limit(), self._latency, self._throttled, self._cuts
            )

    def set_ceiling(self, ceiling: float) -> None:
        """Change the ceiling (the process's settings were read again); the rate follows at once if above."""
        if ceiling <= 0:
            raise ValueError(f"the ceiling must be positive, not {ceiling}")
        with self._lock:
            self.ceiling = float(ceiling)
            self.floor = min(self.floor, self.ceiling)
            self._rate = min(self._rate, self.ceiling)

    def take(self, wanted: int, now: float) -> int:
        """Consume up to `wanted` tokens; returns how many posts may start now (0 to `wanted`)."""
        with self._lock:
            self._refill(now)
            granted = min(wanted, int(self._tokens))
            self._tokens -= granted
            return granted

    def wait(self, now: float) -> float:
        """Seconds from `now` until the next token (0 when one is there)."""
        with self._lock:
            self._refill(now)
            return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate

    def answered(self, sent: float, now: float) -> None:
        """A post sent at `sent` was answered (delivered or gone) at `now`."""
        with self._lock:
            latency = now - sent
            if sent >= self._cut_at:
                self._admitted += 1
            if self._latency == 0.0:
                self._latency = latency
            else:
                self._latency += (latency - self._latency) * _LATENCY_WEIGHT

    def throttled(self, sent: float, now: float) -> None:
        """A post sent at `sent` was answered 429 at `now`: cut the rate, at most once per hold (the posts
        sent before a cut still come back 429 after it)."""
        with self._lock:
            self._throttled += 1
            if sent >= self._cut_at:
                self._refused += 1
            if now < self._hold_until:
                return
            self._refill(now)
            rate = self._rate * self.decrease
            # Posts sent since the last cut, at the rate it set, and answered by now: if they were throttled
            # too, those API Gateway admitted say what it lets this process send (a little under it, so
            # that its bucket can refill).
            sending = now - self._cut_at - self._latency
            if sending > 0 and now - self._cut_at <= _ADMITTED_WINDOW and self._refused:
                if self._admitted + self._refused >= _MEASURED_ANSWERS:
                    rate = min(rate, self._admitted / sending * _UNDER_ADMITTED)
            self._rate = max(self.floor, rate)
            self._tokens = min(self._tokens, 1.0)  # no saved burst right after a 429
            self._cuts += 1
            self._cut_at, self._admitted, self._refused = now, 0, 0
            self._hold_until = now + max(0.05, 2 * self._latency)

    def in_flight_limit(self) -> int:
        """How many posts may be in flight: rate x latency with headroom, within the bounds."""
        with self._lock:
            return self._in_flight_limit()

    def _in_flight_limit(self) -> int:
        wanted = math.ceil(self._rate * self._latency * _HEADROOM)
        return max(self.min_in_flight, min(self.max_in_flight, wanted))

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
            return
        elapsed = now - self._updated
        if elapsed <= 0:
            return
        # Additive increase, in time rather than per answer (an idle process recovers too, as API
        # Gateway's own bucket refills while it is idle), from the end of the hold after a cut.
        growing = now - max(self._updated, self._hold_until)
        self._updated = now
        if growing > 0:
            self._rate = min(self.ceiling, self._rate + self.increase * growing)
        burst = max(1.0, self._rate * _BURST_SECONDS)
        self._tokens = min(burst, self._tokens + elapsed * self._rate)


_shared: RateController | None = None
_shared_lock = threading.Lock()


def process_rate(ceiling: float = DEFAULT_CEILING) -> RateController:
    """The controller every transport of this process shares (built on first use), with `ceiling`.

    rate = process_rate(settings.max_posts_per_second)
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RateController(ceiling)
        elif _shared.ceiling != ceiling:
            _shared.set_ceiling(ceiling)
        return _shared
