"""moto's API Gateway Management API, made to answer 410 the way AWS does for gone connections."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core.exceptions import JsonRESTError


class GoneError(JsonRESTError):
    code = 410

    def __init__(self) -> None:
        super().__init__("GoneException", "")


def gone_capable_backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's backend, answering 410 for the ids added to its `.gone` set (moto never does by itself).

    Its `.connections[cid].data` holds every frame posted to `cid`.
    """
    backend: Any = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    backend.gone = set()
    original_post, original_delete = backend.post_to_connection, backend.delete_connection

    # moto's server passes the id still percent-encoded as it came in the path (`abc%3D`): decoded here,
    # so frames are found under the id the app stored.
    def post_to_connection(data: bytes, connection_id: str) -> None:
        if unquote(connection_id) in backend.gone:
            raise GoneError()
        original_post(data, unquote(connection_id))

    def delete_connection(connection_id: str) -> None:
        original_delete(unquote(connection_id))

    monkeypatch.setattr(backend, "post_to_connection", post_to_connection)
    monkeypatch.setattr(backend, "delete_connection", delete_connection)
    return backend


def received(backend: Any, connection_id: str) -> list[dict[str, str]]:
    """The frames posted to `connection_id`, oldest first (moto concatenates them)."""
    connection = backend.connections.get(connection_id)
    data = connection.data if connection is not None else b""
    return [json.loads(part) for part in data.decode().replace("}{", "}\n{").splitlines() if part]
