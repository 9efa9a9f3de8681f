"""The core's observability: JSON log lines, one correlation id per invocation, per-notify metrics (EMF),
the safety net that redacts secret-shaped values. What an app's routes log is the app's tests' business.

Log output is read the way CloudWatch would get it: records formatted by `JsonFormatter`, captured at DEBUG.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from chalice import Chalice
from chalice.app import CloudWatchEvent, Request, SNSEvent, WebsocketEvent
from chalice.local import LambdaContext
from chalice.test import Client
from chalice_realtime import ConfigurationError, RealtimeSettings, observability
from chalice_realtime.metrics import NotifyMetrics
from chalice_realtime.notifier import DeliveryReport
from chalice_realtime.observability import Invocation, JsonFormatter, invocation_of, redact, running
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.logs import CapturedLogs, capture_logs, emf_blobs
from chalice_realtime.testing.store import add_connections

SNS_MESSAGE_ID = "abcdefgh-51e4-5ae2-9964-b296c8d65d1a"  # what chalice.test's generate_sns_event uses
SCHEDULE_EVENT_ID = "7bf73129-1428-4cd3-a780-95db273d1602"  # and generate_cw_event
# Notify metrics are emitted through Powertools: the `metrics` extra.
METRICS = pytest.mark.requires_extra("metrics")


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


@pytest.mark.parametrize(
    ("make_event", "correlation_id"),
    [
        (
            lambda c: SNSEvent(Client(Chalice(app_name="events")).events.generate_sns_event(message="{}"), c),
            SNS_MESSAGE_ID,
        ),
        (
            lambda c: CloudWatchEvent(
                Client(Chalice(app_name="events")).events.generate_cw_event("s", "d", {}, []), c
            ),
            SCHEDULE_EVENT_ID,
        ),
        (lambda c: WebsocketEvent(websocket_event("$default", "abc=", body="{}"), c), "req-abc="),
        (
            lambda c: Request(
                {
                    **_rest_event(),
                    "requestContext": {**_rest_event()["requestContext"], "requestId": "apigw-1"},
                },
                c,
            ),
            "apigw-1",
        ),
        (lambda c: Request(_rest_event(), c), "lambda-request-1"),
    ],
    ids=["sns", "schedule", "websocket", "rest", "rest-without-request-id"],
)
def test_the_correlation_id_of_each_kind_of_event(make_event: Any, correlation_id: str) -> None:
    context = LambdaContext("fn", 128)
    context.aws_request_id = "lambda-request-1"
    found = invocation_of(make_event(context))
    assert found.correlation_id == correlation_id
    assert (found.function_name, found.function_request_id) == ("fn", "lambda-request-1")


def _rest_event() -> dict[str, Any]:
    return {
        "headers": {},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"httpMethod": "GET", "resourcePath": "/health", "path": "/health"},
        "body": None,
        "isBase64Encoded": False,
    }


def test_pool_threads_of_a_handler_log_under_its_correlation_id(logs: CapturedLogs) -> None:
    # The notifier's lookups and the transport's posts run on pool threads, which contextvars do not reach.
    with running(Invocation("corr-threads")):
        worker = threading.Thread(
            target=lambda: logging.getLogger("chalice_realtime.test").warning("from a pool")
        )
        worker.start()
        worker.join()
    assert logs.lines()[-1]["correlation_id"] == "corr-threads"


@METRICS
def test_a_notify_emits_one_emf_blob_with_its_counts_units_and_dimensions(
    realtime: Any, management_api: Any, logs: CapturedLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    add_connections(realtime.dynamodb, realtime.settings.connections_table, "alice", "a1", "a2", "a3")
    management_api.gone.add("a2")
    capsys.readouterr()
    with running(Invocation("corr-notify")):
        report = realtime.notifier.notify("alice", "jobs-updated")
    assert report == DeliveryReport(delivered=2, gone=1, failed=0)
    [blob] = emf_blobs(capsys.readouterr().out)
    [definition] = blob["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "ChaliceRealtime"
    assert definition["Dimensions"] == [["service", "stage"], ["service", "stage", "event_key"]]
    assert {m["Name"]: m["Unit"] for m in definition["Metrics"]} == {
        "delivered": "Count",
        "gone": "Count",
        "failed": "Count",
        "deferred": "Count",
        "duration": "Milliseconds",
    }
    assert (blob["delivered"], blob["gone"], blob["failed"]) == ([2.0], [1.0], [0.0])
    assert blob["duration"][0] >= 0
    assert (blob["service"], blob["stage"], blob["event_key"]) == ("chalice-realtime", "dev", "jobs-updated")
    [notified] = [line for line in logs.lines() if line["message"] == "notified"]
    assert blob["notify_id"] == notified["notify_id"] and blob["correlation_id"] == "corr-notify"
    assert (notified["delivered"], notified["gone"], notified["failed"], notified["users"]) == (2, 1, 0, 1)
    assert notified["correlation_id"] == "corr-notify" and notified["duration_ms"] >= 0


@METRICS
def test_powertools_own_switch_silences_the_metrics_but_not_the_log(
    realtime: Any,
    management_api: Any,
    logs: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    add_connections(realtime.dynamodb, realtime.settings.connections_table, "alice", "a1")
    capsys.readouterr()
    realtime.notifier.notify("alice", "jobs-updated")
    assert emf_blobs(capsys.readouterr().out) == []
    assert [line["delivered"] for line in logs.lines() if line["message"] == "notified"] == [1]


@METRICS
def test_a_metric_that_cannot_be_emitted_costs_the_notify_nothing(
    logs: CapturedLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_count = SimpleNamespace(
        delivered="many", gone=0, failed=0, deferred=0, deferred_users=0, deferred_topics=0
    )
    NotifyMetrics("dev")("jobs-updated", 1, not_a_count, 1.0)  # type: ignore[arg-type]
    assert [line["message"] for line in logs.lines()] == ["notified", "could not emit notify metrics"]
    assert emf_blobs(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    "text",
    [
        "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl",
        "secret whsec_5f2bXq9Tz+Ab/cd=",
        "{'Stripe-Signature': 't=1700000000,v1=" + "a1" * 32 + "'}",
        '{"authorization": "Bearer opaque-credential-123456"}',
        "headers={'Sec-WebSocket-Protocol': 'bearer, opaque-credential-123456'}",
        "x-amz-security-token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH",
    ],
)
def test_the_safety_net_redacts_secret_shaped_values(text: str) -> None:
    formatter = JsonFormatter()
    record = logging.makeLogRecord({"name": "chalice_realtime.test", "levelname": "INFO", "msg": text})
    record_with_extra = logging.makeLogRecord({"name": "x", "msg": "m", "headers": text})
    for line in (formatter.format(record), formatter.format(record_with_extra)):
        assert "[REDACTED]" in line
        for secret in ("c2lnbmF0dXJlLXZhbHVl", "whsec_5f2bXq9Tz", "a1" * 32, "opaque-credential", "IQoJb3J"):
            assert secret not in line
        json.loads(line)


@pytest.mark.parametrize(
    "text",
    [
        "connected",
        "stripe webhook refused: no Stripe-Signature header",
        "next_cursor eyJqb2JfaWQiOiIwMUpENVE2VjNaSzhXMVgwSjlOMkM0QjdUQSJ9",
        "job 01JD5Q6V3ZK8W1X0J9N2C4B7TA failed: a bearer token is needed",
        "event evt_3PqR8sT2eZvKYlo21a2b3c4d, payment pi_3PqR8sT2eZvKYlo21a2b3c4d",
    ],
)
def test_the_safety_net_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_a_record_becomes_one_json_line_with_its_extra_fields_and_exception(logs: CapturedLogs) -> None:
    log = logging.getLogger("chalice_realtime.test")
    with running(Invocation("corr-1", function_name="fn", connection_id="conn-of-invocation")):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception(
                "it failed", extra={"job_id": "j1", "count": 3, "when": object, "connection_id": "c7"}
            )
    [line] = logs.stream.getvalue().splitlines()
    entry = json.loads(line)
    assert (
        entry["message"] == "it failed"
        and entry["level"] == "ERROR"
        and entry["logger"] == "chalice_realtime.test"
    )
    assert (entry["job_id"], entry["count"], entry["when"]) == ("j1", 3, str(object))
    assert (entry["correlation_id"], entry["function_name"]) == ("corr-1", "fn")
    assert entry["connection_id"] == "c7"  # the record's own field over its invocation's
    assert entry["exception_type"] == "RuntimeError"
    assert "Traceback" in entry["exception"] and "boom" in entry["exception"]


def test_on_lambda_the_runtimes_handler_gets_the_json_formatter_and_nothing_is_added() -> None:
    class LambdaLoggerHandler(logging.Handler):  # the AWS Lambda Python runtime's class name
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(self.format(record))

    root = logging.getLogger()
    saved = root.handlers[:]
    runtime = LambdaLoggerHandler()
    root.handlers[:] = [runtime]
    try:
        observability.configure_logging("INFO")
        logging.getLogger("chalice_realtime.test").info("hello", extra={"k": 1})
        assert root.handlers == [runtime]
    finally:
        root.handlers[:] = saved
    assert json.loads(runtime.lines[-1])["k"] == 1


def test_overlapping_invocations_leave_no_finished_one_behind() -> None:
    # The local stack runs handlers on a thread pool: the first may end while the second still runs.
    import threading

    second_started, first_ended = threading.Event(), threading.Event()
    seen: dict[str, str | None] = {}

    def first() -> None:
        with observability.running(observability.Invocation("first")):
            second_started.wait(5)
        first_ended.set()

    def second() -> None:
        with observability.running(observability.Invocation("second")):
            second_started.set()
            first_ended.wait(5)
            seen["during"] = observability.correlation_id()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    threads[1].start()
    for thread in threads:
        thread.join(10)
    assert seen["during"] == "second"
    assert observability.current_invocation() is None


def test_log_level_is_read_from_the_environment_and_checked() -> None:
    assert RealtimeSettings.from_env({}).log_level == "INFO"
    assert RealtimeSettings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        RealtimeSettings.from_env({"LOG_LEVEL": "verbose"})
