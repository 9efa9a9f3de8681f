"""WebSocket abuse over real sockets: oversized and binary frames, 10,000 garbage frames, a connect flood.

On the local stack (the gateway enforces API Gateway's limits; the app's handlers run behind it):
oversized frames close with 1009 and binary frames with 1003, as on AWS; garbage is ignored and
never raises (the stack's log is checked for handler errors); a flood of connects from one user
leaves at most `MAX_CONNECTIONS_PER_USER` of them, closing the oldest. Throughout, another user
pings and gets pongs, and afterwards still gets a notify exactly once.

An in-process gateway with the app's handlers wrapped in counters checks what the stack's log
cannot show: which handler ran how many times, and that none raised.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from chalice_realtime.notifier import DeliveryReport
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.transports.curl import CurlTransport
from websockets.asyncio.client import ClientConnection

import app as app_module
from chalicelib import services as services_module
from chalicelib.services import Services
from chalicelib.settings import Settings
from devserver.gateway import MAX_FRAME_BYTES, Gateway
from devserver.lambdas import LambdaFunction, websocket_functions
from tests.conftest import TEST_ENV
from tests.integration.faults_support import (
    FRAME_WAIT,
    Client,
    StackLog,
    connect,
    connection_ids,
    live_ids,
    shipped_services,
    wait_for_frames,
)
from tests.integration.test_local_gateway import RunningGateway
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

GARBAGE_FRAMES = 10_000
# Generous bounds for a loaded 2-core CI machine; they catch a hang or a quadratic blow-up, not speed.
GARBAGE_SECONDS = 120.0
PONG_WITHIN = 10.0


def garbage(count: int, seed: int = 8) -> list[str]:
    """`count` text frames that are not a ping: broken JSON, wrong shapes, hostile values, noise.

    Each kind appears at least once; the few large ones (deep nesting, a 30,000-digit number)
    stay under the 32 KB frame limit so they reach the handler.
    """
    kinds = [
        "",
        "not json",
        "{",
        "[]",
        "null",
        "0",
        '"ping"',
        "\ufeff" + json.dumps({"action": "ping"}),  # a BOM before otherwise valid JSON
        json.dumps({"action": None}),
        json.dumps({"action": 5}),
        json.dumps({"action": ["ping"]}),
        json.dumps({"action": {"ping": True}}),
        json.dumps({"action": "ping "}),
        json.dumps({"action": "PING"}),
        json.dumps({"action": "$connect"}),
        json.dumps({"action": "$disconnect"}),
        json.dumps({"action": "sendmessage", "data": "x" * 100}),
        json.dumps({"action": "ping", "__proto__": {"admin": True}})[:-1],  # truncated
        '{"action": "ping", "action": "pong"}',  # a duplicate key: the last one wins, not a ping
        json.dumps({"event": "jobs-updated"}),  # a server frame sent back
        "\u202e\u0000\u200b<script>alert(1)</script>",
        "[" * 15000 + "]" * 15000,  # nesting deeper than Python's recursion limit
        '{"action": "ping", "n": ' + "9" * 30000 + "}",  # an integer past int's digit limit
    ]
    rng = random.Random(seed)
    frames = list(kinds)
    while len(frames) < count:
        size = rng.randrange(1, 200)
        frames.append("".join(chr(rng.randrange(32, 0x2FF)) for _ in range(size)))
    return frames[:count]


class Pinger:
    """Another user's socket that pings every `interval` and times each pong, while the abuse runs."""

    def __init__(self, socket: ClientConnection, interval: float = 0.25) -> None:
        self.socket = socket
        self.interval = interval
        self.pongs: list[float] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            sent = time.monotonic()
            await self.socket.send(json.dumps({"action": "ping"}))
            answer = json.loads(await asyncio.wait_for(self.socket.recv(), PONG_WITHIN))
            assert answer == {"event": "pong"}, answer
            self.pongs.append(time.monotonic() - sent)
            await asyncio.sleep(self.interval)

    async def stop(self) -> list[float]:
        """Stop pinging; the pong times (raises if a pong was late or wrong meanwhile)."""
        if self._task.done():
            self._task.result()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return self.pongs


async def ping(socket: ClientConnection) -> dict[str, Any]:
    await socket.send(json.dumps({"action": "ping"}))
    return dict(json.loads(await asyncio.wait_for(socket.recv(), PONG_WITHIN)))


def assert_no_handler_errors(log: StackLog) -> None:
    text = log.text()
    assert "Traceback" not in text and " raised" not in text, text[-4000:]


# ---------------------------------------------------------------- on the local stack


@pytest.fixture(scope="module")
def shipped(local_stack: LocalStack) -> Iterator[Services]:
    with shipped_services(local_stack) as built:
        yield built


def test_oversized_and_binary_frames_close_only_that_socket_as_on_aws(local_stack: LocalStack) -> None:
    attacker, attacker_token = local_stack.sign_up()
    _, victim_token = local_stack.sign_up()
    log = StackLog(local_stack)

    async def scenario() -> None:
        async with (
            connect(local_stack, victim_token) as victim,
            connect(local_stack, attacker_token) as kept,
        ):
            pinger = Pinger(victim)
            async with connect(local_stack, attacker_token) as oversized:
                padded = json.dumps({"action": "ping", "pad": "x" * MAX_FRAME_BYTES})
                await oversized.send(padded)
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(oversized.recv(), FRAME_WAIT)  # no pong: the app never saw it
                assert oversized.close_code == 1009
            async with connect(local_stack, attacker_token) as binary:
                await binary.send(json.dumps({"action": "ping"}).encode())
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(binary.recv(), FRAME_WAIT)
                assert binary.close_code == 1003
            # The closed sockets' rows are gone; the attacker's other socket and the victim are fine.
            deadline = time.monotonic() + FRAME_WAIT
            while len(connection_ids(local_stack, attacker)) > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(connection_ids(local_stack, attacker)) == 1
            assert await ping(kept) == {"event": "pong"}
            assert len(await pinger.stop()) >= 1

    asyncio.run(scenario())
    assert_no_handler_errors(log)


def test_ten_thousand_garbage_frames_are_ignored_and_nobody_else_notices(
    local_stack: LocalStack, shipped: Services
) -> None:
    _, attacker_token = local_stack.sign_up()
    victim, victim_token = local_stack.sign_up()
    frames = garbage(GARBAGE_FRAMES)
    log = StackLog(local_stack)

    async def scenario() -> tuple[float, list[float], DeliveryReport, list[dict[str, Any]]]:
        async with connect(local_stack, victim_token) as victim_socket:
            pinger = Pinger(victim_socket)
            async with connect(local_stack, attacker_token) as attacker:
                started = time.monotonic()
                for frame in frames:
                    await attacker.send(frame)
                # Still connected, still served: its own ping is answered after the garbage.
                assert await ping(attacker) == {"event": "pong"}
                took = time.monotonic() - started
            pongs = await pinger.stop()
            watcher = Client(victim, victim_socket)
            report = await asyncio.to_thread(shipped.notifier.notify, victim, "after-the-garbage")
            await wait_for_frames([watcher], [1])
            return took, pongs, report, watcher.frames

    took, pongs, report, received = asyncio.run(scenario())
    assert took < GARBAGE_SECONDS
    assert pongs and max(pongs) < PONG_WITHIN  # the other user's pings were answered throughout
    assert report == DeliveryReport(delivered=1)
    assert received == [{"event": "after-the-garbage"}]
    assert_no_handler_errors(log)


def test_a_connect_flood_from_one_user_keeps_the_cap_and_closes_the_oldest(
    local_stack: LocalStack, shipped: Services
) -> None:
    attacker, attacker_token = local_stack.sign_up()
    victim, victim_token = local_stack.sign_up()
    cap = Settings.from_env(local_stack.environment).realtime.max_connections_per_user
    log = StackLog(local_stack)

    async def scenario() -> None:
        async with connect(local_stack, victim_token) as victim_socket:
            pinger = Pinger(victim_socket)
            # One after the other: exactly the newest `cap` stay open, the oldest are closed (1000).
            sequential = [
                Client(attacker, await connect(local_stack, attacker_token)) for _ in range(2 * cap)
            ]
            codes = await asyncio.gather(*(client.closed() for client in sequential[:cap]))
            assert codes == [1000] * cap
            assert all(client.socket.close_code is None for client in sequential[cap:])
            assert len(connection_ids(local_stack, attacker)) == cap

            # All at once: however the $connects interleave, the cap holds once they are done.
            attempts = await asyncio.gather(
                *(connect(local_stack, attacker_token) for _ in range(3 * cap)), return_exceptions=True
            )
            flood = [Client(attacker, a) for a in attempts if not isinstance(a, BaseException)]
            # A connect that lost to newer ones while being admitted is refused (the browser retries).
            refused = [a for a in attempts if isinstance(a, BaseException)]
            assert all(
                isinstance(a, websockets.exceptions.InvalidStatus) and a.response.status_code == 429
                for a in refused
            ), refused
            await asyncio.sleep(1.0)  # the last closes are on their way
            rows = connection_ids(local_stack, attacker)
            still_open = [c for c in sequential + flood if c.socket.close_code is None]
            assert len(rows) == cap and len(still_open) == cap, (len(rows), len(still_open))
            assert set(rows) <= live_ids(local_stack)  # each row is one of the open sockets

            pongs = await pinger.stop()
            watcher = Client(victim, victim_socket)
            report = await asyncio.to_thread(shipped.notifier.notify, victim, "after-the-flood")
            await wait_for_frames([watcher], [1])
            assert report == DeliveryReport(delivered=1)
            assert watcher.frames == [{"event": "after-the-flood"}]
            assert pongs and max(pongs) < PONG_WITHIN
            for client in still_open:
                await client.close()

    asyncio.run(scenario())
    assert_no_handler_errors(log)


# ---------------------------------------------------------------- counted, in process


class CountingHandlers:
    """The app's WebSocket handlers, each invocation and each exception counted per route key."""

    def __init__(self, functions: dict[str, LambdaFunction]) -> None:
        self.calls: Counter[str] = Counter()
        self.raised: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.functions = {key: self._wrap(key, function) for key, function in functions.items()}

    def _wrap(self, route_key: str, function: LambdaFunction) -> LambdaFunction:
        def handler(event: dict[str, Any], context: Any) -> Any:
            with self._lock:
                self.calls[route_key] += 1
            try:
                return function.handler(event, context)
            except BaseException:
                with self._lock:
                    self.raised[route_key] += 1
                raise

        return LambdaFunction(function.name, handler, function.app_name)

    def wait_for(self, route_key: str, count: int, timeout: float = GARBAGE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while self.calls[route_key] < count and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def counted(aws: dict[str, Any], firebase_certs: Any) -> Iterator[tuple[CountingHandlers, RunningGateway]]:
    """An in-process gateway over the app's counted handlers, on moto in-process."""
    handlers = CountingHandlers(websocket_functions(app_module.app))
    gateway = RunningGateway(Gateway(handlers.functions, domain_name="127.0.0.1", stage="local"))
    settings = Settings.from_env({**TEST_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{gateway.port}"})
    transport = CurlTransport(settings.realtime.websocket_endpoint)
    services_module.use(Services(settings, dynamodb=aws["dynamodb"], sns=aws["sns"], transport=transport))
    try:
        with gateway:
            yield handlers, gateway
    finally:
        services_module.use(None)
        transport.close()


def test_the_app_never_sees_oversized_or_binary_frames_and_never_raises_on_garbage(
    counted: tuple[CountingHandlers, RunningGateway], tokens: TokenFactory
) -> None:
    handlers, gateway = counted
    corpus = garbage(500, seed=9)

    def opened() -> Any:
        return websockets.connect(gateway.url, subprotocols=["bearer", tokens.mint("mallory")])  # type: ignore[list-item]

    async def scenario() -> None:
        async with opened() as ws:
            await ws.send("x" * (MAX_FRAME_BYTES + 1))
            await asyncio.wait_for(ws.wait_closed(), FRAME_WAIT)
            assert ws.close_code == 1009
        async with opened() as ws:
            await ws.send(b"\x00" * 10)
            await asyncio.wait_for(ws.wait_closed(), FRAME_WAIT)
            assert ws.close_code == 1003
        assert handlers.calls["$default"] == 0  # neither frame reached the app
        async with opened() as ws:
            for frame in corpus:
                await ws.send(frame)
            await asyncio.to_thread(handlers.wait_for, "$default", len(corpus))
            assert await ping(ws) == {"event": "pong"}

    asyncio.run(scenario())
    handlers.wait_for("$disconnect", 3)
    assert handlers.calls == Counter({"$connect": 3, "$default": len(corpus) + 1, "$disconnect": 3})
    assert sum(handlers.raised.values()) == 0
