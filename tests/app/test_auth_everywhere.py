"""Every forged or broken token is refused on EVERY protected route and at `$connect`.

The protected routes come from `app.routes` (every route with an authorizer), so a new route is
covered the day it is added. Each refused request is one a valid token would get through (the
control below), and nothing is written or sent for any of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.auth import FirebaseVerifier, InvalidToken
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import BAD_TOKENS, SigningKey, TokenFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.sns.models import sns_backends

from app import app
from tests.conftest import TEST_ENV

AuthHeader = Callable[[TokenFactory, SigningKey], dict[str, str]]


def bearer(case: Callable[[TokenFactory, SigningKey], str]) -> AuthHeader:
    return lambda t, k: {"Authorization": f"Bearer {case(t, k)}"}


# Every forged-token case of the core, plus the ways a header itself can be wrong.
BAD_AUTH: dict[str, AuthHeader] = {
    **{name: bearer(case) for name, case in BAD_TOKENS.items()},
    # A genuine token of another Firebase project (Google signs every project's tokens with the same keys).
    "another firebase project": bearer(
        lambda t, k: t.mint("alice", aud="other-project", iss="https://securetoken.google.com/other-project")
    ),
    "no header": lambda t, k: {},
    "empty bearer": lambda t, k: {"Authorization": "Bearer "},
    "basic scheme": lambda t, k: {"Authorization": f"Basic {t.mint('alice')}"},
    "token without scheme": lambda t, k: {"Authorization": t.mint("alice")},
    "two tokens": lambda t, k: {"Authorization": f"Bearer {t.mint('alice')} {t.mint('bob')}"},
    "signature stripped": bearer(lambda t, k: t.mint("alice").rsplit(".", 1)[0] + "."),
    "payload swapped": bearer(
        lambda t, k: ".".join(
            [*t.mint("alice").split(".")[:1], t.mint("bob").split(".")[1], t.mint("alice").split(".")[2]]
        )
    ),
}

JOB_ID = "01JD5Q6V3ZK8W1X0J9N2C4B7TA"
FORBIDDEN_MESSAGE = "User is not authorized to access this resource"
# A request each route would accept from a valid token, so a refusal is the token's doing.
# Routes missing here still get every case, with an empty JSON object as body.
SAMPLE_REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/jobs"): {"body": {"kind": "report", "params": {"seconds": 1}}},
    ("POST", "/messages"): {"body": {"to": "bob", "text": "hello"}},
    ("GET", "/messages"): {"query": "?with=bob"},
    ("POST", "/messages/read"): {"body": {"with": "bob"}},
}


def protected_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every route of the app behind the Firebase authorizer."""
    return sorted(
        (method, path)
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if entry.authorizer is not None
    )


def request(client: Client, route: tuple[str, str], headers: dict[str, str]) -> Any:
    method, path = route
    sample = SAMPLE_REQUESTS.get(route, {})
    url = re.sub(r"\{[^}]+\}", JOB_ID, path) + sample.get("query", "")
    body = json.dumps(sample.get("body", {})).encode() if method in ("POST", "PUT", "PATCH") else None
    return client.http.request(
        method, url, headers={"Content-Type": "application/json", **headers}, body=body
    )


def everything_stored(services: Any) -> dict[str, list[Any]]:
    tables = [
        services.settings.realtime.connections_table,
        services.settings.jobs_table,
        services.settings.messages_table,
        services.settings.payments_table,
    ]
    return {table: services.dynamodb.scan(TableName=table)["Items"] for table in tables}


def sent_anywhere() -> tuple[int, int]:
    """(SNS messages published, frames posted to connections) in moto."""
    topics = sns_backends["123456789012"]["us-east-1"].topics
    published = sum(len(getattr(topic, "sent_notifications", [])) for topic in topics.values())
    connections = apigatewaymanagementapi_backends["123456789012"]["us-east-1"].connections
    return published, sum(len(c.data) for c in connections.values())


def test_the_app_has_protected_routes_and_each_is_checked_with_every_case() -> None:
    # Guards the derivation itself: an app.routes change that hid the routes would make the tests vacuous.
    assert len(protected_routes()) >= 9
    assert len(BAD_AUTH) >= len(BAD_TOKENS) + 5


@pytest.mark.parametrize("route", protected_routes(), ids=" ".join)
def test_a_valid_token_gets_through_every_protected_route(
    route: tuple[str, str], client: Client, tokens: TokenFactory
) -> None:
    # The control: the same requests as below, with a valid token, are not refused by the authorizer.
    response = request(client, route, {"Authorization": f"Bearer {tokens.mint('alice')}"})
    assert response.status_code not in (401, 403), response.body


@pytest.mark.parametrize("route", protected_routes(), ids=" ".join)
def test_every_bad_token_is_refused_on_every_protected_route(
    route: tuple[str, str], client: Client, services: Any, tokens: TokenFactory, attacker_key: SigningKey
) -> None:
    refusals = {"Unauthorized": {"message": "Unauthorized"}, "Forbidden": {"Message": FORBIDDEN_MESSAGE}}
    answers = {}
    for case, header in BAD_AUTH.items():
        response = request(client, route, header(tokens, attacker_key))
        answers[case] = (response.status_code, json.loads(response.body))
    expected = {
        case: (401, refusals["Unauthorized"]) if case == "no header" else (403, refusals["Forbidden"])
        for case in BAD_AUTH
    }
    assert answers == expected
    assert all(items == [] for items in everything_stored(services).values())
    assert sent_anywhere() == (0, 0)


def test_every_bad_token_is_refused_at_connect_either_way_it_is_sent(
    client: Client, services: Any, tokens: TokenFactory, attacker_key: SigningKey
) -> None:
    statuses = {}
    for case, make in BAD_TOKENS.items():
        token = make(tokens, attacker_key)
        by_header = websocket_event("$connect", "c-1", headers={"Sec-WebSocket-Protocol": f"bearer, {token}"})
        by_query = websocket_event("$connect", "c-2", query={"token": token})
        for via, event in (("subprotocol", by_header), ("query", by_query)):
            response = client.lambda_.invoke("ws_connect", event).payload
            assert "Sec-WebSocket-Protocol" not in (response.get("headers") or {})
            statuses[case, via] = response["statusCode"]
    assert statuses == {(case, via): 401 for case in BAD_TOKENS for via in ("subprotocol", "query")}
    assert everything_stored(services)[services.settings.realtime.connections_table] == []


def test_a_token_of_another_firebase_project_is_refused_at_connect(
    client: Client, services: Any, tokens: TokenFactory
) -> None:
    other = tokens.mint("alice", aud="other-project", iss="https://securetoken.google.com/other-project")
    event = websocket_event("$connect", "c-1", headers={"Sec-WebSocket-Protocol": f"bearer, {other}"})
    assert client.lambda_.invoke("ws_connect", event).payload["statusCode"] == 401
    assert everything_stored(services)[services.settings.realtime.connections_table] == []


def test_without_the_stage_guard_the_emulator_variable_would_let_unsigned_tokens_in(
    monkeypatch: pytest.MonkeyPatch, tokens: TokenFactory, firebase_certs: Any
) -> None:
    """Why `Settings` refuses FIREBASE_AUTH_EMULATOR_HOST outside `local` (realtime/tests/test_settings.py):
    with it set, firebase-admin accepts a token with no signature at all."""
    unsigned = tokens.unsigned("mallory")
    signed_project = TEST_ENV["FIREBASE_PROJECT_ID"]
    # Without the variable (every deployed stage): refused.
    with pytest.raises(InvalidToken):
        FirebaseVerifier(signed_project).verify(unsigned)
    # With it (a fresh firebase-admin app reads it on first use): accepted, for any uid the token names.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    emulated = TokenFactory("emulator-guard-demo", tokens.key)
    verifier = FirebaseVerifier("emulator-guard-demo", allow_emulator=True)  # the local stack's
    assert verifier.verify(emulated.unsigned("mallory")) == "mallory"


def test_revocation_checks_without_a_google_credential_refuse_rather_than_skip_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, tokens: TokenFactory, firebase_certs: Any
) -> None:
    # FIREBASE_CHECK_REVOKED=true needs Application Default Credentials for the user lookup; without
    # them every token is refused as "cannot check" (503 at $connect), never accepted unchecked.
    from chalice_realtime.auth import AuthUnavailable

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    project = TokenFactory("revocation-without-credential", tokens.key)
    verifier = FirebaseVerifier(project.project_id, check_revoked=True)
    with pytest.raises(AuthUnavailable, match="revoked"):
        verifier.verify(project.mint("alice"))
    # The same token verifies with the check off: only the lookup was missing.
    assert FirebaseVerifier(project.project_id).verify(project.mint("alice")) == "alice"


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(
    header=st.one_of(
        st.text(max_size=300),
        st.builds(lambda rest: "Bearer " + rest, st.text(max_size=300)),
        st.builds(lambda parts: "Bearer " + ".".join(parts), st.lists(st.text(max_size=60), max_size=4)),
    )
)
def test_any_authorization_header_is_refused_without_a_server_error(header: str) -> None:
    # No fixtures (hypothesis would reuse them across examples): the app's own services from TEST_ENV.
    # Generated text never decodes to a JWT header with an RS256 `kid`, so no certificate is fetched.
    header = header.replace("\r", "").replace("\n", "")  # not sendable in HTTP anyway
    with Client(app) as client:
        response = client.http.get("/me", headers={"Authorization": header} if header else {})
    assert response.status_code in (401, 403)
    json.loads(response.body)
