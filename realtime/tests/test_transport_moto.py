"""The pycurl and aiohttp transports against moto's Management API server, through the Notifier.

moto's server routes a request signed for `execute-api` at `/@connections/{id}` to its
Management API, so this checks the signed request shape end to end: frames land in
moto's connections, a 410 (injected: moto never answers it by itself) deletes the row.
(Ids here need no quoting: moto's server keys connections by the still-quoted path segment;
quoting is checked against the stand-in in test_transport.py.)
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from chalice_realtime.connections import Connection
from chalice_realtime.notifier import DeliveryReport, Notifier
from chalice_realtime.testing.management_api import faulty_backend
from chalice_realtime.transports.aiohttp import AiohttpTransport
from chalice_realtime.transports.base import Outcome
from chalice_realtime.transports.curl import CurlTransport
from moto.server import ThreadedMotoServer


@pytest.fixture
def moto_management_api(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    backend = faulty_backend(monkeypatch)
    yield f"http://127.0.0.1:{port}", backend
    server.stop()


@pytest.mark.parametrize(
    "make_transport",
    [
        pytest.param(CurlTransport, marks=pytest.mark.requires_extra("fast"), id="curl"),
        pytest.param(AiohttpTransport, marks=pytest.mark.requires_extra("aiohttp"), id="aiohttp"),
    ],
)
def test_frames_reach_moto_and_gone_rows_are_deleted(
    realtime: Any, moto_management_api: Any, make_transport: Any
) -> None:
    url, backend = moto_management_api
    for n, cid in enumerate(["a1", "a2", "a3"]):
        realtime.connections.add(Connection(cid, "alice", 1_700_000_000_000 + n))
    backend.gone.add("a2")
    transport = make_transport(url)
    try:
        report = Notifier(realtime.connections, transport).notify("alice", "jobs-updated")
        assert report == DeliveryReport(delivered=2, gone=1, failed=0)
        assert json.loads(backend.connections["a1"].data) == {"event": "jobs-updated"}
        assert json.loads(backend.connections["a3"].data) == {"event": "jobs-updated"}
        assert realtime.connections.connection_ids_of("alice") == ["a1", "a3"]
        assert transport.delete_connection("a1") == Outcome.DELIVERED
        assert "a1" not in backend.connections
    finally:
        transport.close()
