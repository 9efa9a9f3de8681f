"""What a Management API (`@connections`) stand-in answers under stress: 410, 429, 5xx, a dropped connection.

A plan is a list of rules; the first rule matching a call decides it. The kit's stand-ins
(`chalice_realtime.testing.management_api`) take a `FaultPlan`, and so does the local stack's gateway
(over HTTP at `PUT /_faults`, the rules in JSON as `FaultRule.from_json` reads them), so a fault reads
the same in every layer:

    plan = FaultPlan([FaultRule(status=429, retry_after=1, times=2)])
    plan.decide("post", "abc123=")  # FaultRule(status=429, ...) twice, then None

`AccountThrottle` is API Gateway's account-wide throttle over those calls (`PUT /_throttle` locally).
Standard library only: a local stack that installs no test dependencies imports it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

OPERATIONS = ("post", "get", "delete")

# What API Gateway names each status in `x-amzn-ErrorType` (botocore reads the error code from it).
ERROR_TYPES = {
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
    504: "GatewayTimeoutException",
}


@dataclass
class FaultRule:
    """One fault: answer `status` (or drop the TCP connection when `drop`) for matching calls.

    `connection_id` "*" matches every connection; `operations` limits it to some of
    post/get/delete; `times` (None: forever) is how many calls it still applies to.
    """

    status: int = 0
    drop: bool = False
    connection_id: str = "*"
    operations: tuple[str, ...] = OPERATIONS
    retry_after: float | None = None
    times: int | None = None
    applied: int = field(default=0)

    def matches(self, operation: str, connection_id: str) -> bool:
        return (
            (self.times is None or self.applied < self.times)
            and operation in self.operations
            and self.connection_id in ("*", connection_id)
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        """A rule from its JSON form, refusing what the gateway could not act on."""
        status = int(data.get("status", 0))
        drop = bool(data.get("drop", False))
        if not drop and status not in ERROR_TYPES:
            raise ValueError(f"status must be one of {sorted(ERROR_TYPES)} (or drop=true), not {status}")
        operations = tuple(data.get("operations", OPERATIONS))
        if not set(operations) <= set(OPERATIONS):
            raise ValueError(f"operations must be among {OPERATIONS}")
        times = data.get("times")
        retry_after = data.get("retry_after")
        return cls(
            status=status,
            drop=drop,
            connection_id=str(data.get("connection_id", "*")),
            operations=operations,
            retry_after=None if retry_after is None else float(retry_after),
            times=None if times is None else int(times),
        )


class FaultPlan:
    """The rules in force; thread-safe, so tests may change it while the gateway serves."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._rules = list(rules or [])
        self._lock = threading.Lock()

    def replace(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def decide(self, operation: str, connection_id: str) -> FaultRule | None:
        """The rule that applies to this call (counting it), or None to serve it normally."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(operation, connection_id):
                    rule.applied += 1
                    return rule
        return None

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"rules": [asdict(rule) for rule in self._rules]}


class AccountThrottle:
    """API Gateway's account throttle over `@connections` calls: a token bucket of `rate` calls a second
    holding at most `burst` (full when set); a call finding it empty is answered 429 LimitExceededException.
    A rate of 0 (the default) admits everything. Thread-safe; tests set it with `PUT /_throttle`:

        throttle = AccountThrottle()
        throttle.set(rate=5000, burst=2500)
        throttle.admit()  # True 2,500 times at once, then about 5,000 times a second
    """

    def __init__(
        self, rate: float = 0, burst: float = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.set(rate, burst)

    def set(self, rate: float, burst: float) -> None:
        if rate < 0 or burst < 0 or (rate and burst < 1):
            raise ValueError("rate and burst must be >= 0, and burst >= 1 with a rate")
        with self._lock:
            self.rate, self.burst = float(rate), float(burst)
            self._tokens, self._updated = self.burst, self._clock()
            self.admitted = self.throttled = 0

    def admit(self) -> bool:
        with self._lock:
            if self.rate:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens < 1:
                    self.throttled += 1
                    return False
                self._tokens -= 1
            self.admitted += 1
            return True

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rate": self.rate,
                "burst": self.burst,
                "admitted": self.admitted,
                "throttled": self.throttled,
            }
