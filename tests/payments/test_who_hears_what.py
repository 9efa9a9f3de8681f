"""Payments as an adopting app's tests see them, through the core's testing kit: who hears which key."""

from __future__ import annotations

from typing import Any

from chalice.test import Client

from app import app
from tests.conftest import TEST_ENV
from testsupport.stripe_events import build_test_event, signed_delivery


def test_a_stripe_payment_is_heard_by_its_owner_once_even_when_delivered_twice(recorded: Any) -> None:
    recorded.connect("alice")
    recorded.connect("bob")
    body, headers = signed_delivery(
        build_test_event("payment_intent.succeeded", "alice", amount=990, currency="EUR"),
        TEST_ENV["STRIPE_WEBHOOK_SECRET"],
    )
    with Client(app) as client:
        for _ in range(2):  # Stripe retries: the same event id again
            response = client.http.post("/webhooks/stripe", headers=headers, body=body.encode())
            assert response.status_code == 200, response.body
    assert recorded.for_user("alice") == ["payments-updated"]
    assert recorded.for_user("bob") == []
