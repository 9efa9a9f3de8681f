"""What the fault and abuse tests share: frame-counting `websockets` clients, the stack's tables and logs,
the gateway's fault plan, and the app's services as every Lambda builds them from settings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import requests
import websockets
from chalice_realtime.connections import IN_FLIGHT_MS
from chalice_realtime.notifier import Notifier
from chalice_realtime.transports.base import RetryPolicy
from chalice_realtime.transports.curl import CurlTransport
from websockets.asyncio.client import ClientConnection

from chalicelib.services import Services
from chalicelib.settings import Settings
from testsupport.localstack import LocalStack

# What a notify may take at most, whatever the faults: the transport's own deadline, plus slack for a
# loaded CI machine. A generous bound on "never blocks", not a speed target.
NOTIFY_BOUND_SECONDS = RetryPolicy().deadline + 5
FRAME_WAIT = 15.0


class Client:
    """A `websockets` client that records every frame it receives, as a browser tab would see them.

    client = Client(user_id, await websockets.connect(url, subprotocols=["bearer", token]))
    client.frames  # [{"event": "jobs-updated"}, ...]
    """

    def __init__(self, user_id: str, socket: ClientConnection) -> None:
        self.user_id = user_id
        self.socket = socket
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                self.frames.append(json.loads(raw))
        except websockets.exceptions.ConnectionClosed:
            pass

    async def closed(self, wait: float = FRAME_WAIT) -> int | None:
        """Wait until the server closes the socket; its close code."""
        await asyncio.wait_for(self._reader, wait)
        return self.socket.close_code

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.wait_for(self._reader, FRAME_WAIT)


def connect(stack: LocalStack, token: str) -> Any:
    """`websockets.connect` as the browser library opens its socket: the token as subprotocol."""
    return websockets.connect(stack.ws_url, subprotocols=["bearer", token], open_timeout=15)  # type: ignore[list-item]


async def open_clients(stack: LocalStack, user_id: str, token: str, count: int) -> list[Client]:
    """`count` live connections of one user, opened one after the other (oldest first)."""
    return [Client(user_id, await connect(stack, token)) for _ in range(count)]


async def wait_for_frames(clients: list[Client], expected: list[int], wait: float = FRAME_WAIT) -> None:
    """Until each client holds its expected number of frames, then a quiet moment to catch extras."""
    deadline = time.monotonic() + wait
    while [len(c.frames) for c in clients] != expected and time.monotonic() < deadline:
        if any(len(c.frames) > n for c, n in zip(clients, expected, strict=True)):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a duplicate would arrive right behind the first copy


def connection_rows(stack: LocalStack, user_id: str) -> list[dict[str, Any]]:
    """The user's rows in the connections table (read with a Scan, the test's own look), oldest first."""
    # Fan-out shard records share the table and have no user: they are not connections.
    table = stack.environment["CONNECTIONS_TABLE"]
    items = stack.aws_client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    rows = [item for item in items if item.get("user_id", {}).get("S") == user_id]
    return sorted(rows, key=lambda item: (int(item["connected_at"]["N"]), item["connection_id"]["S"]))


def connection_ids(stack: LocalStack, user_id: str) -> list[str]:
    """The ids of the user's stored connections, oldest first."""
    return [row["connection_id"]["S"] for row in connection_rows(stack, user_id)]


def live_ids(stack: LocalStack) -> set[str]:
    """The connection ids the gateway holds open."""
    return set(requests.get(stack.management_url + "/_connections", timeout=10).json()["connections"])


def set_faults(stack: LocalStack, rules: list[dict[str, Any]]) -> None:
    """Replace the gateway's fault plan (`chalice_realtime.testing.faults.FaultRule` in JSON)."""
    answer = requests.put(stack.management_url + "/_faults", json={"rules": rules}, timeout=10)
    assert answer.status_code == 200, answer.text


def clear_faults(stack: LocalStack) -> None:
    requests.delete(stack.management_url + "/_faults", timeout=10)


def faults_applied(stack: LocalStack) -> int:
    """How many Management API calls the plan in force has answered with a fault so far."""
    plan = requests.get(stack.management_url + "/_faults", timeout=10).json()
    return sum(int(rule["applied"]) for rule in plan["rules"])


class StackLog:
    """The stack's log from the moment this was made (every part's lines, prefixed with its name)."""

    def __init__(self, stack: LocalStack) -> None:
        self._path = stack.log_file
        self._start = self._path.stat().st_size

    def text(self) -> str:
        with self._path.open("rb") as log:
            log.seek(self._start)
            return log.read().decode(errors="replace")


@contextlib.contextmanager
def shipped_services(stack: LocalStack) -> Iterator[Services]:
    """The app's services as every Lambda builds them from settings, against the stack's moto and gateway.

    Only the table client is pointed at the stack's moto; the transport is the one settings choose
    (the libcurl transport), posting to the stack's gateway.
    """
    built = Services(Settings.from_env(stack.environment))
    built.dynamodb = built.realtime.dynamodb = stack.aws_client("dynamodb")
    transport = built.realtime.transport
    assert type(transport) is CurlTransport
    try:
        yield built
    finally:
        transport.close()


def notifier_later(services: Services) -> Notifier:
    """`services`' notifier as it runs once the in-flight window has passed for every row stored now.

    A notify right after a connect keeps the row of a connection answering 410 (its `$connect` may
    still be running); this one, like a notify half a minute later, deletes it.
    """
    core = services.realtime
    return Notifier(core.connections, core.transport, clock=_Later(IN_FLIGHT_MS / 1000 + 1))


class _Later:
    """The system clock, `seconds` ahead."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def now(self) -> float:
        return time.time() + self._seconds

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
