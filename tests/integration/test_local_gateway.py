"""The local WebSocket gateway over real sockets, with recording handlers in place of the app's."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from aiohttp import web

from devserver.gateway import Gateway
from devserver.lambdas import LambdaFunction
from testsupport.localstack import free_port

pytestmark = pytest.mark.integration


class Handlers:
    """Records each invocation per route key; `$connect` answers with `connect_answer(event)`."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {"$connect": [], "$default": [], "$disconnect": []}
        self.connect_answer: Callable[[dict[str, Any]], Any] = lambda event: {"statusCode": 200}
        self.threads: set[str] = set()

    def functions(self) -> dict[str, LambdaFunction]:
        def record(route_key: str) -> Callable[[dict[str, Any], Any], Any]:
            def handler(event: dict[str, Any], context: Any) -> Any:
                assert context.get_remaining_time_in_millis() > 0
                self.threads.add(threading.current_thread().name)
                self.events[route_key].append(event)
                return self.connect_answer(event) if route_key == "$connect" else {"statusCode": 200}

            return handler

        return {key: LambdaFunction(key, record(key), "test-app") for key in self.events}

    def wait_for(self, route_key: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events[route_key]) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events[route_key]) >= count, self.events
        return self.events[route_key]


class RunningGateway:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(gateway.application())
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> RunningGateway:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def make_gateway(handlers: Handlers) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def make(**options: Any) -> RunningGateway:
        running = RunningGateway(
            Gateway(handlers.functions(), domain_name="127.0.0.1", stage="local", **options)
        )
        started.append(running.__enter__())
        return running

    yield make
    for running in started:
        running.__exit__(None, None, None)


def test_connect_gets_an_api_gateway_shaped_event_and_the_chosen_subprotocol(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway()
    handlers.connect_answer = lambda event: {
        "statusCode": 200,
        "headers": {"Sec-WebSocket-Protocol": "bearer"},
    }

    async def scenario() -> None:
        async with websockets.connect(
            gateway.url + "/?token=abc&x=1",
            subprotocols=["bearer", "the-token"],  # type: ignore[list-item]
            user_agent_header="pytest-agent",
        ) as ws:
            assert ws.subprotocol == "bearer"

    asyncio.run(scenario())
    (event,) = handlers.wait_for("$connect")
    context = event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT"
    assert re.fullmatch(r"[A-Za-z0-9]{15}=", context["connectionId"])
    assert context["stage"] == "local" and context["apiId"] and context["requestId"]
    assert context["domainName"] == "127.0.0.1"
    assert abs(context["connectedAt"] - time.time() * 1000) < 10_000
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "pytest-agent"}
    assert event["headers"]["Sec-WebSocket-Protocol"] == "bearer, the-token"
    assert event["multiValueHeaders"]["Sec-WebSocket-Protocol"] == ["bearer, the-token"]
    assert event["queryStringParameters"] == {"token": "abc", "x": "1"}
    assert event["isBase64Encoded"] is False
    # Handlers run in the gateway's worker threads, never on its event loop.
    assert handlers.threads and all(name.startswith("lambda") for name in handlers.threads)


def test_a_refusing_connect_handler_sets_the_http_status_of_the_upgrade(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway()
    handlers.connect_answer = lambda event: {"statusCode": 403, "body": '{"message": "nope"}'}

    async def scenario() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(gateway.url):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())
    assert handlers.events["$disconnect"] == []  # a refused connection never existed


def test_a_raising_connect_handler_refuses_with_500(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway()

    def boom(event: dict[str, Any]) -> Any:
        raise RuntimeError("handler bug")

    handlers.connect_answer = boom

    async def scenario() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(gateway.url):
                pass
        assert refused.value.response.status_code == 500

    asyncio.run(scenario())


def test_text_frames_go_to_default_and_a_close_to_disconnect(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway()

    async def scenario() -> None:
        async with websockets.connect(gateway.url) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            await ws.send("plain text")

    asyncio.run(scenario())
    messages = handlers.wait_for("$default", 2)
    assert {m["body"] for m in messages} == {'{"action": "ping"}', "plain text"}
    assert all(
        m["requestContext"]["eventType"] == "MESSAGE" and m["requestContext"]["messageId"] for m in messages
    )
    (closed,) = handlers.wait_for("$disconnect")
    connection_id = handlers.events["$connect"][0]["requestContext"]["connectionId"]
    assert closed["requestContext"]["connectionId"] == connection_id
    assert closed["requestContext"]["eventType"] == "DISCONNECT"
    assert closed["requestContext"]["disconnectStatusCode"] == 1000


def test_an_idle_connection_is_closed_with_going_away(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway(idle_timeout=0.5)

    async def scenario() -> None:
        async with websockets.connect(gateway.url) as ws:
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1001

    asyncio.run(scenario())
    (closed,) = handlers.wait_for("$disconnect")
    assert closed["requestContext"]["disconnectStatusCode"] == 1001


def test_a_busy_connection_outlives_the_idle_timeout_but_not_the_maximum_age(
    handlers: Handlers, make_gateway: Callable[..., RunningGateway]
) -> None:
    gateway = make_gateway(idle_timeout=0.5, max_connection_age=2.0)

    async def scenario() -> float:
        async with websockets.connect(gateway.url) as ws:
            opened = time.monotonic()
            while True:
                try:
                    await ws.send("keep-alive")
                except websockets.exceptions.ConnectionClosed:
                    break
                await asyncio.sleep(0.2)
            assert ws.close_code == 1001
            return time.monotonic() - opened

    lifetime = asyncio.run(scenario())
    assert lifetime > 1.0  # twice the idle timeout: client frames kept it alive until the age limit


def test_a_drop_fault_resets_the_management_call_before_any_answer(
    make_gateway: Callable[..., RunningGateway],
) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError
    from chalice_realtime.testing.faults import FaultRule

    gateway = make_gateway()
    gateway.gateway.faults.replace([FaultRule(drop=True, times=1)])
    client = boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{gateway.port}/local",  # the stage prefix, as on AWS
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(BotoCoreError):  # no HTTP answer at all, as when the network drops
        client.post_to_connection(ConnectionId="Abc123456789012=", Data=b"{}")
    with pytest.raises(client.exceptions.GoneException):  # used up: the normal answer again
        client.post_to_connection(ConnectionId="Abc123456789012=", Data=b"{}")
    assert gateway.gateway.faults.to_json()["rules"][0]["applied"] == 1
