"""An authentication outage must not lock users out after it ends.

API Gateway caches the REST authorizer's answer per token for the authorizer's TTL (300 s). A Deny
for an invalid token is right to cache. When tokens cannot be checked at all (`AuthUnavailable`:
the certificates or the revocation lookup unreachable), the authorizer raises instead: API Gateway
answers 500 and caches nothing, so the same token works on the first request after the outage.
Chalice's local server, as the local stack runs it, answers that 500 the same way; the last test
drives it over a real socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice_realtime import AuthUnavailable, InvalidToken, Realtime, realtime_auth

from app import app
from chalicelib import services as services_module
from chalicelib.services import Services
from chalicelib.settings import Settings
from tests.conftest import free_port

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/api/GET/me"


class SwitchableVerifier:
    """Tokens `good` (user alice) and `forged`; while `down`, nothing can be checked."""

    def __init__(self) -> None:
        self.down = False

    def verify(self, token: str) -> str:
        if self.down:
            raise AuthUnavailable("cannot fetch the token signing certificates")
        if token != "good":
            raise InvalidToken("signature does not match")
        return "alice"


@pytest.fixture
def verifier(settings: Settings, aws: dict[str, Any]) -> Iterator[SwitchableVerifier]:
    verifier = SwitchableVerifier()
    core = Realtime(settings.realtime, dynamodb=aws["dynamodb"], verifier=verifier)
    services_module.use(Services(settings, realtime=core, dynamodb=aws["dynamodb"], sns=aws["sns"]))
    yield verifier
    services_module.use(None)


def authorize(token: str) -> dict[str, Any]:
    """The authorizer invoked as Lambda invokes it for API Gateway (a TOKEN authorizer event)."""
    event = {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": METHOD_ARN}
    return dict(realtime_auth(event, None))  # type: ignore[arg-type]


def allowed(policy: dict[str, Any]) -> list[str]:
    return [
        resource
        for statement in policy["policyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
        for resource in statement["Resource"]
    ]


def test_an_invalid_token_gets_a_deny_that_may_be_cached(verifier: SwitchableVerifier) -> None:
    answer = authorize("forged")
    assert answer["principalId"] == "anonymous"
    assert allowed(answer) == []


def test_a_valid_token_is_allowed_on_every_route(verifier: SwitchableVerifier) -> None:
    answer = authorize("good")
    assert answer["principalId"] == "alice"
    assert allowed(answer) == ["arn:aws:execute-api:us-east-1:123456789012:abc123/api/*/*"]


def test_an_outage_raises_so_api_gateway_caches_no_deny(verifier: SwitchableVerifier) -> None:
    verifier.down = True
    with pytest.raises(AuthUnavailable, match="certificates"):
        authorize("good")
    verifier.down = False
    assert authorize("good")["principalId"] == "alice"


@pytest.fixture
def rest_url(verifier: SwitchableVerifier) -> Iterator[str]:
    """The app on Chalice's local server over a real socket, as `python -m devserver.rest` serves it."""
    from chalice.local import create_local_server

    from devserver.lambdas import chalice_config
    from devserver.rest import authorizer_errors_as_api_gateway

    authorizers = {
        entry.authorizer: entry.authorizer.func
        for methods in app.routes.values()
        for entry in methods.values()
        if entry.authorizer is not None
    }
    authorizer_errors_as_api_gateway(app)
    original_class = app.__class__
    port = free_port()
    server = create_local_server(app, chalice_config(), "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)
        for authorizer, func in authorizers.items():  # this process's app as the other tests expect it
            authorizer.func = func
        app.__class__ = original_class  # create_local_server swaps it for a thread-local variant


def test_over_rest_an_outage_is_a_500_and_the_token_works_right_after(
    rest_url: str, verifier: SwitchableVerifier
) -> None:
    def me(token: str) -> requests.Response:
        return requests.get(f"{rest_url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    forged = me("forged")
    assert forged.status_code == 403
    verifier.down = True
    during = me("good")
    assert during.status_code == 500
    assert during.headers["x-amzn-ErrorType"] == "AuthorizerConfigurationException"
    assert json.loads(during.content) == {"message": None}
    verifier.down = False
    after = me("good")
    assert after.status_code == 200
    assert after.json() == {"user_id": "alice"}
