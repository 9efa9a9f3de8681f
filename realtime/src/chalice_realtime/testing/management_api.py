"""Management API (`@connections`) stand-ins, with one fault language: `chalice_realtime.testing.faults`.

The rules are the ones the local stack's gateway takes at `PUT /_faults`, so a fault reads the same in
every layer:

    FaultRule(status=429, connection_id="c1", retry_after=1, times=1)  # c1's next call: 429, Retry-After 1
    FaultRule(drop=True, times=1)                                       # the next call: the TCP link drops
    FaultRule(status=410, connection_id="old")                          # gone, every time

Two stand-ins speak it:
- `ManagementApiStandIn`: an HTTP server on 127.0.0.1 (`serving()`), for tests of a transport itself:
  it records every request as it came (raw path, headers, body) and can drop connections. Standard
  library only.
- `faulty_backend()`: moto's Management API backend, behind moto's server (`serving_moto()`) for tests
  of routes and `notify()`; moto never answers 410 or 5xx by itself. `.gone` is a shorthand for the
  most common rule, `FaultRule(status=410, connection_id=...)`; `received()` reads what was posted.
  These need moto (`pip install "moto[server]"`), imported when first used.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .faults import ERROR_TYPES, FaultPlan, FaultRule

if TYPE_CHECKING:
    import pytest

__all__ = [
    "FaultPlan",
    "FaultRule",
    "ManagementApiStandIn",
    "faulty_backend",
    "received",
    "restore_backend",
    "serving",
    "serving_moto",
]

OPERATIONS = {"POST": "post", "GET": "get", "DELETE": "delete"}


def fault_for(faults: FaultPlan, gone: set[str], operation: str, connection_id: str) -> FaultRule | None:
    """The rule that decides this call: `gone` first (410), then the plan's first matching rule."""
    if connection_id in gone:
        return FaultRule(status=410, connection_id=connection_id)
    return faults.decide(operation, connection_id)


# ---------------------------------------------------------------- an HTTP stand-in


@dataclass
class Seen:
    method: str
    connection_id: str
    raw_path: str
    body: bytes
    headers: dict[str, str]
    at: float
    client_port: int
    status: str


@dataclass
class ManagementApiStandIn:
    """A Management API on a real socket. Calls no rule decides answer 2xx; only answered 2xx POSTs
    count as delivered frames."""

    url: str = ""
    faults: FaultPlan = field(default_factory=FaultPlan)
    gone: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, *rules: FaultRule) -> None:
        """Replace the fault plan with `rules` (first match wins, as on the local gateway)."""
        self.faults.replace(list(rules))

    def frames(self, connection_id: str) -> list[bytes]:
        return [
            s.body
            for s in self.seen
            if s.connection_id == connection_id and s.method == "POST" and s.status.startswith("2")
        ]

    def requests(self, connection_id: str) -> list[Seen]:
        return [s for s in self.seen if s.connection_id == connection_id]


def _handler(stand_in: ManagementApiStandIn) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.handle_call()

        def do_DELETE(self) -> None:
            self.handle_call()

        def handle_call(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            connection_id = unquote(self.path.rsplit("/@connections/", 1)[-1])
            rule = fault_for(stand_in.faults, stand_in.gone, OPERATIONS[self.command], connection_id)
            if rule is not None and rule.drop:
                # The peer vanishes mid-request: no status line, the socket just closes.
                self.close_connection = True
                return
            status = rule.status if rule is not None else 200
            with stand_in.lock:
                stand_in.seen.append(
                    Seen(
                        self.command,
                        connection_id,
                        self.path,
                        body,
                        dict(self.headers),
                        time.time(),
                        self.client_address[1],
                        str(status),
                    )
                )
            payload = b"" if rule is None else b'{"message": "stand-in"}'
            self.send_response(status)
            if rule is not None:
                self.send_header("x-amzn-ErrorType", ERROR_TYPES[status])
                self.send_header("Content-Type", "application/json")
                if rule.retry_after is not None:
                    self.send_header("Retry-After", f"{rule.retry_after:g}")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    # socketserver's listen backlog is 5. A transport opening dozens of connections at once overflows it, and
    # Linux then holds a connection the client already counts as open: its request is read seconds later,
    # after the client timed out and retried, and the stand-in records the frame twice.
    request_queue_size = 1024
    daemon_threads = True


@contextlib.contextmanager
def serving() -> Iterator[ManagementApiStandIn]:
    """A `ManagementApiStandIn` listening on a free loopback port until the block ends."""
    stand_in = ManagementApiStandIn()
    server = _Server(("127.0.0.1", 0), _handler(stand_in))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- moto's backend


@functools.cache
def _fault_answer() -> type[Exception]:
    # moto's error class, defined once moto is needed (so `serving()` alone needs no moto).
    from moto.core.exceptions import JsonRESTError

    class FaultAnswer(JsonRESTError):
        def __init__(self, status: int) -> None:
            super().__init__(ERROR_TYPES[status], "")
            self.code = status

    return FaultAnswer


@contextlib.contextmanager
def serving_moto() -> Iterator[str]:
    """moto's server on a free loopback port until the block ends: its URL, the endpoint to post frames
    to. It shares its backends with moto in-process (`mock_aws`), so `faulty_backend()` and `received()`
    see what reached it. Its access log (werkzeug's) is kept to warnings: a test reading every log line
    of a request sees only the app's."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def faulty_backend(monkeypatch: pytest.MonkeyPatch | None = None) -> Any:
    """moto's Management API backend, answering as its `.faults` plan and `.gone` set say.

    Its `.connections[cid].data` holds every frame posted to `cid`. Without `monkeypatch` the
    caller undoes it with `restore_backend(backend)`.
    """
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend: Any = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    backend.gone = set()
    backend.faults = FaultPlan()
    original_post, original_delete = backend.post_to_connection, backend.delete_connection

    # moto's server passes the id still percent-encoded as it came in the path (`abc%3D`): decoded here,
    # so frames are found under the id the app stored.
    def post_to_connection(data: bytes, connection_id: str) -> None:
        answer(backend, "post", unquote(connection_id))
        original_post(data, unquote(connection_id))

    def delete_connection(connection_id: str) -> None:
        answer(backend, "delete", unquote(connection_id))
        original_delete(unquote(connection_id))

    if monkeypatch is not None:
        monkeypatch.setattr(backend, "post_to_connection", post_to_connection)
        monkeypatch.setattr(backend, "delete_connection", delete_connection)
    else:
        backend.post_to_connection, backend.delete_connection = post_to_connection, delete_connection
    return backend


def restore_backend(backend: Any) -> None:
    """Undo `faulty_backend(None)`: moto's own methods again."""
    del backend.post_to_connection
    del backend.delete_connection


def answer(backend: Any, operation: str, connection_id: str) -> None:
    rule = fault_for(backend.faults, backend.gone, operation, connection_id)
    if rule is not None:
        raise _fault_answer()(rule.status if rule.status in ERROR_TYPES else 500)


def received(backend: Any, connection_id: str) -> list[dict[str, str]]:
    """The frames posted to `connection_id`, oldest first (moto concatenates them)."""
    connection = backend.connections.get(connection_id)
    data = connection.data if connection is not None else b""
    return [json.loads(part) for part in data.decode().replace("}{", "}\n{").splitlines() if part]
