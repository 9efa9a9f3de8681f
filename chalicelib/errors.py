"""The errors every feature raises for its REST routes, one per HTTP outcome.

A feature's own error subclasses one of them, and `app.py` answers the base the
same way on every route, as Chalice gives each `ChaliceViewError` a `STATUS_CODE`:

    class InvalidChatRequest(RequestRefused): ...   # 400 {"Code": "BadRequestError", "Message": ...}
    class QueueUnavailable(TemporarilyUnavailable): ...  # 503 {"Code": "ServiceUnavailable", ...}
    raise TooManyRequests("...", retry_after=30)  # 429 {"Code": "TooManyRequestsError", ...}, Retry-After

The message is shown to the caller as it is: it says what to change, never an internal detail.
"""

from __future__ import annotations


class RequestRefused(ValueError):
    """Input a caller sent that the feature refuses; nothing was written (400). The message says why."""


class TemporarilyUnavailable(RuntimeError):
    """A service the feature needs failed; the same request may be sent again later (503). `retry_after`:
    whole seconds after which that is worth trying, sent as `Retry-After`."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyRequests(Exception):
    """The caller used up a limit; nothing was written (429). `retry_after`: whole seconds (at least 1)
    after which the same request may succeed, sent as `Retry-After`."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
