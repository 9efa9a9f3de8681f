"""API-Gateway-shaped WebSocket events, as API Gateway hands them to Lambda."""

from __future__ import annotations

import time
from typing import Any

API_ID = "abc123"
STAGE = "api"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"


def websocket_event(
    route_key: str,
    connection_id: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": "req-" + connection_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": int(time.time() * 1000),
            "requestId": "req-" + connection_id,
            "domainName": DOMAIN,
            "connectionId": connection_id,
            "apiId": API_ID,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "isBase64Encoded": False,
    }
    if route_key == "$connect":
        event["headers"] = {"Host": DOMAIN, **(headers or {})}
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    if route_key not in ("$connect", "$disconnect"):
        event["body"] = body
    return event


def connect(client: Any, tokens: Any, uid: str, *connection_ids: str) -> None:
    """Admit each connection id for `uid` through the app's `$connect` (chalice.test's Client)."""
    for cid in connection_ids:
        event = websocket_event(
            "$connect", cid, headers={"Sec-WebSocket-Protocol": f"bearer, {tokens.mint(uid)}"}
        )
        assert client.lambda_.invoke("ws_connect", event).payload["statusCode"] == 200
