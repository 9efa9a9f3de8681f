"""Send a correctly signed Stripe test event to the local stack (Stripe cannot reach a laptop).

    python -m devserver.stripe_event --user <uid> [--amount 2000] [--currency usd]
        [--type payment_intent.succeeded|payment_intent.payment_failed|checkout.session.completed]

The event has the shape Stripe sends, with the user in `metadata.user_id` (a
PaymentIntent) or `client_reference_id` (a Checkout Session), and is signed with
the local webhook secret by stripe's own helper. The demo page's
`POST /dev/test-payment` runs the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from devserver.config import LOCAL_STRIPE_SECRET

EVENT_TYPES = ("payment_intent.succeeded", "payment_intent.payment_failed", "checkout.session.completed")
API_VERSION = "2024-06-20"


def stripe_id(prefix: str) -> str:
    """An id in Stripe's style: `stripe_id("evt")` -> 'evt_1Pq...' (24 random characters)."""
    return f"{prefix}_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def build_event(
    user_id: str, amount: int = 2000, currency: str = "usd", kind: str = EVENT_TYPES[0]
) -> dict[str, Any]:
    """A Stripe event of type `kind` paying `amount` (smallest unit) for `user_id`.

    >>> build_event("alice", 500, "eur")["data"]["object"]["metadata"]
    {'user_id': 'alice'}
    """
    if kind not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}")
    now = int(time.time())
    if kind == "checkout.session.completed":
        obj: dict[str, Any] = {
            "id": stripe_id("cs_test"),
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "client_reference_id": user_id,
            "created": now,
            "currency": currency,
            "customer": None,
            "livemode": False,
            "metadata": {},
            "mode": "payment",
            "payment_intent": stripe_id("pi"),
            "payment_status": "paid",
            "status": "complete",
        }
    else:
        succeeded = kind == "payment_intent.succeeded"
        obj = {
            "id": stripe_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount if succeeded else 0,
            "created": now,
            "currency": currency,
            "customer": None,
            "last_payment_error": None
            if succeeded
            else {"code": "card_declined", "decline_code": "generic_decline", "type": "card_error"},
            "livemode": False,
            "metadata": {"user_id": user_id},
            "status": "succeeded" if succeeded else "requires_payment_method",
        }
    return {
        "id": stripe_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def signed_delivery(event: dict[str, Any], secret: str = LOCAL_STRIPE_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and headers Stripe would POST for `event`, signed by `stripe.WebhookSignature`."""
    import stripe

    body = json.dumps(event, separators=(",", ":"))
    signature = stripe.WebhookSignature.generate_signature_header(body, secret)
    return body.encode(), {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": str(signature),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


@dataclass(frozen=True)
class Delivery:
    event: dict[str, Any]
    status: int
    body: str


def send_test_event(
    rest_url: str,
    user_id: str,
    amount: int = 2000,
    currency: str = "usd",
    kind: str = EVENT_TYPES[0],
    secret: str = LOCAL_STRIPE_SECRET,
) -> Delivery:
    """Build, sign and POST a test event to `{rest_url}/webhooks/stripe`; the app's answer is returned.

    delivery = send_test_event("http://127.0.0.1:8000", "uid-of-alice", 500, "eur")
    delivery.status  # 200
    """
    event = build_event(user_id, amount, currency, kind)
    body, headers = signed_delivery(event, secret)
    request = urllib.request.Request(  # noqa: S310 (a local http URL)
        rest_url.rstrip("/") + "/webhooks/stripe", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 (a local http URL)
            return Delivery(event, response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        return Delivery(event, exc.code, exc.read().decode())


def main(argv: list[str] | None = None) -> int:
    """The command line: send one event, print the app's answer, exit 0 on a 2xx."""
    parser = argparse.ArgumentParser(
        prog="python -m devserver.stripe_event", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--user", required=True, help="the uid the payment belongs to")
    parser.add_argument("--amount", type=int, default=2000, help="in the currency's smallest unit (2000)")
    parser.add_argument("--currency", default="usd")
    parser.add_argument("--type", default=EVENT_TYPES[0], choices=EVENT_TYPES)
    parser.add_argument(
        "--rest-url",
        default=os.environ.get("DEV_REST_URL", f"http://127.0.0.1:{os.environ.get('DEV_REST_PORT', '8000')}"),
    )
    parser.add_argument(
        "--secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET", LOCAL_STRIPE_SECRET),
        help="the webhook secret of the local stack (default: $STRIPE_WEBHOOK_SECRET, else the local one)",
    )
    args = parser.parse_args(argv)
    delivery = send_test_event(args.rest_url, args.user, args.amount, args.currency, args.type, args.secret)
    print(f"{delivery.event['type']} {delivery.event['id']} -> {delivery.status} {delivery.body}")
    return 0 if 200 <= delivery.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
