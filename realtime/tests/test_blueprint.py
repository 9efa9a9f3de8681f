"""The core's Blueprint in a Chalice app that is not this one: what an adopting app gets by registering it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import chalice_realtime as core
import pytest
from chalice import Chalice
from chalice.test import Client
from chalice_realtime import blueprint
from chalice_realtime.testing.events import connect, websocket_event
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received

pytestmark = pytest.mark.requires_extra("firebase")


@pytest.fixture
def adopter(
    settings: Any, aws: dict[str, Any], firebase_certs: Any, management_api_url: str, monkeypatch: Any
) -> Iterator[Chalice]:
    """A minimal app: the feature flag, the blueprint, one authenticated route that notifies."""
    # A blueprint remembers the app it was last registered with; this process's `app.py` gets it back.
    monkeypatch.setattr(blueprint.realtime, "_current_app", blueprint.realtime._current_app)
    app = Chalice(app_name="adopter")
    app.experimental_feature_flags.update(["WEBSOCKETS"])
    app.register_blueprint(core.realtime)

    @app.route("/orders", methods=["POST"], authorizer=core.realtime_auth)
    def create_order() -> dict[str, Any]:
        report = core.notify(core.caller_id(), "orders-updated")
        return {"user_id": core.caller_id(), "delivered": report.delivered}

    realtime_settings = dataclasses.replace(settings, websocket_endpoint=management_api_url)
    runtime = core.Realtime(realtime_settings, dynamodb=aws["dynamodb"])
    core.use(runtime)
    yield app
    core.use(None)
    runtime.close()


def test_registering_the_blueprint_adds_the_websocket_routes_and_the_authorizer(adopter: Chalice) -> None:
    assert set(adopter.websocket_handlers) == {"$connect", "$disconnect", "$default"}
    assert [auth.name for auth in adopter.builtin_auth_handlers] == ["realtime_auth"]


def test_a_connected_user_calling_a_protected_route_receives_exactly_the_event_frame(
    adopter: Chalice, tokens: TokenFactory, management_api: Any
) -> None:
    with Client(adopter) as client:
        connect(client, tokens, "alice", "a1", "a2")
        headers = {"Authorization": f"Bearer {tokens.mint('alice')}"}
        response = client.http.post("/orders", headers=headers)
        assert response.status_code == 200, response.body
        assert json.loads(response.body) == {"user_id": "alice", "delivered": 2}
    assert received(management_api, "a1") == [{"event": "orders-updated"}]
    assert received(management_api, "a2") == [{"event": "orders-updated"}]


def test_the_authorizer_refuses_a_missing_or_forged_token(adopter: Chalice, attacker_key: Any) -> None:
    forged = TokenFactory("test-project", attacker_key).mint("alice")
    with Client(adopter) as client:
        assert client.http.post("/orders").status_code == 401
        assert client.http.post("/orders", headers={"Authorization": f"Bearer {forged}"}).status_code == 403


def test_ping_is_answered_with_pong_and_disconnect_forgets_the_connection(
    adopter: Chalice, tokens: TokenFactory, management_api: Any
) -> None:
    with Client(adopter) as client:
        connect(client, tokens, "bob", "b1")
        client.lambda_.invoke("ws_message", websocket_event("MESSAGE", "b1", body='{"action":"ping"}'))
        assert received(management_api, "b1") == [{"event": "pong"}]
        client.lambda_.invoke("ws_disconnect", websocket_event("$disconnect", "b1"))
    assert core.current().connections.connection_ids_of("bob") == []
