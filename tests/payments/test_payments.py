"""Stripe webhooks and GET /payments through the Chalice test client, DynamoDB, SSM and the
Management API in moto, events signed with stripe's own helper."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received
from chalice_realtime.testing.store import add_connections

from app import app
from chalicelib.payments import Outcome, UnprocessableEvent, payment_from_event
from chalicelib.settings import Settings
from tests.conftest import TEST_ENV, installed_services
from testsupport.stripe_events import build_test_event, sign, signed_delivery

SECRET = TEST_ENV["STRIPE_WEBHOOK_SECRET"]
HANDLED = ["checkout.session.completed", "payment_intent.succeeded", "payment_intent.payment_failed"]
ROOT = Path(__file__).resolve().parents[2]


def connect(services: Any, user_id: str, *connection_ids: str) -> None:
    add_connections(
        services.realtime.dynamodb, services.settings.realtime.connections_table, user_id, *connection_ids
    )


def deliver(
    client: Client, event: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    body, headers = signed_delivery(event, secret, timestamp=timestamp)
    return client.http.post("/webhooks/stripe", headers=headers, body=body.encode())


def table_items(services: Any) -> list[dict[str, Any]]:
    return list(services.dynamodb.scan(TableName=services.settings.payments_table)["Items"])


def payments_of(client: Client, tokens: TokenFactory, user_id: str, query: str = "") -> Any:
    return client.http.get(f"/payments{query}", headers={"Authorization": f"Bearer {tokens.mint(user_id)}"})


# ---------------------------------------------------------------- handled events


@pytest.mark.parametrize("kind", HANDLED)
def test_each_handled_event_records_the_payment_and_notifies_every_connection_of_its_user_only(
    client: Client, services: Any, management_api: Any, tokens: TokenFactory, kind: str
) -> None:
    connect(services, "alice", "a1", "a2")
    connect(services, "bob", "b1")
    event = build_test_event(kind, "alice", amount=1250, currency="EUR")

    response = deliver(client, event)

    assert response.status_code == 200
    assert response.json_body == {"received": True, "outcome": "recorded"}
    assert received(management_api, "a1") == [{"event": "payments-updated"}]
    assert received(management_api, "a2") == [{"event": "payments-updated"}]
    assert received(management_api, "b1") == []
    listed = payments_of(client, tokens, "alice").json_body
    obj = event["data"]["object"]
    assert listed == {
        "payments": [
            {
                "payment_id": obj.get("payment_intent") or obj["id"],
                "amount": 1250,
                "currency": "eur",
                "status": "failed" if kind.endswith("failed") else "succeeded",
                "stripe_object_id": obj["id"],
                "event_id": event["id"],
                "created": obj["created"],
            }
        ],
        "next_cursor": None,
    }
    assert payments_of(client, tokens, "bob").json_body == {"payments": [], "next_cursor": None}


def test_metadata_user_id_names_the_user_of_a_checkout_session_too(
    client: Client, services: Any, management_api: Any, tokens: TokenFactory
) -> None:
    connect(services, "carol", "c1")
    event = build_test_event("checkout.session.completed", "carol", reference="metadata")
    assert deliver(client, event).json_body["outcome"] == "recorded"
    assert received(management_api, "c1") == [{"event": "payments-updated"}]
    assert len(payments_of(client, tokens, "carol").json_body["payments"]) == 1


@pytest.mark.parametrize("kind", HANDLED)
def test_the_same_event_delivered_twice_is_recorded_once_and_notifies_once(
    client: Client, services: Any, management_api: Any, tokens: TokenFactory, kind: str
) -> None:
    connect(services, "alice", "a1")
    event = build_test_event(kind, "alice")
    first = deliver(client, event)
    # Stripe's retry: the same event, signed again at a later time.
    second = deliver(client, event, timestamp=int(time.time()) + 5)
    assert first.json_body["outcome"] == "recorded"
    assert second.status_code == 200
    assert second.json_body["outcome"] == "duplicate"
    assert received(management_api, "a1") == [{"event": "payments-updated"}]
    assert len(payments_of(client, tokens, "alice").json_body["payments"]) == 1


def test_a_replayed_delivery_byte_for_byte_is_recorded_once(
    client: Client, services: Any, management_api: Any
) -> None:
    connect(services, "alice", "a1")
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "alice"), SECRET)
    answers = [client.http.post("/webhooks/stripe", headers=headers, body=body.encode()) for _ in range(3)]
    assert [a.json_body["outcome"] for a in answers] == ["recorded", "duplicate", "duplicate"]
    assert received(management_api, "a1") == [{"event": "payments-updated"}]
    assert len([item for item in table_items(services) if item["pk"]["S"].startswith("USER#")]) == 1


def test_a_retried_payment_that_failed_then_succeeded_is_one_succeeded_payment(
    client: Client, services: Any, management_api: Any, tokens: TokenFactory
) -> None:
    connect(services, "alice", "a1")
    now = int(time.time())
    failed = build_test_event(
        "payment_intent.payment_failed", "alice", object_id="pi_retry1", created=now - 60
    )
    succeeded = build_test_event("payment_intent.succeeded", "alice", object_id="pi_retry1", created=now - 60)
    succeeded["created"] = now
    assert deliver(client, failed).json_body["outcome"] == "recorded"
    assert deliver(client, succeeded).json_body["outcome"] == "recorded"
    (payment,) = payments_of(client, tokens, "alice").json_body["payments"]
    assert (payment["payment_id"], payment["status"], payment["event_id"]) == (
        "pi_retry1",
        "succeeded",
        succeeded["id"],
    )
    assert received(management_api, "a1") == [{"event": "payments-updated"}] * 2


def test_a_failure_delivered_after_the_success_does_not_undo_it(
    client: Client, services: Any, management_api: Any, tokens: TokenFactory
) -> None:
    connect(services, "alice", "a1")
    now = int(time.time())
    failed = build_test_event(
        "payment_intent.payment_failed", "alice", object_id="pi_late1", created=now - 60
    )
    succeeded = build_test_event("payment_intent.succeeded", "alice", object_id="pi_late1", created=now)
    assert deliver(client, succeeded).json_body["outcome"] == "recorded"
    # Stripe does not order deliveries: the earlier failure arrives last.
    assert deliver(client, failed).json_body["outcome"] == "stale"
    (payment,) = payments_of(client, tokens, "alice").json_body["payments"]
    assert payment["status"] == "succeeded"
    assert received(management_api, "a1") == [{"event": "payments-updated"}]


def test_checkout_session_and_its_payment_intent_are_one_payment(
    client: Client, services: Any, tokens: TokenFactory
) -> None:
    session = build_test_event("checkout.session.completed", "alice", payment_intent_id="pi_same1")
    intent = build_test_event("payment_intent.succeeded", "alice", object_id="pi_same1")
    assert deliver(client, session).json_body["outcome"] == "recorded"
    assert deliver(client, intent).json_body["outcome"] == "recorded"
    payments = payments_of(client, tokens, "alice").json_body["payments"]
    assert [p["payment_id"] for p in payments] == ["pi_same1"]


# ---------------------------------------------------------------- refused deliveries


def _tampered(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body, headers = signed_delivery(event, SECRET)
    return body.replace('"amount":2000', '"amount":1'), headers


def _wrong_secret(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return signed_delivery(event, "whsec_someone_else")


def _old_timestamp(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return signed_delivery(event, SECRET, timestamp=int(time.time()) - 301)


def _missing_header(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body, headers = signed_delivery(event, SECRET)
    del headers["Stripe-Signature"]
    return body, headers


def _garbage_header(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body, headers = signed_delivery(event, SECRET)
    return body, {**headers, "Stripe-Signature": "not a signature"}


def _v0_scheme_only(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body, headers = signed_delivery(event, SECRET)
    return body, {**headers, "Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v0=")}


def _signed_malformed_json(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)[:-1]
    return body, {"Content-Type": "application/json", "Stripe-Signature": sign(body, SECRET)}


def _signed_json_array(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps([event])
    return body, {"Content-Type": "application/json", "Stripe-Signature": sign(body, SECRET)}


@pytest.mark.parametrize(
    "make",
    [
        _tampered,
        _wrong_secret,
        _old_timestamp,
        _missing_header,
        _garbage_header,
        _v0_scheme_only,
        _signed_malformed_json,
        _signed_json_array,
    ],
)
def test_a_delivery_that_is_not_a_recent_stripe_signed_event_is_a_400_and_changes_nothing(
    client: Client, services: Any, management_api: Any, make: Any
) -> None:
    connect(services, "alice", "a1")
    body, headers = make(build_test_event("payment_intent.succeeded", "alice"))
    response = client.http.post("/webhooks/stripe", headers=headers, body=body.encode())
    assert response.status_code == 400
    assert response.json_body["Code"] == "BadRequestError"
    assert response.json_body["Message"]
    assert table_items(services) == []
    assert received(management_api, "a1") == []


def test_an_unknown_event_type_is_acknowledged_and_ignored(
    client: Client, services: Any, management_api: Any
) -> None:
    connect(services, "alice", "a1")
    for kind in ("customer.created", "charge.refunded", "invoice.paid"):
        response = deliver(client, build_test_event(kind, "alice"))
        assert response.status_code == 200
        assert response.json_body == {"received": True, "outcome": "ignored"}
    assert table_items(services) == []
    assert received(management_api, "a1") == []


@pytest.mark.parametrize(
    ("kind", "reference", "where"),
    [
        ("checkout.session.completed", None, "default"),
        ("payment_intent.succeeded", None, "default"),
        ("payment_intent.payment_failed", None, "default"),
        ("payment_intent.succeeded", "", "metadata"),
        ("checkout.session.completed", "../bob", "client_reference_id"),
        ("payment_intent.payment_failed", "alice#PAYMENT", "metadata"),
        ("payment_intent.succeeded", "a" * 129, "metadata"),
        ("checkout.session.completed", "alice bob", "client_reference_id"),
        ("payment_intent.succeeded", 42, "metadata"),
    ],
)
def test_a_missing_or_invalid_user_reference_is_acknowledged_logged_and_not_recorded(
    client: Client,
    services: Any,
    management_api: Any,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    reference: Any,
    where: str,
) -> None:
    connect(services, "alice", "a1")
    connect(services, "bob", "b1")
    caplog.set_level(logging.INFO)
    response = deliver(client, build_test_event(kind, reference, reference=where))
    assert response.status_code == 200
    assert response.json_body == {"received": True, "outcome": "ignored"}
    assert table_items(services) == []
    assert received(management_api, "a1") == [] and received(management_api, "b1") == []
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "not recorded" in r.getMessage()
    ]
    assert len(warnings) == 1


def test_an_unpaid_checkout_session_waits_for_its_payment_intent_events(
    client: Client, services: Any, management_api: Any
) -> None:
    connect(services, "alice", "a1")
    event = build_test_event("checkout.session.completed", "alice")
    event["data"]["object"]["payment_status"] = "unpaid"
    assert deliver(client, event).json_body["outcome"] == "ignored"
    assert table_items(services) == []
    assert received(management_api, "a1") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", None),
        ("amount", -1),
        ("amount", "12"),
        ("amount", True),
        ("currency", "euro"),
        ("id", "pi 1"),
    ],
)
def test_events_without_a_usable_payment_are_unprocessable(field: str, value: Any) -> None:
    event = build_test_event("payment_intent.succeeded", "alice")
    event["data"]["object"][field] = value
    with pytest.raises(UnprocessableEvent):
        payment_from_event(event)


# ---------------------------------------------------------------- GET /payments


def test_payments_are_the_callers_own_newest_first_and_paginate(
    client: Client, services: Any, tokens: TokenFactory
) -> None:
    base = int(time.time()) - 1000
    for n in range(5):
        deliver(
            client, build_test_event("payment_intent.succeeded", "alice", amount=100 + n, created=base + n)
        )
    deliver(client, build_test_event("payment_intent.succeeded", "bob", amount=999, created=base + 10))

    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        body = payments_of(client, tokens, "alice", f"?limit=2{cursor}").json_body
        seen += [p["amount"] for p in body["payments"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == [104, 103, 102, 101, 100]
    assert pages >= 3
    assert [p["amount"] for p in payments_of(client, tokens, "bob").json_body["payments"]] == [999]


def test_a_cursor_from_another_users_list_is_refused(
    client: Client, services: Any, tokens: TokenFactory
) -> None:
    for n in range(3):
        deliver(client, build_test_event("payment_intent.succeeded", "bob", created=int(time.time()) - n))
    cursor = payments_of(client, tokens, "bob", "?limit=1").json_body["next_cursor"]
    assert cursor
    response = payments_of(client, tokens, "alice", f"?cursor={cursor}")
    assert response.status_code == 400
    assert response.json_body["Message"] == "invalid cursor"


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?limit=ten", "?cursor=%%%", "?cursor=e30"])
def test_bad_page_parameters_are_a_400(
    client: Client, services: Any, tokens: TokenFactory, query: str
) -> None:
    response = payments_of(client, tokens, "alice", query)
    assert response.status_code == 400
    assert response.json_body["Code"] == "BadRequestError"


def test_payments_need_a_token(client: Client, services: Any) -> None:
    assert client.http.get("/payments").status_code == 401


# ---------------------------------------------------------------- the secret


@pytest.fixture
def ssm_services(
    aws: dict[str, Any], ssm: Any, firebase_certs: Any, management_api_url: str
) -> Iterator[Any]:
    """The app's services with the webhook secret named by STRIPE_WEBHOOK_SECRET_PARAM."""
    settings = Settings.from_env(
        {**TEST_ENV, "STRIPE_WEBHOOK_SECRET": "", "STRIPE_WEBHOOK_SECRET_PARAM": "/test/stripe-webhook"}
    )
    with installed_services(settings, management_api_url, aws) as built:
        built.ssm = ssm  # before the secret is first read
        yield built


def test_the_webhook_verifies_with_the_secret_from_ssm(
    ssm_services: Any, ssm: Any, management_api: Any
) -> None:
    ssm.put_parameter(Name="/test/stripe-webhook", Value="whsec_in_ssm", Type="SecureString")
    connect(ssm_services, "alice", "a1")
    with Client(app) as client:
        good = deliver(client, build_test_event("payment_intent.succeeded", "alice"), secret="whsec_in_ssm")
        env_secret = deliver(client, build_test_event("payment_intent.succeeded", "alice"), secret=SECRET)
    assert good.json_body["outcome"] == "recorded"
    assert env_secret.status_code == 400
    assert received(management_api, "a1") == [{"event": "payments-updated"}]


def test_the_webhook_answers_500_and_logs_why_when_the_parameter_is_missing(
    ssm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Client(app) as client:
        response = deliver(client, build_test_event("payment_intent.succeeded", "alice"))
    assert response.status_code == 500
    assert response.json_body["Message"].endswith("the Stripe webhook is not configured on this stage")
    assert "/test/stripe-webhook" not in response.body.decode()
    assert "'/test/stripe-webhook' named by STRIPE_WEBHOOK_SECRET_PARAM does not exist" in caplog.text
    assert table_items(ssm_services) == []


# ---------------------------------------------------------------- logs and imports


def test_neither_the_secret_nor_the_signature_ever_reaches_the_logs(
    client: Client, services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    caplog.set_level(logging.DEBUG, logger="app")
    caplog.set_level(logging.INFO)
    connect(services, "alice", "a1")
    headers_seen: list[str] = []
    for make in (
        lambda e: signed_delivery(e, SECRET),
        _tampered,
        _old_timestamp,
        _wrong_secret,
        _signed_malformed_json,
    ):
        body, headers = make(build_test_event("checkout.session.completed", "alice"))
        headers_seen.append(headers["Stripe-Signature"])
        client.http.post("/webhooks/stripe", headers=headers, body=body.encode())
    deliver(client, build_test_event("payment_intent.succeeded", None))
    assert caplog.records, "the webhook logs what it did"
    assert SECRET not in caplog.text
    for header in headers_seen:
        assert header not in caplog.text
        assert header.split("v1=")[1] not in caplog.text


def test_importing_the_app_does_not_import_stripe() -> None:
    env = {**os.environ, **TEST_ENV}
    code = "import sys, app; print('stripe' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_outcomes_are_the_strings_the_webhook_answers() -> None:
    assert [o.value for o in Outcome] == ["recorded", "duplicate", "stale", "ignored"]
