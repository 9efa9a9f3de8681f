"""How long the caller of a notify can wait: the time left in its Lambda invocation, when known.

The blueprint's handlers and the app's middleware (`correlated`) make the invocation's
remaining time current; the notifier then spends at most the smaller of that (less a
margin) and `REALTIME_NOTIFY_BUDGET_SECONDS` delivering, and hands the rest of a large
audience to the fan-out workers (`chalice_realtime.fanout`).

    with answering_within(remaining_seconds_of(lambda_context)):
        notify("uid-1", "jobs-updated")
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any

from .transports import RateController

# The longest a notify spends delivering before it hands the rest to the fan-out workers.
DEFAULT_BUDGET_SECONDS = 0.5
# Left to the caller after its notify: to answer, log and return before Lambda (or API Gateway) gives up.
MARGIN_SECONDS = 1.0
# What one process is assumed to post per second when its transport has no rate controller:
# under one warm Lambda's measured rate against a 20 ms Management API (docs/performance.md).
DEFAULT_POSTS_PER_SECOND = 2_000.0
# A post started at the budget's end still gets this long: one round trip, before its frame is handed on.
MIN_POST_SECONDS = 0.2

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("realtime_deadline", default=None)


def remaining_seconds_of(context: Any) -> float | None:
    """The seconds a Lambda context has left (`get_remaining_time_in_millis`), None without one."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return max(0.0, float(remaining()) / 1000)
    except (TypeError, ValueError):
        return None


@contextlib.contextmanager
def answering_within(seconds: float | None) -> Iterator[None]:
    """Inside the block, the caller must return within `seconds` from now (None: unknown)."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def notify_budget(ceiling: float) -> float:
    """Seconds a notify starting now may spend delivering: `ceiling`, less if the caller must answer sooner.

    notify_budget(1.0)  # 1.0 outside an invocation; 0.4 with 1.4 s left in it
    """
    deadline = _deadline.get()
    if deadline is None:
        return ceiling
    return max(0.0, min(ceiling, deadline - time.monotonic() - MARGIN_SECONDS))


def posting_rate(transport: object, override: Callable[[], float] | None = None) -> float:
    """Frames per second this process may post now: what `override` (the caller's) says, else the pace of
    the transport's rate controller (the account's throttle as it has seen it), else
    `DEFAULT_POSTS_PER_SECOND`.

    capacity = int(seconds_left * posting_rate(transport))  # frames to post inline; the rest is handed on
    """
    if override is not None:
        return override()
    controller = getattr(transport, "rate", None)  # the process's RateController
    if isinstance(controller, RateController):
        return controller.rate
    return DEFAULT_POSTS_PER_SECOND
