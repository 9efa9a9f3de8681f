"""Realistic Stripe webhook deliveries for tests and local scripts: event payloads and signatures.

    event = build_test_event("payment_intent.succeeded", "alice", amount=500, currency="eur")
    body, headers = signed_delivery(event, "whsec_local")
    requests.post("http://127.0.0.1:8000/webhooks/stripe", data=body, headers=headers)

The payloads follow the shape of Stripe's API (version below) for the fields the
app reads, with the usual neighbours so they look like what Stripe sends.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

API_VERSION = "2024-06-20"


def stripe_id(prefix: str) -> str:
    """A fresh id in Stripe's style: `stripe_id("evt")` -> 'evt_3PqX...'."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return f"{prefix}_" + "".join(secrets.choice(alphabet) for _ in range(24))


def build_test_event(
    kind: str,
    user_id: str | None,
    amount: int = 2000,
    currency: str = "usd",
    *,
    event_id: str | None = None,
    object_id: str | None = None,
    payment_intent_id: str | None = None,
    created: int | None = None,
    reference: str = "default",
) -> dict[str, Any]:
    """A Stripe event of type `kind` for `user_id` (None: no user reference at all).

    `reference` says where the user id goes: `"default"` (client_reference_id for a
    Checkout Session, metadata.user_id for a PaymentIntent), `"client_reference_id"`
    or `"metadata"`. Any other `kind` gets a bare customer object (an unhandled type).
    """
    now = int(time.time()) if created is None else created
    if kind == "checkout.session.completed":
        obj = _checkout_session(amount, currency, now, object_id, payment_intent_id)
        where = "client_reference_id" if reference == "default" else reference
    elif kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        obj = _payment_intent(kind.endswith("succeeded"), amount, currency, now, object_id)
        where = "metadata" if reference == "default" else reference
    else:
        obj = {"id": object_id or stripe_id("cus"), "object": "customer", "created": now, "metadata": {}}
        where = "metadata" if reference == "default" else reference
    if user_id is not None:
        if where == "client_reference_id":
            obj["client_reference_id"] = user_id
        else:
            obj["metadata"] = {**obj.get("metadata", {}), "user_id": user_id}
    return {
        "id": event_id or stripe_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def sign(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header for `payload`, made by stripe's own helper (`t=...,v1=...`)."""
    import stripe

    return str(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp))


def signed_delivery(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """The body and headers Stripe would POST for `event`, signed with `secret`."""
    body = json.dumps(event, separators=(",", ":"))
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(body, secret, timestamp=timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


def _checkout_session(
    amount: int, currency: str, created: int, object_id: str | None, payment_intent_id: str | None
) -> dict[str, Any]:
    return {
        "id": object_id or stripe_id("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "client_reference_id": None,
        "created": created,
        "currency": currency,
        "customer": None,
        "livemode": False,
        "metadata": {},
        "mode": "payment",
        "payment_intent": payment_intent_id or stripe_id("pi"),
        "payment_status": "paid",
        "status": "complete",
    }


def _payment_intent(
    succeeded: bool, amount: int, currency: str, created: int, object_id: str | None
) -> dict[str, Any]:
    return {
        "id": object_id or stripe_id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if succeeded else 0,
        "created": created,
        "currency": currency,
        "customer": None,
        "last_payment_error": None
        if succeeded
        else {"code": "card_declined", "decline_code": "generic_decline", "type": "card_error"},
        "livemode": False,
        "metadata": {},
        "status": "succeeded" if succeeded else "requires_payment_method",
    }
