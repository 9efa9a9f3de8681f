"""The connection store and notifier over HTTP against moto's server, found through AWS_ENDPOINT_URL."""

from __future__ import annotations

from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import TokenFactory

from app import app
from chalicelib import aws
from chalicelib import services as services_module
from chalicelib.settings import Settings
from infra.tables import create_tables
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.integration


def test_connect_notify_disconnect_over_http(
    moto_server: str, firebase_certs: Any, tokens: TokenFactory
) -> None:
    settings = Settings.from_env({**TEST_ENV, "WEBSOCKET_ENDPOINT": moto_server})
    # boto3 found moto's server by itself: no endpoint is passed anywhere.
    create_tables(aws.client("dynamodb"), {k: v for k, v in TEST_ENV.items() if k.endswith("_TABLE")})
    services_module.use(services_module.Services(settings))
    try:
        with Client(app) as client:
            token = tokens.mint("alice")
            for cid in ("c1", "c2"):
                event = websocket_event(
                    "$connect", cid, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"}
                )
                assert client.lambda_.invoke("ws_connect", event).payload["statusCode"] == 200

            from chalicelib import notify

            report = notify("alice", "jobs-updated")
            assert (report.delivered, report.gone, report.failed) == (2, 0, 0)

            client.lambda_.invoke("ws_disconnect", websocket_event("$disconnect", "c1"))
            remaining = services_module.current().realtime.connections.connection_ids_of("alice")
            assert remaining == ["c2"]
    finally:
        services_module.use(None)
    items = aws.client("dynamodb").scan(TableName=TEST_ENV["CONNECTIONS_TABLE"])["Items"]
    assert [item["connection_id"]["S"] for item in items] == ["c2"]
