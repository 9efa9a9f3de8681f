"""The WebSocket handlers, invoked with API-Gateway-shaped events against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import TokenFactory

pytestmark = pytest.mark.requires_extra("firebase")


def connect(client: Client, connection_id: str, token: str, *, via: str = "header") -> dict[str, Any]:
    if via == "header":
        event = websocket_event(
            "$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"}
        )
    else:
        event = websocket_event("$connect", connection_id, query={"token": token})
    return dict(client.lambda_.invoke("ws_connect", event).payload)


def rows(realtime: Any) -> dict[str, dict[str, Any]]:
    items = realtime.dynamodb.scan(TableName=realtime.settings.connections_table)["Items"]
    return {item["connection_id"]["S"]: item for item in items}


def test_connect_with_subprotocol_stores_the_connection_and_answers_bearer(
    client: Client, realtime: Any, tokens: TokenFactory
) -> None:
    response = connect(client, "conn-1", tokens.mint("alice"))
    assert response["statusCode"] == 200
    assert response["headers"]["Sec-WebSocket-Protocol"] == "bearer"
    stored = rows(realtime)
    assert stored["conn-1"]["user_id"]["S"] == "alice"


def test_connect_with_query_token_is_admitted_without_subprotocol(
    client: Client, realtime: Any, tokens: TokenFactory
) -> None:
    response = connect(client, "conn-q", tokens.mint("alice"), via="query")
    assert response["statusCode"] == 200
    assert "Sec-WebSocket-Protocol" not in response.get("headers", {})
    assert "conn-q" in rows(realtime)


def test_row_expires_a_little_after_the_two_hour_limit(
    client: Client, realtime: Any, tokens: TokenFactory
) -> None:
    connect(client, "conn-1", tokens.mint("alice"))
    row = rows(realtime)["conn-1"]
    connected_at_s = int(row["connected_at"]["N"]) // 1000
    lifetime = int(row["expires_at"]["N"]) - connected_at_s
    assert 2 * 3600 < lifetime <= 2 * 3600 + 15 * 60
    ttl = realtime.dynamodb.describe_time_to_live(TableName=realtime.settings.connections_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_disconnect_deletes_the_row_and_a_second_one_is_fine(
    client: Client, realtime: Any, tokens: TokenFactory
) -> None:
    connect(client, "conn-1", tokens.mint("alice"))
    for _ in range(2):
        response = client.lambda_.invoke("ws_disconnect", websocket_event("$disconnect", "conn-1")).payload
        assert response["statusCode"] == 200
    assert rows(realtime) == {}


def test_cap_closes_the_oldest_connection_and_admits_the_new_one(
    client: Client, realtime: Any, tokens: TokenFactory, management_api: Any
) -> None:
    token = tokens.mint("alice")
    for n in range(10):
        assert connect(client, f"conn-{n}", token)["statusCode"] == 200
    connect(client, "bob-1", tokens.mint("bob"))
    management_api.connections["conn-0"]  # the oldest is live at the gateway until closed
    assert connect(client, "conn-10", token)["statusCode"] == 200
    alice = {cid for cid, row in rows(realtime).items() if row["user_id"]["S"] == "alice"}
    assert alice == {f"conn-{n}" for n in range(1, 11)}
    assert "conn-0" not in management_api.connections  # closed through the Management API
    assert "bob-1" in rows(realtime)  # other users are unaffected


def test_ping_is_answered_with_pong_to_that_connection_only(
    client: Client, realtime: Any, tokens: TokenFactory, management_api: Any
) -> None:
    connect(client, "conn-1", tokens.mint("alice"))
    connect(client, "conn-2", tokens.mint("alice"))
    response = client.lambda_.invoke(
        "ws_message", websocket_event("$default", "conn-1", body='{"action": "ping"}')
    ).payload
    assert response["statusCode"] == 200
    assert json.loads(management_api.connections["conn-1"].data) == {"event": "pong"}
    assert management_api.connections["conn-2"].data == b""


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "",
        None,
        "[]",
        '"ping"',
        "42",
        '{"action": "subscribe"}',
        '{"action": null}',
        "[" * 100000,
        '{"action": "ping"' + " " * 40000,
    ],
)
def test_garbage_frames_are_ignored_without_raising(
    client: Client, realtime: Any, tokens: TokenFactory, management_api: Any, body: str | None
) -> None:
    connect(client, "conn-1", tokens.mint("alice"))
    response = client.lambda_.invoke("ws_message", websocket_event("$default", "conn-1", body=body)).payload
    assert response["statusCode"] == 200
    assert management_api.connections["conn-1"].data == b""
