"""Every forged or broken token is refused on REST and at `$connect`, and nothing is stored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import BAD_TOKENS, SigningKey, TokenFactory

pytestmark = pytest.mark.requires_extra("firebase")


def stored_connections(realtime: Any) -> list[dict[str, Any]]:
    return list(realtime.dynamodb.scan(TableName=realtime.settings.connections_table)["Items"])


def test_valid_token_reaches_me(client: Client, tokens: TokenFactory) -> None:
    response = client.http.get("/me", headers={"Authorization": f"Bearer {tokens.mint('alice')}"})
    assert response.status_code == 200
    assert json.loads(response.body) == {"user_id": "alice"}


def test_health_needs_no_token(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok"}


def test_missing_token_is_401(client: Client) -> None:
    response = client.http.get("/me")
    assert response.status_code == 401
    assert json.loads(response.body)["message"] == "Unauthorized"


def test_non_bearer_scheme_is_refused(client: Client, tokens: TokenFactory) -> None:
    response = client.http.get("/me", headers={"Authorization": f"Basic {tokens.mint('alice')}"})
    assert response.status_code == 403


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_token_is_refused_on_rest(
    case: str, client: Client, tokens: TokenFactory, attacker_key: SigningKey
) -> None:
    token = BAD_TOKENS[case](tokens, attacker_key)
    response = client.http.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (401, 403)
    assert "alice" not in response.body.decode()
    json.loads(response.body)  # always a JSON error body


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_token_is_refused_at_connect_and_nothing_is_stored(
    case: str, client: Client, realtime: Any, tokens: TokenFactory, attacker_key: SigningKey
) -> None:
    token = BAD_TOKENS[case](tokens, attacker_key)
    event = websocket_event("$connect", "conn-1", headers={"Sec-WebSocket-Protocol": f"bearer, {token}"})
    response = client.lambda_.invoke("ws_connect", event).payload
    assert response["statusCode"] == 401
    assert stored_connections(realtime) == []


def test_missing_token_is_refused_at_connect(client: Client, realtime: Any) -> None:
    response = client.lambda_.invoke("ws_connect", websocket_event("$connect", "conn-1")).payload
    assert response["statusCode"] == 401
    assert stored_connections(realtime) == []


def test_one_firebase_app_per_process_keeps_the_certificate_cache_warm(
    client: Client, realtime: Any, tokens: TokenFactory
) -> None:
    # firebase-admin caches Google's certificates per Cache-Control inside its app's
    # token verifier: rebuilding the app per invocation would refetch them every time.
    from chalice_realtime.auth import FirebaseVerifier

    for uid in ("alice", "bob"):
        response = client.http.get("/me", headers={"Authorization": f"Bearer {tokens.mint(uid)}"})
        assert json.loads(response.body) == {"user_id": uid}
    first = realtime.verifier._firebase_app()
    assert realtime.verifier._firebase_app() is first
    assert FirebaseVerifier(realtime.settings.firebase_project_id)._firebase_app() is first


def test_token_never_appears_in_the_logs(
    client: Client, tokens: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    bad = tokens.mint("alice", aud="another-project")
    client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "c1", headers={"Sec-WebSocket-Protocol": f"bearer, {bad}"})
    )
    good = tokens.mint("alice")
    client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "c2", headers={"Sec-WebSocket-Protocol": f"bearer, {good}"})
    )
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for token in (bad, good):
        assert token not in logged
        assert token.split(".")[1] not in logged


def test_a_fresh_token_from_a_clock_a_few_seconds_ahead_is_accepted(
    client: Client, tokens: TokenFactory
) -> None:
    """Google's clock ahead of Lambda's by 5 s: `iat` is in the future here, within the 10 s of leeway."""
    now = int(time.time())
    token = tokens.mint("alice", iat=now + 5, auth_time=now + 5)
    response = client.http.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert json.loads(response.body) == {"user_id": "alice"}


def test_the_verifier_refuses_everything_while_the_emulator_is_set_unless_it_is_the_local_stack(
    tokens: TokenFactory, firebase_certs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function deployed with the emulator variable (whatever its APP_STAGE) must not take unsigned tokens:
    firebase-admin then skips the signature check, so the verifier itself refuses to verify."""
    from chalice_realtime.auth import AuthUnavailable, FirebaseVerifier

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    forged = tokens.unsigned("mallory")
    with pytest.raises(AuthUnavailable, match="FIREBASE_AUTH_EMULATOR_HOST"):
        FirebaseVerifier("test-project").verify(forged)
    with pytest.raises(AuthUnavailable):
        FirebaseVerifier("test-project").verify(tokens.mint("alice"))  # nothing is verified at all
    # What it would let in: the local stack's verifier takes the unsigned token.
    assert FirebaseVerifier("test-project", allow_emulator=True).verify(forged) == "mallory"
