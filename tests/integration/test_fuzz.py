"""Fuzzing the REST API over HTTP: schemathesis, driven by `docs/openapi.yaml`, with a valid token.

The app runs in Chalice's own local server (the one `make dev` uses) on 127.0.0.1, a free port,
in a thread of this process; DynamoDB, SNS and the Management API are moto in-process, and the
test certificates stand in for Google's, so every request goes through the real authorizer.

For every operation of the document, a fixed number of generated requests (derandomized, so
every run sends the same ones) in both of schemathesis' modes:
- positive: data the document allows;
- negative: data it forbids (wrong types, out-of-range numbers, missing fields, broken patterns).

Each response must be: no 5xx; documented status and content type; a body matching the documented
schema (so every 4xx is a JSON error body); and negative data must be refused with a 4xx.
A second test sends arbitrary JSON *correctly signed* with the Stripe secret to the webhook.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from chalice_realtime.testing.firebase import TokenFactory
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app import app
from tests.conftest import TEST_ENV
from testsupport.stripe_events import build_test_event, sign

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
EXAMPLES_PER_OPERATION_AND_MODE = 40
SIGNED_WEBHOOK_EXAMPLES = 150
CALLER = "fuzz-caller-Q7"  # not a value the generator is likely to pick as `to` / `with`
# A kept-alive connection to Chalice's local server answers ~40 ms late (Nagle vs delayed ACK).
NO_KEEP_ALIVE = {"Connection": "close"}

# Fuzz budget and outcome, described in docs/security.md (`pytest -s` prints them).
STATS: collections.Counter[str] = collections.Counter()


@pytest.fixture
def base_url(services: Any) -> Iterator[str]:
    """The app in Chalice's local server on a free port; stopped (and `app` restored) afterwards."""
    from chalice.local import create_local_server

    from devserver.lambdas import chalice_config

    original_class = app.__class__
    server = create_local_server(app, chalice_config(), "127.0.0.1", 0)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)
        app.__class__ = original_class  # create_local_server swaps it for a thread-local variant


def fuzz_settings(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        derandomize=True,  # the same requests on every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as generated
        suppress_health_check=list(HealthCheck),
    )


def test_every_operation_survives_generated_requests(base_url: str, tokens: TokenFactory) -> None:
    import schemathesis
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.generation import GenerationMode

    config = schemathesis.Config.from_dict(
        {
            "generation": {
                # Unknown query parameters are ignored, as HTTP APIs conventionally do: not a violation.
                "allow-extra-parameters": False,
                # The token is the test's valid one on every request; forged ones: test_auth_everywhere.py.
                "with-security-parameters": False,
            }
        }
    )
    schema = schemathesis.openapi.from_path(str(OPENAPI_PATH), config=config)
    headers = {"Authorization": f"Bearer {tokens.mint(CALLER)}", **NO_KEEP_ALIVE}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(methods) for methods in app.routes.values())
    statuses: collections.Counter[int] = collections.Counter()

    for operation in operations:
        raw = operation.definition.raw
        # An operation with no parameters and no body has nothing to get wrong: positive only.
        mutable = bool(raw.get("parameters") or raw.get("requestBody"))
        for mode in (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if mutable else (GenerationMode.POSITIVE,)
        ):

            @fuzz_settings(EXAMPLES_PER_OPERATION_AND_MODE)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=10)
                STATS["requests"] += 1
                statuses[response.status_code] += 1
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
                if response.status_code >= 400:
                    body = response.json()  # every refusal is a JSON error body
                    assert isinstance(body, dict)
                    assert {"Code", "Message"} <= set(body) or set(body) in ({"message"}, {"Message"})
                case.validate_response(response, checks=checks)

            run()
    STATS["operations"] = len(operations)
    STATS.update({f"status {code}": count for code, count in statuses.items()})
    print(f"\nfuzz: {dict(STATS)}")
    assert STATS["requests"] >= len(operations) * 2 * 10  # the budget was really spent
    assert not any(code >= 500 for code in statuses)


# ---------------------------------------------------------------- signed webhook bodies

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
HOSTILE_USER_REFERENCES = st.one_of(
    st.sampled_from(
        ["", "#", "alice#PAYMENT", "conv#a#b", "USER#bob", "a" * 129, "ålice", "al ice", "../bob"]
    ),
    JSON_VALUES,
)
HANDLED_TYPES = ["checkout.session.completed", "payment_intent.succeeded", "payment_intent.payment_failed"]
OBJECT_FIELDS = [
    "id",
    "amount",
    "amount_total",
    "currency",
    "created",
    "metadata",
    "client_reference_id",
    "payment_intent",
    "payment_status",
]


@st.composite
def signed_events(draw: Any) -> str:
    """A handled Stripe event with some fields replaced by arbitrary JSON, or arbitrary JSON outright."""
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(JSON_VALUES))
    event = build_test_event(draw(st.sampled_from(HANDLED_TYPES)), "alice")
    obj = event["data"]["object"]
    for name in draw(st.lists(st.sampled_from(OBJECT_FIELDS), max_size=3, unique=True)):
        obj[name] = draw(HOSTILE_USER_REFERENCES if name in ("client_reference_id",) else JSON_VALUES)
    if draw(st.booleans()):
        obj["metadata"] = {"user_id": draw(HOSTILE_USER_REFERENCES)}
    for name in draw(st.lists(st.sampled_from(["id", "type", "created", "data"]), max_size=2, unique=True)):
        event[name] = draw(JSON_VALUES)
    return json.dumps(event)


def test_correctly_signed_but_arbitrary_webhook_bodies_never_get_a_5xx(base_url: str, services: Any) -> None:
    session = requests.Session()
    outcomes: collections.Counter[str] = collections.Counter()

    @fuzz_settings(SIGNED_WEBHOOK_EXAMPLES)
    @given(body=signed_events())
    def run(body: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "Stripe-Signature": sign(body, TEST_ENV["STRIPE_WEBHOOK_SECRET"]),
        }
        response = session.post(
            f"{base_url}/webhooks/stripe", data=body.encode(), headers=headers, timeout=10
        )
        STATS["signed webhook requests"] += 1
        assert response.status_code in (200, 400), response.text
        answer = response.json()
        if response.status_code == 400:
            assert answer["Code"] == "BadRequestError"  # not a JSON object
        else:
            outcomes[answer["outcome"]] += 1
            assert answer["outcome"] in ("recorded", "duplicate", "stale", "ignored")

    run()
    print(f"\nsigned webhook fuzz: {SIGNED_WEBHOOK_EXAMPLES} examples, outcomes {dict(outcomes)}")
    # Whatever was recorded belongs to a valid user id: hostile references never became a key.
    items = services.dynamodb.scan(TableName=services.settings.payments_table)["Items"]
    for item in items:
        assert item["pk"]["S"] in ("USER#alice",) or item["pk"]["S"].startswith("EVENT#evt_")
