"""User ids and keys from outside never reach a DynamoDB key or `notify` unvalidated.

Every way a value enters from outside is fed the same hostile values (key separators such as
`#` and `conv#a#b`, prefixes of our own key scheme, very long, empty, Unicode look-alikes,
control characters, non-strings):

- the chat's `to` and `with` (body and query), the job's `kind`, `params` and id in the path;
- the uid inside a valid, signed token, on every protected route;
- a signed Stripe event's user reference, event id, object id and PaymentIntent id;
- the owner named in the job runner's SNS message;
- `notify` itself, with hostile user ids and event keys.

Each is refused (400 / 404 / 403, or acknowledged and ignored for Stripe) with nothing written
to any table, nothing published and no frame sent, and never a 5xx.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.connections import Connection
from chalice_realtime.identifiers import USER_ID_PATTERN
from chalice_realtime.testing.firebase import TokenFactory
from moto.sns.models import sns_backends

from chalicelib.payments import STRIPE_ID_PATTERN
from tests.conftest import TEST_ENV
from testsupport.stripe_events import build_test_event, signed_delivery

HOSTILE_STRINGS = [
    "",
    "#",
    "alice#bob",
    "conv#alice#bob",
    "USER#alice",
    "PAYMENT#pi_1",
    "EVENT#evt_1",
    "unread#alice",
    "peer#alice",
    "msg#0",
    "a" * 129,
    "a" * 10_000,
    "ålice",
    "\uff41lice",  # fullwidth a: looks like alice
    "alice\u200b",  # zero-width space
    "al ice",
    "../alice",
    "alice\x00",
    "alice\n",
    "😀",
    "' OR '1'='1",
]
HOSTILE_VALUES: list[Any] = [*HOSTILE_STRINGS, 7, 7.5, True, None, [], {}, ["alice"], {"S": "alice"}]
JOB_ID = "01JD5Q6V3ZK8W1X0J9N2C4B7TA"


@pytest.fixture
def listening(services: Any) -> list[str]:
    """alice and bob each have a live connection, so any frame sent to them would be seen."""
    services.realtime.connections.add(Connection("alice-tab", "alice", 1_700_000_000_000))
    services.realtime.connections.add(Connection("bob-tab", "bob", 1_700_000_000_001))
    return ["alice-tab", "bob-tab"]


def stored(services: Any) -> dict[str, list[dict[str, Any]]]:
    tables = [
        services.settings.jobs_table,
        services.settings.messages_table,
        services.settings.payments_table,
    ]
    return {table: services.dynamodb.scan(TableName=table)["Items"] for table in tables}


def published() -> int:
    topics = sns_backends["123456789012"]["us-east-1"].topics
    return sum(len(getattr(topic, "sent_notifications", [])) for topic in topics.values())


def assert_nothing_happened(services: Any, management_api: Any) -> None:
    assert all(items == [] for items in stored(services).values())
    assert published() == 0
    assert management_api.connections == {}  # no frame was posted to anyone


def call(
    client: Client, tokens: TokenFactory, method: str, path: str, body: Any = None, uid: str = "alice"
) -> Any:
    headers = {"Authorization": f"Bearer {tokens.mint(uid)}", "Content-Type": "application/json"}
    raw = json.dumps(body).encode() if body is not None else None
    return client.http.request(method, path, headers=headers, body=raw)


def test_hostile_user_ids_and_job_fields_in_requests_are_refused_and_nothing_happens(
    client: Client, tokens: TokenFactory, services: Any, management_api: Any, listening: list[str]
) -> None:
    answers: dict[tuple[str, str], int] = {}
    for value in HOSTILE_VALUES:
        label = repr(value)[:40]
        answers["POST /messages to", label] = call(
            client, tokens, "POST", "/messages", {"to": value, "text": "hi"}
        ).status_code
        answers["POST /messages/read with", label] = call(
            client, tokens, "POST", "/messages/read", {"with": value}
        ).status_code
        answers["POST /jobs kind", label] = call(
            client, tokens, "POST", "/jobs", {"kind": value, "params": {"seconds": 1}}
        ).status_code
        answers["POST /jobs params", label] = call(
            client, tokens, "POST", "/jobs", {"kind": "report", "params": value}
        ).status_code
        if isinstance(value, str) and value:
            query = urllib.parse.quote(value, safe="")
            answers["GET /messages with", label] = call(
                client, tokens, "GET", f"/messages?with={query}"
            ).status_code
            answers["POST /jobs params key", label] = call(
                client, tokens, "POST", "/jobs", {"kind": "report", "params": {"seconds": 1, value: 1}}
            ).status_code
            answers["GET /jobs/{id}", label] = call(client, tokens, "GET", f"/jobs/{query}").status_code
    expected = {key: 404 if key[0] == "GET /jobs/{id}" else 400 for key in answers}
    assert answers == expected
    assert_nothing_happened(services, management_api)


def test_a_signed_token_whose_uid_cannot_be_a_key_writes_nothing_on_any_route(
    client: Client, tokens: TokenFactory, services: Any, management_api: Any, listening: list[str]
) -> None:
    # Firebase allows custom uids of any characters (up to 128); a token is genuine, its uid still hostile.
    from tests.app.test_auth_everywhere import protected_routes, request

    statuses: dict[tuple[str, str, str], int] = {}
    for uid in [s for s in HOSTILE_STRINGS if s and not USER_ID_PATTERN.fullmatch(s)]:
        for route in protected_routes():
            response = request(client, route, {"Authorization": f"Bearer {tokens.mint(uid)}"})
            statuses[uid[:20], *route] = response.status_code
            assert response.status_code < 500
            if route != ("GET", "/me") and response.status_code == 200:
                # Reads keyed by the uid alone (jobs) may answer, with nothing in them.
                body = json.loads(response.body)
                assert all(value in ([], None) for value in body.values()), (uid, route, body)
    writes = {key: code for key, code in statuses.items() if key[1] == "POST"}
    assert set(writes.values()) <= {400, 403}  # 403: firebase-admin itself refuses a uid over 128
    assert_nothing_happened(services, management_api)


STRIPE_FIELDS = ["metadata.user_id", "client_reference_id", "id", "object id", "payment_intent"]


@pytest.mark.parametrize("field", STRIPE_FIELDS)
def test_hostile_values_in_a_signed_stripe_event_never_become_a_key(
    field: str, client: Client, services: Any, management_api: Any, listening: list[str]
) -> None:
    outcomes = []
    for value in HOSTILE_VALUES:
        if field in ("id", "object id") and isinstance(value, str) and STRIPE_ID_PATTERN.fullmatch(value):
            continue  # e.g. 129 letters: a well-formed Stripe id (up to 255 of [A-Za-z0-9_]), not hostile
        kind = (
            "checkout.session.completed"
            if field in ("client_reference_id", "payment_intent")
            else ("payment_intent.succeeded")
        )
        event = build_test_event(
            kind, "alice" if field not in ("metadata.user_id", "client_reference_id") else None
        )
        obj = event["data"]["object"]
        if field == "metadata.user_id":
            obj["metadata"] = {"user_id": value}
        elif field == "id":
            event["id"] = value
        elif field == "object id":
            obj["id"] = value
        else:
            obj[field] = value
        body, headers = signed_delivery(event, TEST_ENV["STRIPE_WEBHOOK_SECRET"])
        response = client.http.post("/webhooks/stripe", headers=headers, body=body.encode())
        assert response.status_code == 200, response.body
        outcomes.append(response.json_body["outcome"])
    if field == "payment_intent":
        # A malformed PaymentIntent id is not used: the payment is filed under the session's own id.
        assert set(outcomes) == {"recorded"}
        for item in stored(services)[services.settings.payments_table]:
            # One '#' per key, between our prefix and a Stripe-shaped id: nothing came in from the event.
            assert re.fullmatch(r"USER#alice|EVENT#evt_[A-Za-z0-9]+", item["pk"]["S"])
            assert re.fullmatch(r"PAYMENT#[A-Za-z0-9_]{1,255}|EVENT", item["sk"]["S"])
    else:
        assert set(outcomes) == {"ignored"}
        assert_nothing_happened(services, management_api)


def test_a_job_message_naming_a_hostile_owner_is_dropped(
    client: Client, services: Any, management_api: Any, listening: list[str]
) -> None:
    from chalicelib.jobs import RunOutcome

    for owner in HOSTILE_VALUES:
        message = json.dumps({"owner": owner, "job_id": JOB_ID})
        assert services.job_runner.handle(message) is RunOutcome.MALFORMED
    assert_nothing_happened(services, management_api)


def test_notify_refuses_hostile_event_keys_before_any_io_and_never_mixes_up_users(
    services: Any, management_api: Any, listening: list[str]
) -> None:
    for key in [*HOSTILE_VALUES, "Jobs-Updated", "jobs updated", "a" * 65, "-jobs"]:
        with pytest.raises(ValueError, match="invalid event key"):
            services.notifier.notify("alice", key)
    for user_id in [s for s in HOSTILE_STRINGS if "alice" in s or not s]:
        # A near-miss of alice's uid is another (unknown) user: nothing reaches alice, nothing raises.
        report = services.notifier.notify(user_id, "jobs-updated")
        assert report.delivered == 0
    assert management_api.connections == {}
