"""Structured logs and correlation ids: one JSON line per record, tagged with its invocation.

Every log record of the app (stdlib `logging.getLogger(__name__)` with `extra={...}`) is
written as one JSON object per line, tagged with the invocation it belongs to:

    configure_logging("INFO", app.log)   # once, at import of app.py
    # in a handler, inside the `correlated` middleware:
    logger.info("connected", extra={"connection_id": "abc="})
    # {"timestamp": "2024-11-20T10:00:00.123Z", "level": "INFO", "logger": "chalice_realtime.websocket",
    #  "message": "connected", "correlation_id": "req-abc", "function_name": "chalice-realtime-dev",
    #  "function_request_id": "5b0e...", "cold_start": true, "connection_id": "abc="}

The standard library does the logging because the app already logs through it and because
it costs nothing at import. Each notify's log line and metrics live beside the notifier
(`metrics.py`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .clock import iso_utc

logger = logging.getLogger(__name__)

# A Chalice project's own code (`app.py`, `chalicelib/`) and this package.
APP_LOGGERS = ("app", "chalicelib", "chalice_realtime")
CORRELATION_HEADER = "X-Correlation-Id"
# A caller's id is echoed into every log line: short, and nothing that could smuggle a token or a newline.
VALID_CORRELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
SNS_CORRELATION_ATTRIBUTE = "correlation_id"
REDACTED = "[REDACTED]"

# Values that must never reach a log, whatever a future log call passes: a safety net, not the guarantee
# (which is that no code logs them: realtime/tests/test_observability.py checks the net, the app's tests that
# nothing is logged). (pattern, replacement)
_SECRET_PATTERNS = (
    # The value of these headers, however a mapping of them was printed (JSON, repr, "name: value").
    (
        re.compile(
            r"(?i)((?:authorization|stripe-signature|sec-websocket-protocol|x-amz-security-token)"
            r"""(?:\\?["'])?[:=] ?(?:\\?["'])?)[^"'\\\s,}\]][^"'\\]*"""
        ),
        r"\1" + REDACTED,
    ),
    # JWTs (Firebase ID tokens): header and payload are base64url JSON, so both start with "eyJ".
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # Stripe webhook signing secrets.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), REDACTED),
    # Stripe-Signature schemes: t=<unix time>,v1=<hex HMAC>[,v0=<hex>].
    (re.compile(r"\b(v[01]=)[0-9a-fA-F]{16,}"), r"\1" + REDACTED),
    # "Bearer <credential>" and the WebSocket subprotocol pair "bearer, <token>".
    (re.compile(r"(?i)\b(bearer,? )[A-Za-z0-9._~+/=-]{16,}"), r"\1" + REDACTED),
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_CORE_FIELDS = frozenset({"timestamp", "level", "logger"})
# Set on records by the AWS Lambda Python runtime's own handler; used when no invocation is known.
_RUNTIME_REQUEST_ID = "aws_request_id"


def new_id() -> str:
    """A random 32-hex-digit id (notify ids, correlation ids of events that carry none)."""
    return os.urandom(16).hex()  # as unique as a uuid4, without importing uuid on cold start


def redact(text: str) -> str:
    """`text` with anything shaped like a token, a webhook secret or a signature replaced.

    >>> redact("Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")
    'Authorization: [REDACTED]'
    >>> redact("refused t=1700000000,v1=" + "ab" * 32)
    'refused t=1700000000,v1=[REDACTED]'
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------- correlation


@dataclass(frozen=True)
class Invocation:
    """What every log line of one Lambda invocation is tagged with (`None` fields are left out)."""

    correlation_id: str
    function_name: str | None = None
    function_request_id: str | None = None
    cold_start: bool | None = None
    request_id: str | None = None  # API Gateway's, REST and WebSocket
    connection_id: str | None = None  # WebSocket

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("invocation", default=None)
# Lambda runs one invocation at a time per process, so threads the handler starts (the notifier's lookup
# pool, the transport's) fall back to it: contextvars do not follow work handed to a thread pool.
_process_invocation: Invocation | None = None
_cold = True


def current_invocation() -> Invocation | None:
    """The invocation this code runs for: this context's, else the process's (None outside handlers)."""
    return _current.get() or _process_invocation


def correlation_id() -> str | None:
    """The correlation id of the current invocation, if any.

    >>> correlation_id() is None   # outside a handler
    True
    """
    invocation = current_invocation()
    return invocation.correlation_id if invocation else None


def invocation_of(event: Any) -> Invocation:
    """The correlation id and Lambda details of a Chalice event (a REST `Request` or an event object).

    REST: a valid incoming `X-Correlation-Id`, else API Gateway's `requestContext.requestId`.
    WebSocket: `requestContext.requestId`. SNS: the message id. Schedules and EventBridge: the
    event id. Otherwise (or without them, as under `chalice.test`): the Lambda request id.
    """
    from chalice.app import Request

    global _cold
    cold, _cold = _cold, False
    caller_id: str | None = None
    if isinstance(event, Request):
        context = event.lambda_context
        raw: dict[str, Any] = {"requestContext": event.context or {}}
        supplied = event.headers.get(CORRELATION_HEADER.lower())
        if supplied and VALID_CORRELATION_ID.fullmatch(supplied) and redact(supplied) == supplied:
            caller_id = supplied
    else:
        context = getattr(event, "context", None)
        raw = event.to_dict() if hasattr(event, "to_dict") else {}
    request_context = raw.get("requestContext") or {}
    lambda_request_id = getattr(context, "aws_request_id", None)
    return Invocation(
        correlation_id=caller_id or _event_id(raw) or lambda_request_id or new_id(),
        function_name=getattr(context, "function_name", None),
        function_request_id=lambda_request_id,
        cold_start=cold,
        request_id=request_context.get("requestId"),
        connection_id=request_context.get("connectionId"),
    )


def sns_attributes() -> dict[str, Any]:
    """`MessageAttributes` for `sns.publish` carrying the current correlation id, so the Lambda that
    handles the message logs under the id of the request that published it ({} outside a handler).

        sns.publish(TopicArn=arn, Message=body, **sns_attributes())
    """
    current = correlation_id()
    if not current:
        return {}
    return {"MessageAttributes": {SNS_CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": current}}}


def _event_id(raw: dict[str, Any]) -> str | None:
    request_context = raw.get("requestContext")
    if isinstance(request_context, dict) and request_context.get("requestId"):
        return str(request_context["requestId"])
    records = raw.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        record = records[0]
        sns = record.get("Sns")
        if isinstance(sns, dict):
            # The request that published the message (see `sns_attributes`), else the message itself.
            attribute = (sns.get("MessageAttributes") or {}).get(SNS_CORRELATION_ATTRIBUTE) or {}
            value = attribute.get("Value") if isinstance(attribute, dict) else None
            if isinstance(value, str) and VALID_CORRELATION_ID.fullmatch(value):
                return value
            if sns.get("MessageId"):
                return str(sns["MessageId"])
        if record.get("messageId"):  # SQS
            return str(record["messageId"])
    if "detail-type" in raw and raw.get("id"):  # EventBridge, schedules included
        return str(raw["id"])
    return None


def correlated(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware body: run the handler with the event's `Invocation` current.

    @app.middleware("all")
    def correlate(event, get_response):
        return observability.correlated(event, get_response)

    REST responses carry the id back in `X-Correlation-Id`.
    """
    from chalice.app import Request, Response

    from .budget import answering_within, remaining_seconds_of

    context = event.lambda_context if isinstance(event, Request) else getattr(event, "context", None)
    # A notify in the handler then knows how long its caller can wait (chalice_realtime.budget).
    with running(invocation_of(event)) as current, answering_within(remaining_seconds_of(context)):
        response = get_response(event)
    if isinstance(event, Request) and isinstance(response, Response):
        response.headers[CORRELATION_HEADER] = current.correlation_id
    return response


@contextlib.contextmanager
def running(current: Invocation) -> Iterator[Invocation]:
    """Make `current` the invocation of this context (and of the process) until the block ends.

    with running(Invocation("job-42")):
        logger.info("runs")   # carries correlation_id "job-42"
    """
    global _process_invocation
    token = _current.set(current)
    _process_invocation = current
    try:
        yield current
    finally:
        _current.reset(token)
        # Overlapping invocations (the local stack runs handlers on a thread pool) must not leave a
        # finished one behind as the fallback: only the one that is still the fallback clears it.
        if _process_invocation is current:
            _process_invocation = None


# ---------------------------------------------------------------- JSON logs


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, the invocation, the extra fields.

    handler.setFormatter(JsonFormatter())

    With `redact=True` (the default) the finished line goes through `redact()`.
    """

    def __init__(self, *, redact: bool = True) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # Whole seconds plus logging's own milliseconds: exact, where created * 1000 may round down.
            "timestamp": iso_utc(int(record.created) * 1000 + int(record.msecs)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = current_invocation()
        if current is not None:
            entry.update(current.fields)
        elif getattr(record, _RUNTIME_REQUEST_ID, None):
            entry["function_request_id"] = getattr(record, _RUNTIME_REQUEST_ID)
        entry.setdefault("correlation_id", entry.get("function_request_id"))
        # A record's own fields are more specific than its invocation's (the connection it is about).
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in _CORE_FIELDS and name != _RUNTIME_REQUEST_ID:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
            entry["exception_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        return redact(line) if self._redact else line


class JsonLogHandler(logging.Handler):
    """Writes each record as a JSON line to the current `sys.stdout` (looked up per record, so a
    replaced stdout - a test's capture, a redirect - is honoured)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: str, *chalice_loggers: logging.Logger) -> None:
    """Make every record a JSON line and set the level of the app's own loggers; safe to call again.

    configure_logging(get_settings().log_level, app.log)

    On AWS Lambda the runtime's handler on the root logger keeps writing (each record one
    CloudWatch event, multi-line tracebacks included) with the JSON formatter. With no handler
    on the root logger (a plain process), a `JsonLogHandler` is added. A host that configured
    logging itself (the local stack, pytest) keeps its handlers. `chalice_loggers` (Chalice's
    `app.log`, which it gives its own plain-text stdout handler) are routed to the root logger.
    """
    global _logging_configured
    _logging_configured = True
    root = logging.getLogger()
    runtime = [h for h in root.handlers if type(h).__name__.startswith("LambdaLoggerHandler")]
    for handler in runtime:
        handler.setFormatter(JsonFormatter())
    if not root.handlers:
        root.addHandler(JsonLogHandler())
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for chalice_logger in chalice_loggers:
        for handler in list(chalice_logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                chalice_logger.removeHandler(handler)
        chalice_logger.propagate = True


_logging_configured = False


def configure_logging_once(level: str) -> None:
    """`configure_logging(level)` unless the process did it already (the app at import, say).

    The blueprint's handlers call it: deployed, their Lambda imports the blueprint's module, not `app.py`.
    """
    if not _logging_configured:
        configure_logging(level)
