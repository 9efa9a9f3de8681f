"""What every transport shares: the interface the notifier depends on, the outcomes, and the retry rules.

The notifier depends only on `ManagementTransport`, so the transport can be swapped (for a
cheaper one per frame, or a fake in unit tests) without touching the fan-out logic. Each
backend lives in a module of its own: `curl` (pycurl, the `[fast]` extra), `aiohttp`
(the `[aiohttp]` extra) and `boto3` (no extra).
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import re
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"  # 410: the connection no longer exists
    FAILED = "failed"  # not delivered: still throttled at the deadline, or failing after retries


class ManagementTransport(Protocol):
    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        """Post `data` to each connection concurrently; one outcome per id, in order. Never raises.

        `deadline` (seconds from now; the transport's `RetryPolicy.deadline` when None) bounds the
        call: a throttled frame is retried until then, and what is not delivered by then is FAILED.
        """
        ...

    def delete_connection(self, connection_id: str) -> Outcome:
        """Close a connection (DELETE @connections/{id}). Never raises."""
        ...


@runtime_checkable
class SubmittingTransport(ManagementTransport, Protocol):
    def submit(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> Future[list[Outcome]]:
        """Start posting and return at once; the future's result is `post_to_connections`'s. Never fails."""
        ...


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_EXECUTE_API_HOST = re.compile(r"^[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def region_of(endpoint_url: str) -> str | None:
    """The AWS region in an `https://{api}.execute-api.{region}.amazonaws.com/{stage}` URL, else None.

    >>> region_of("https://abc.execute-api.eu-west-1.amazonaws.com/dev")
    'eu-west-1'
    """
    match = _EXECUTE_API_HOST.match(urlsplit(endpoint_url).hostname or "")
    return match.group(1) if match else None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent/bad.

    >>> retry_after_seconds("2")
    2.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429, 5xx and connection errors.

    A 429 (the account's throttle) is retried until the frame is delivered or `deadline` passes,
    at the pace of the process's `RateController` (or after `Retry-After`), never given up after
    a number of attempts. 5xx and connection errors get `max_attempts` in all: the n-th retry
    waits `uniform(0, min(max_delay, base_delay * 2**n))`, or what `Retry-After` asks (when that
    fits in the time left). `deadline` bounds one whole `post_to_connections` call (a caller
    may pass its own): no attempt starts after it, and what is not delivered by then is FAILED.
    An attempt already in flight at the deadline gets up to `IN_FLIGHT_GRACE_SECONDS` more (within
    the request timeout) to come back with its real outcome.
    """

    max_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0
    # Under API Gateway's 29 s integration timeout, so a REST handler that notifies still answers.
    deadline: float = 25.0

    def backoff(self, retry: int) -> float:
        # Full jitter: spreads a throttled burst instead of retrying it in lockstep.
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))  # noqa: S311


# An attempt started before a call's deadline may run this long past it. Cut at the deadline, a post that API
# Gateway may already have delivered would come back FAILED, be handed on, and reach its browser twice.
# Several round trips of a post (tens of ms), and short enough that a REST handler's notify still answers
# within its budget plus this.
IN_FLIGHT_GRACE_SECONDS = 0.25

UNDELIVERED_SAMPLE = 10  # connection ids logged with a call's undelivered frames


def log_undelivered(method: str, failures: dict[str, int], connection_ids: Sequence[str]) -> None:
    """One warning per call, not per connection (an outage must not cost a log line per frame): the count,
    the reasons, and a sample of the connection ids, so that an operator can follow one up."""
    more = len(connection_ids) - UNDELIVERED_SAMPLE
    logger.warning(
        "%d %s after retries (%s); connection ids %s%s",
        len(connection_ids),
        "connections not closed" if method == "DELETE" else "frames not delivered",
        ", ".join(f"{reason}: {count}" for reason, count in sorted(failures.items())),
        ", ".join(connection_ids[:UNDELIVERED_SAMPLE]),
        f" and {more} more" if more > 0 else "",
        extra={
            "method": method,
            "failed": len(connection_ids),
            "reasons": failures,
            "connection_ids": list(connection_ids[:UNDELIVERED_SAMPLE]),
        },
    )


def _never_failing(future: Future[list[Outcome]], count: int) -> Future[list[Outcome]]:
    """A future that resolves to `future`'s outcomes, or to FAILED for all if it raised or was cancelled."""
    result: Future[list[Outcome]] = Future()

    def settle(done: Future[list[Outcome]]) -> None:
        try:
            result.set_result(done.result())
        except BaseException:
            logger.exception("posting frames failed", extra={"count": count})
            result.set_result([Outcome.FAILED] * count)

    future.add_done_callback(settle)
    return result
