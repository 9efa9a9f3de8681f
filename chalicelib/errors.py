"""The errors every feature raises for its REST routes, one base per HTTP outcome.

Each base carries its answer, as Chalice gives each `ChaliceViewError` a `STATUS_CODE`: the status,
the `Code` of Chalice's `{"Code", "Message"}` error body, and its headers. A feature's own error
subclasses one of them, and `app.py` answers every `AppError` in one place, the same on every route:

    class InvalidChatRequest(RequestRefused): ...        # 400 {"Code": "BadRequestError", "Message": ...}
    class JobNotFound(NotFound): ...                     # 404 {"Code": "NotFoundError", ...}
    class JobFinished(Conflict): ...                     # 409 {"Code": "ConflictError", ...}
    raise TooManyRequests("...", retry_after=30)         # 429 {"Code": "TooManyRequestsError", ...}
    class QueueUnavailable(TemporarilyUnavailable): ...  # 503 {"Code": "ServiceUnavailable", ...}

(429 and 503 carry `Retry-After`.)

The message is shown to the caller as it is: it says what to change, never an internal detail.
"""

from __future__ import annotations

from typing import ClassVar


class AppError(Exception):
    """A refusal the caller is told about: `STATUS_CODE`, `{"Code": CODE, "Message": str(error)}`,
    `headers()`. Never raised itself; raise one of the bases below (or a feature's subclass)."""

    STATUS_CODE: ClassVar[int]
    CODE: ClassVar[str]

    def headers(self) -> dict[str, str | list[str]]:
        """Headers the answer carries besides the body's."""
        return {}

    def body(self) -> dict[str, str]:
        """The answer's JSON body, in Chalice's error shape."""
        return {"Code": self.CODE, "Message": str(self)}


class RequestRefused(AppError, ValueError):
    """Input a caller sent that the feature refuses; nothing was written (400). The message says why."""

    STATUS_CODE = 400
    CODE = "BadRequestError"


class NotFound(AppError, LookupError):
    """What the caller asked for does not exist, or belongs to someone else: the two are one answer,
    so an id never tells whether someone else has it (404)."""

    STATUS_CODE = 404
    CODE = "NotFoundError"


class Conflict(AppError):
    """The request is valid but the thing's state forbids it now (cancelling a finished job) (409)."""

    STATUS_CODE = 409
    CODE = "ConflictError"


class RetryLater(AppError):
    """A refusal that ends: `retry_after` is the whole seconds (at least 1) after which the same
    request may succeed, sent as `Retry-After`."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str | list[str]]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(RetryLater):
    """The caller used up a limit; nothing was written (429)."""

    STATUS_CODE = 429
    CODE = "TooManyRequestsError"


class TemporarilyUnavailable(RetryLater, RuntimeError):
    """A service the feature needs failed, our fault and temporary; the same request may be sent
    again after `retry_after` seconds (503)."""

    STATUS_CODE = 503
    CODE = "ServiceUnavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
