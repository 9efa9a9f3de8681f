"""Attacks on the Stripe webhook that `test_payments.py` does not already cover.

The list of the hardening issue and where each is tested:

| attack | test |
| --- | --- |
| replayed event | `test_payments.py`: same event twice, byte-for-byte; here: a captured one re-stamped |
| tampered body | `test_payments.py` (`_tampered`); here: one event's signature on another event's body |
| old timestamp | `test_payments.py` (`_old_timestamp`, 301 s) |
| wrong secret | `test_payments.py` (`_wrong_secret`); here: a secret differing in its last character |
| unknown type | `test_payments.py` (`test_an_unknown_event_type_is_acknowledged_and_ignored`) |
| missing user reference | `test_payments.py` and `test_hostile_input.py` (hostile references) |
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.connections import Connection
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from app import app
from tests.conftest import TEST_ENV
from testsupport.stripe_events import build_test_event, sign, signed_delivery

SECRET = TEST_ENV["STRIPE_WEBHOOK_SECRET"]


@pytest.fixture
def client(services: Any) -> Iterator[Client]:
    services.realtime.connections.add(Connection("alice-tab", "alice", 1_700_000_000_000))
    with Client(app) as test_client:
        yield test_client


def post(client: Client, body: str, headers: dict[str, str]) -> Any:
    return client.http.post("/webhooks/stripe", headers=headers, body=body.encode())


def nothing_recorded(services: Any) -> bool:
    items = services.dynamodb.scan(TableName=services.settings.payments_table)["Items"]
    frames = apigatewaymanagementapi_backends["123456789012"]["us-east-1"].connections
    return items == [] and frames == {}


def restamped(body: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    # A delivery captured 10 minutes ago, its `t=` moved to now to get past the tolerance.
    old = sign(body, SECRET, timestamp=int(time.time()) - 600)
    signature = old.split(",", 1)[1]
    return body, {**headers, "Stripe-Signature": f"t={int(time.time())},{signature}"}


def borrowed_signature(body: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    # A genuine, fresh signature of another (harmless) event, sent with the attacker's body.
    _, other_headers = signed_delivery(build_test_event("customer.created", "alice"), SECRET)
    return body, {**headers, "Stripe-Signature": other_headers["Stripe-Signature"]}


def near_secret(body: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    return body, {**headers, "Stripe-Signature": sign(body, SECRET[:-1] + "X")}


def duplicated_header_entries(body: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    # Several bogus v1 entries (as if brute-forcing) and no valid one.
    entries = ",".join(f"v1={n:064x}" for n in range(50))
    return body, {**headers, "Stripe-Signature": f"t={int(time.time())},{entries}"}


@pytest.mark.parametrize("attack", [restamped, borrowed_signature, near_secret, duplicated_header_entries])
def test_forged_deliveries_are_400_and_record_nothing(client: Client, services: Any, attack: Any) -> None:
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "alice"), SECRET)
    response = post(client, *attack(body, headers))
    assert response.status_code == 400
    assert response.json_body["Code"] == "BadRequestError"
    assert nothing_recorded(services)


def test_a_body_that_is_not_json_content_is_refused_before_verification(
    client: Client, services: Any
) -> None:
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "alice"), SECRET)
    response = post(client, body, {**headers, "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert set(json.loads(response.body)) == {"Code", "Message"}
    assert nothing_recorded(services)


def test_the_genuine_delivery_of_the_same_event_is_recorded(client: Client, services: Any) -> None:
    # The control: the deliveries above fail because of the attack, not because of the event.
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "alice"), SECRET)
    assert post(client, body, headers).json_body == {"received": True, "outcome": "recorded"}
    assert not nothing_recorded(services)
