"""Revoked users, against the Firebase Auth Emulator of the local stack.

With `FIREBASE_CHECK_REVOKED=true`, the app looks the user up on every verification
(`verify_id_token(check_revoked=True)`), so a token issued before
`revoke_refresh_tokens(uid)` is refused on REST and at `$connect`, and so is every token of a
disabled or deleted user. With it off (the default) the same token is accepted until it expires
(at most 1 h): the check costs one call to Firebase per verification. The stack's own REST server
runs with the default, over real sockets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice.test import Client
from chalice_realtime.auth import FirebaseVerifier, InvalidToken
from chalice_realtime.testing.events import websocket_event

from app import app
from chalicelib import services as services_module
from chalicelib.settings import Settings
from testsupport.localstack import LocalStack


@pytest.fixture
def emulator(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    # firebase-admin reads the variable itself; the stack's app gets it from the stack's settings.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", local_stack.auth_emulator_host)
    return local_stack


@pytest.fixture
def checking_app(emulator: LocalStack) -> Iterator[tuple[Client, Any]]:
    """The app with revocation checks on, on the stack's emulator and moto."""
    settings = Settings.from_env({**emulator.environment, "FIREBASE_CHECK_REVOKED": "true"})
    assert settings.realtime.check_revoked_tokens and settings.realtime.is_local
    built = services_module.Services(
        settings, dynamodb=emulator.aws_client("dynamodb"), sns=emulator.aws_client("sns")
    )
    services_module.use(built)
    try:
        with Client(app) as client:
            yield client, built
    finally:
        services_module.use(None)


def me(client: Client, token: str) -> tuple[int, Any]:
    response = client.http.get("/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, json.loads(response.body)


def connect(client: Client, token: str, connection_id: str) -> int:
    event = websocket_event("$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"})
    return int(client.lambda_.invoke("ws_connect", event).payload["statusCode"])


def revoke(emulator: LocalStack, uid: str, verifier: FirebaseVerifier) -> None:
    from firebase_admin import auth

    # Revocation has a 1-second resolution (`validSince` in seconds vs the token's `iat`).
    time.sleep(1.1)
    auth.revoke_refresh_tokens(uid, app=verifier._firebase_app())


def test_a_revoked_token_is_refused_when_checking_and_accepted_by_default(
    emulator: LocalStack, checking_app: tuple[Client, Any]
) -> None:
    client, services = checking_app
    email = f"revoked-{time.time_ns()}@example.com"
    uid, old_token = emulator.sign_up(email)
    assert me(client, old_token) == (200, {"user_id": uid})

    revoke(emulator, uid, services.realtime.verifier)

    # On: refused on REST (403) and at $connect (401), nothing stored.
    assert me(client, old_token)[0] == 403
    assert connect(client, old_token, "revoked-1") == 401
    rows = services.dynamodb.get_item(
        TableName=services.settings.realtime.connections_table, Key={"connection_id": {"S": "revoked-1"}}
    )
    assert "Item" not in rows
    with pytest.raises(InvalidToken, match="revoked"):
        services.realtime.verifier.verify(old_token)
    # A token issued after the revocation (the user signed in again) is fine.
    _, new_token = emulator.sign_in(email, "correct-horse-9")
    assert me(client, new_token) == (200, {"user_id": uid})
    assert connect(client, new_token, "fresh-1") == 200

    # Off (the default): the old token still verifies, here and on the stack's REST server.
    assert FirebaseVerifier(emulator.project_id, allow_emulator=True).verify(old_token) == uid
    response = requests.get(
        f"{emulator.rest_url}/me", headers={"Authorization": f"Bearer {old_token}"}, timeout=10
    )
    assert (response.status_code, response.json()) == (200, {"user_id": uid})


def test_disabled_and_deleted_users_are_refused_when_checking(
    emulator: LocalStack, checking_app: tuple[Client, Any]
) -> None:
    from firebase_admin import auth

    client, services = checking_app
    firebase = services.realtime.verifier._firebase_app()
    disabled_uid, disabled_token = emulator.sign_up()
    deleted_uid, deleted_token = emulator.sign_up()
    assert me(client, disabled_token)[0] == me(client, deleted_token)[0] == 200

    auth.update_user(disabled_uid, disabled=True, app=firebase)
    auth.delete_user(deleted_uid, app=firebase)

    assert me(client, disabled_token)[0] == 403
    assert me(client, deleted_token)[0] == 403
    assert connect(client, disabled_token, "disabled-1") == 401
    assert connect(client, deleted_token, "deleted-1") == 401
    with pytest.raises(InvalidToken, match="no longer exists"):
        services.realtime.verifier.verify(deleted_token)
