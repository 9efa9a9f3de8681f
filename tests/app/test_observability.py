"""Observability: JSON log lines, one correlation id per invocation, per-notify metrics (EMF), no secrets.

Log output is read the way CloudWatch would get it: records formatted by the app's
`JsonFormatter`, captured at DEBUG from the app's loggers. Secrets are checked twice: in
that output, and in the output of a formatter that redacts nothing, so a test passes only
because no code logs them, not because the safety net caught them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime import observability
from chalice_realtime.connections import Connection
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import SigningKey, TokenFactory
from chalice_realtime.testing.logs import CapturedLogs, capture_logs, emf_blobs
from moto.sns.models import sns_backends

from app import app
from chalicelib.jobs import QUEUED_STALE_SECONDS
from tests.conftest import TEST_ENV
from testsupport.stripe_events import build_test_event, signed_delivery

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = TEST_ENV["STRIPE_WEBHOOK_SECRET"]
SNS_MESSAGE_ID = "abcdefgh-51e4-5ae2-9964-b296c8d65d1a"  # what chalice.test's generate_sns_event uses
SCHEDULE_EVENT_ID = "7bf73129-1428-4cd3-a780-95db273d1602"  # and generate_cw_event


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def clock(services: Any) -> FakeClock:
    fake = FakeClock()
    services.clock = fake  # before the jobs components are built from it
    return fake


@pytest.fixture
def client(services: Any, management_api: Any) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def add(services: Any, user_id: str, *connection_ids: str) -> None:
    for n, cid in enumerate(connection_ids):
        services.realtime.connections.add(Connection(cid, user_id, 1_700_000_000_000 + n))


def bearer(tokens: TokenFactory, uid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(uid)}"}


# ---------------------------------------------------------------- one correlation id per invocation


def test_every_line_of_a_rest_request_is_json_with_the_correlation_id_the_response_returns(
    client: Client, services: Any, tokens: TokenFactory, logs: CapturedLogs
) -> None:
    add(services, "alice", "a1")
    add(services, "bob", "b1")
    response = client.http.post(
        "/messages",
        headers={**bearer(tokens, "alice"), "Content-Type": "application/json"},
        body=json.dumps({"to": "bob", "text": "hi"}),
    )
    assert response.status_code == 201
    correlation_id = response.headers["X-Correlation-Id"]
    lines = logs.lines()
    assert [line["message"] for line in lines if line["message"] == "notified"] == ["notified"]
    for line in lines:
        assert line["correlation_id"] == correlation_id
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        assert line["logger"].startswith(("app", "chalicelib", "chalice_realtime"))
        assert line["timestamp"].endswith("Z") and line["function_name"]
    notified = next(line for line in lines if line["message"] == "notified")
    assert notified["delivered"] == 2 and notified["event_key"] == "chat-messages-updated"


def test_a_well_formed_incoming_correlation_id_is_used_and_returned_and_a_bad_one_is_not(
    client: Client, services: Any, tokens: TokenFactory, logs: CapturedLogs
) -> None:
    add(services, "bob", "b1")

    def post(correlation_id: str) -> tuple[str, set[str]]:
        mark = len(logs.lines())
        response = client.http.post(
            "/messages",
            headers={
                **bearer(tokens, "alice"),
                "Content-Type": "application/json",
                "X-Correlation-Id": correlation_id,
            },
            body=json.dumps({"to": "bob", "text": "hi"}),
        )
        assert response.status_code == 201
        return response.headers["X-Correlation-Id"], {line["correlation_id"] for line in logs.since(mark)}

    assert post("checkout-7f3a9c") == ("checkout-7f3a9c", {"checkout-7f3a9c"})
    for bad in ("has space", "x" * 129, "-leading-dash", "eyJhbGci.eyJzdWIi.c2lnbmF0dXJl"):
        returned, seen = post(bad)
        assert returned != bad and seen == {returned}


def test_errors_answered_by_chalice_carry_the_correlation_id_too(
    client: Client, tokens: TokenFactory
) -> None:
    response = client.http.post(
        "/messages",
        headers={**bearer(tokens, "alice"), "Content-Type": "application/json", "X-Correlation-Id": "c-400"},
        body=b"[]",
    )
    assert response.status_code == 400
    assert response.headers["X-Correlation-Id"] == "c-400"


def test_a_websocket_connect_logs_under_api_gateways_request_id(
    client: Client, tokens: TokenFactory, logs: CapturedLogs
) -> None:
    good = tokens.mint("alice")
    admitted = client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "c1", headers={"Sec-WebSocket-Protocol": f"bearer, {good}"})
    )
    assert admitted.payload["statusCode"] == 200
    assert "X-Correlation-Id" not in admitted.payload.get("headers", {})  # only REST answers carry it
    mark = len(logs.lines())
    client.lambda_.invoke("ws_connect", websocket_event("$connect", "c2", headers={}))
    connected, refused = logs.lines()[:mark], logs.since(mark)
    assert "connected" in [line["message"] for line in connected]
    assert {(line["correlation_id"], line["connection_id"]) for line in connected} == {("req-c1", "c1")}
    assert {line["function_name"] for line in connected} == {"ws_connect"}
    assert {line["correlation_id"] for line in refused} <= {"req-c2"}


def test_the_job_runner_logs_under_the_sns_message_id_and_each_notify_has_its_own_id(
    client: Client,
    services: Any,
    tokens: TokenFactory,
    clock: FakeClock,
    logs: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(services, "alice", "a1")
    response = client.http.post(
        "/jobs",
        headers={**bearer(tokens, "alice"), "Content-Type": "application/json"},
        body=json.dumps({"kind": "report", "params": {"seconds": 2}}),
    )
    assert response.status_code == 202
    topic = sns_backends["123456789012"]["us-east-1"].topics[services.settings.jobs_topic_arn]
    [(_, message, *_)] = topic.sent_notifications
    capsys.readouterr()
    mark = len(logs.lines())
    client.lambda_.invoke("run_job", client.events.generate_sns_event(message=message))
    lines = logs.since(mark)
    assert {line["correlation_id"] for line in lines} == {SNS_MESSAGE_ID}
    notifies = [line for line in lines if line["message"] == "notified"]
    assert len(notifies) >= 2  # started, finished (progress in between, at most once a second)
    assert len({line["notify_id"] for line in notifies}) == len(notifies)
    blobs = emf_blobs(capsys.readouterr().out)
    assert [(b["notify_id"], b["correlation_id"]) for b in blobs] == [
        (line["notify_id"], SNS_MESSAGE_ID) for line in notifies
    ]


def test_the_job_runner_logs_under_the_correlation_id_of_the_request_that_submitted_the_job(
    client: Client, services: Any, tokens: TokenFactory, clock: FakeClock, logs: CapturedLogs
) -> None:
    response = client.http.post(
        "/jobs",
        headers={
            **bearer(tokens, "alice"),
            "Content-Type": "application/json",
            "X-Correlation-Id": "checkout-42",
        },
        body=json.dumps({"kind": "report", "params": {"seconds": 1}}),
    )
    assert response.status_code == 202
    topic = sns_backends["123456789012"]["us-east-1"].topics[services.settings.jobs_topic_arn]
    [(_, message, _, published_attributes, *_)] = topic.sent_notifications
    assert published_attributes["correlation_id"]["Value"] == "checkout-42"
    mark = len(logs.lines())
    # As Lambda hands SNS message attributes to the subscribed function.
    attributes = {"correlation_id": {"Type": "String", "Value": "checkout-42"}}
    client.lambda_.invoke(
        "run_job", client.events.generate_sns_event(message=message, message_attributes=attributes)
    )
    lines = logs.since(mark)
    assert lines
    assert {line["correlation_id"] for line in lines} == {"checkout-42"}


def test_the_stale_job_sweep_logs_under_the_schedule_events_id(
    client: Client, services: Any, tokens: TokenFactory, clock: FakeClock, logs: CapturedLogs
) -> None:
    response = client.http.post(
        "/jobs",
        headers={**bearer(tokens, "alice"), "Content-Type": "application/json"},
        body=json.dumps({"kind": "report", "params": {"seconds": 2}}),
    )
    assert response.status_code == 202
    clock.sleep(QUEUED_STALE_SECONDS + 60)
    mark = len(logs.lines())
    event = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [])
    client.lambda_.invoke("sweep_stale_jobs", event)
    lines = logs.since(mark)
    assert "stale job marked failed" in [line["message"] for line in lines]
    assert {line["correlation_id"] for line in lines} == {SCHEDULE_EVENT_ID}


def test_no_invocation_is_current_once_a_handler_returned(client: Client, logs: CapturedLogs) -> None:
    client.lambda_.invoke("ws_connect", websocket_event("$connect", "c9", headers={}))
    assert observability.current_invocation() is None
    logging.getLogger("chalicelib.test").info("outside")
    assert logs.lines()[-1]["correlation_id"] is None


# ---------------------------------------------------------------- per-notify metrics


# ---------------------------------------------------------------- secrets never logged


def test_neither_tokens_nor_the_webhook_secret_nor_signatures_reach_the_logs(
    client: Client,
    services: Any,
    tokens: TokenFactory,
    attacker_key: SigningKey,
    logs: CapturedLogs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    add(services, "alice", "a0")
    good, forged = tokens.mint("alice"), tokens.mint("alice", key=attacker_key)
    secrets = [good, forged, WEBHOOK_SECRET, "whsec_someone_else"]
    for cid, token in (("c1", good), ("c2", forged)):
        client.lambda_.invoke(
            "ws_connect",
            websocket_event("$connect", cid, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"}),
        )
    event = build_test_event("payment_intent.succeeded", "alice")
    valid = signed_delivery(event, WEBHOOK_SECRET)
    tampered = (valid[0].replace('"amount":2000', '"amount":1'), valid[1])
    wrong_secret = signed_delivery(
        build_test_event("payment_intent.succeeded", "alice"), "whsec_someone_else"
    )
    statuses = []
    for body, headers in (valid, tampered, wrong_secret):
        secrets += [headers["Stripe-Signature"], headers["Stripe-Signature"].split("v1=")[1]]
        statuses.append(client.http.post("/webhooks/stripe", headers=headers, body=body.encode()).status_code)
    assert statuses == [200, 400, 400]
    messages = [line["message"] for line in logs.lines()]
    assert "connected" in messages and "connect refused" in messages and "notified" in messages
    written = logs.text + caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    written += capsys.readouterr().out
    assert "[REDACTED]" not in logs.raw_stream.getvalue()  # nothing was left for the safety net to catch
    for secret in secrets:
        assert secret not in written
        if secret.startswith("eyJ"):
            assert secret.split(".")[1] not in written and secret.split(".")[2] not in written


# ---------------------------------------------------------------- the JSON formatter


def test_importing_the_app_in_a_plain_process_logs_json_to_stdout_at_log_level_without_powertools() -> None:
    code = (
        "import logging, sys, app\n"
        "log = logging.getLogger('chalicelib.test')\n"
        "log.debug('hidden at INFO')\n"
        "log.info('hello', extra={'k': 1})\n"
        "app.app.log.error('chalice error')\n"
        "logging.getLogger('botocore').info('quiet library')\n"
        "print('aws_lambda_powertools' in sys.modules)\n"
    )
    for level, expected in (
        ("", ["hello", "chalice error"]),
        ("debug", ["hidden at INFO", "hello", "chalice error"]),
    ):
        env = {**os.environ, **TEST_ENV, "LOG_LEVEL": level}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        *lines, powertools_imported = result.stdout.splitlines()
        entries = [json.loads(line) for line in lines]
        assert [entry["message"] for entry in entries] == expected
        assert entries[-1]["logger"] == "chalice-realtime" and entries[-1]["level"] == "ERROR"
        assert powertools_imported == "False"  # loaded on the first notify, not on cold start


# ---------------------------------------------------------------- the setting
