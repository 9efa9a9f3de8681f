"""The app configured with `AUTH_PROVIDER=oidc`: REST routes and `$connect` take the issuer's tokens.

The issuer serves its discovery document and JWKS on a loopback socket; the app finds it from
its settings alone (no verifier injected), as a stage configured for Cognito would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime import AuthUnavailable, OidcVerifier
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received
from chalice_realtime.testing.oidc import CLIENT_ID, OIDC_BAD_TOKENS, IssuerKey, LocalIssuer, OidcTokens

from chalicelib.settings import Settings
from tests.conftest import TEST_ENV, installed_services

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"Message": "User is not authorized to access this resource"}


def oidc_env(issuer: str) -> dict[str, str]:
    return {
        **TEST_ENV,
        "AUTH_PROVIDER": "oidc",
        "OIDC_ISSUER": issuer,
        "OIDC_AUDIENCE": CLIENT_ID,
        "OIDC_TOKEN_USE": "id",
    }


@pytest.fixture
def oidc_services(local_issuer: LocalIssuer, aws: dict[str, Any], management_api_url: str) -> Iterator[Any]:
    settings = Settings.from_env(oidc_env(local_issuer.issuer))
    with installed_services(settings, management_api_url, aws) as built:
        yield built


@pytest.fixture
def oidc_client(oidc_services: Any) -> Iterator[Client]:
    from app import app

    with Client(app) as test_client:
        yield test_client


def connect(client: Client, connection_id: str, token: str) -> dict[str, Any]:
    event = websocket_event("$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"})
    return dict(client.lambda_.invoke("ws_connect", event).payload)


def stored_connections(services: Any) -> dict[str, str]:
    table = services.settings.realtime.connections_table
    items = services.dynamodb.scan(TableName=table)["Items"]
    return {item["connection_id"]["S"]: item["user_id"]["S"] for item in items}


def me(client: Client, token: str) -> tuple[int, Any]:
    response = client.http.get("/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, json.loads(response.body)


def test_the_app_verifies_with_the_issuer_its_settings_name(oidc_services: Any) -> None:
    assert isinstance(oidc_services.realtime.verifier, OidcVerifier)


def test_an_oidc_token_opens_a_socket_calls_rest_and_the_socket_hears_the_event(
    oidc_client: Client,
    oidc_services: Any,
    oidc_tokens: OidcTokens,
    management_api: Any,
    local_issuer: LocalIssuer,
) -> None:
    alice, bob = oidc_tokens.id_token("alice"), oidc_tokens.id_token("bob")
    response = connect(oidc_client, "alice-1", alice)
    assert response["statusCode"] == 200
    assert response["headers"]["Sec-WebSocket-Protocol"] == "bearer"
    assert stored_connections(oidc_services) == {"alice-1": "alice"}
    assert me(oidc_client, bob) == (200, {"user_id": "bob"})
    sent = oidc_client.http.post(
        "/messages",
        headers={"Authorization": f"Bearer {bob}", "Content-Type": "application/json"},
        body=json.dumps({"to": "alice", "text": "hi"}).encode(),
    )
    assert sent.status_code == 201
    assert received(management_api, "alice-1") == [{"event": "chat-messages-updated"}]
    # One discovery and one key fetch served every verification above.
    assert local_issuer.requests == {local_issuer.discovery_path: 1, local_issuer.jwks_path: 1}


@pytest.mark.parametrize("case", OIDC_BAD_TOKENS)
def test_every_forged_oidc_token_is_refused_on_rest_and_at_connect(
    case: str,
    oidc_client: Client,
    oidc_services: Any,
    oidc_tokens: OidcTokens,
    oidc_attacker_key: IssuerKey,
) -> None:
    assert me(oidc_client, oidc_tokens.id_token("alice")) == (200, {"user_id": "alice"})  # the control
    token = OIDC_BAD_TOKENS[case][0](oidc_tokens, oidc_attacker_key)
    assert me(oidc_client, token) == (403, FORBIDDEN)
    response = connect(oidc_client, "c-1", token)
    assert response["statusCode"] == 401
    assert "Sec-WebSocket-Protocol" not in (response.get("headers") or {})
    assert stored_connections(oidc_services) == {}


def test_a_firebase_token_is_refused_when_the_provider_is_oidc(
    oidc_client: Client, oidc_services: Any, tokens: TokenFactory
) -> None:
    firebase_token = tokens.mint("alice")
    assert me(oidc_client, firebase_token) == (403, FORBIDDEN)
    assert connect(oidc_client, "c-1", firebase_token)["statusCode"] == 401
    assert stored_connections(oidc_services) == {}


def test_an_unreachable_issuer_answers_503_at_connect_and_an_uncached_error_on_rest(
    oidc_client: Client, oidc_services: Any, oidc_tokens: OidcTokens, local_issuer: LocalIssuer
) -> None:
    from chalice_realtime.oidc import REFETCH_COOLDOWN_SECONDS, OidcVerifier

    realtime = oidc_services.settings.realtime
    now = [1000.0]
    oidc_services.realtime.verifier = OidcVerifier(  # the app's verifier, on a clock the test moves
        realtime.oidc_issuer,
        realtime.oidc_audiences,
        token_uses=realtime.oidc_token_uses,
        clock=lambda: now[0],
    )
    token = oidc_tokens.id_token("alice")
    local_issuer.down = True
    response = connect(oidc_client, "c-1", token)
    assert response["statusCode"] == 503
    assert json.loads(response["body"]) == {"message": "cannot fetch the issuer's discovery document"}
    # The authorizer raises rather than denying: API Gateway answers 500 and caches nothing
    # (tests/app/test_authorizer_outage.py drives that 500 over a real socket).
    with pytest.raises(AuthUnavailable, match="discovery document"):
        me(oidc_client, token)
    assert stored_connections(oidc_services) == {}
    local_issuer.down = False
    # Back, but the failed discovery is remembered for the cooldown: answered at once, still unavailable.
    assert connect(oidc_client, "c-1", token)["statusCode"] == 503
    now[0] += REFETCH_COOLDOWN_SECONDS
    # After it: the same token gets in; no Deny was cached from the outage.
    assert connect(oidc_client, "c-1", token)["statusCode"] == 200
    assert stored_connections(oidc_services) == {"c-1": "alice"}
    assert me(oidc_client, token) == (200, {"user_id": "alice"})


def test_importing_the_app_with_oidc_loads_no_jwt_library_and_refuses_a_half_configuration() -> None:
    code = "import sys, app\nprint('jwt' in sys.modules, 'cryptography' in sys.modules)\n"
    env = {**os.environ, **oidc_env("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool1")}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False"]  # PyJWT and cryptography load on the first token
    del env["OIDC_AUDIENCE"]
    run = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0
    assert "ConfigurationError: OIDC_AUDIENCE must be set with AUTH_PROVIDER=oidc" in run.stderr


def test_an_auth0_shaped_token_and_its_subject_work_through_the_core(
    oidc_client: Client, oidc_services: Any, oidc_tokens: OidcTokens, management_api: Any
) -> None:
    # Auth0 sets no `token_use` and names users `<connection>|<id>`: the core takes the subject as it is.
    from chalice_realtime import notify

    token = oidc_tokens.generic("auth0|64f1c2e9a0b1")
    assert me(oidc_client, token) == (200, {"user_id": "auth0|64f1c2e9a0b1"})
    assert connect(oidc_client, "c-1", token)["statusCode"] == 200
    assert notify("auth0|64f1c2e9a0b1", "orders-updated").delivered == 1
    assert received(management_api, "c-1") == [{"event": "orders-updated"}]


def test_no_oidc_token_appears_in_the_logs(
    oidc_client: Client,
    oidc_tokens: OidcTokens,
    oidc_attacker_key: IssuerKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    good = oidc_tokens.id_token("alice")
    forged = oidc_tokens.id_token("alice", key=oidc_attacker_key, kid=oidc_tokens.key.kid)
    for cid, token in (("c-1", forged), ("c-2", good)):
        connect(oidc_client, cid, token)
        me(oidc_client, token)
    logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert "bad signature" in logged  # the refusal's reason is logged...
    for token in (good, forged):
        assert token.split(".")[1] not in logged  # ...never the token
