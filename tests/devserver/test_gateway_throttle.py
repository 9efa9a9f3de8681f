"""The local gateway's account throttle: a token bucket over the Management API, answering what is over it
as API Gateway does (429 `LimitExceededException`), set with `PUT /_throttle` or `--throttle-rate`."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from chalice_realtime.testing.faults import AccountThrottle

from devserver.gateway import Gateway


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_admits_its_burst_at_once_then_its_rate() -> None:
    clock = FakeClock()
    throttle = AccountThrottle(rate=10, burst=5, clock=clock)
    assert [throttle.admit() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.5  # 5 tokens back
    assert sum(throttle.admit() for _ in range(10)) == 5
    clock.now += 60  # never more than the burst saved
    assert sum(throttle.admit() for _ in range(10)) == 5
    assert throttle.to_json() == {"rate": 10.0, "burst": 5.0, "admitted": 15, "throttled": 11}


def test_no_rate_admits_everything_and_nonsense_is_refused() -> None:
    throttle = AccountThrottle()
    assert all(throttle.admit() for _ in range(10_000))
    with pytest.raises(ValueError):
        throttle.set(rate=100, burst=0)
    with pytest.raises(ValueError):
        throttle.set(rate=-1, burst=5)


@pytest.fixture
def gateway_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(Gateway({}, domain_name="127.0.0.1", stage="local").application())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    url = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def control(url: str, method: str, body: dict[str, float] | None = None) -> dict[str, float]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url + "/_throttle",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback only
        return dict(json.loads(answer.read()))


def error_codes(url: str, posts: int) -> list[str]:
    """What boto3's Management API client (no retries) sees for `posts` posts to an unknown connection."""
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url + "/local",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    codes = []
    for _ in range(posts):
        with pytest.raises(ClientError) as error:
            client.post_to_connection(ConnectionId="nobody=", Data=b'{"event":"jobs-updated"}')
        codes.append(error.value.response["Error"]["Code"])
    return codes


def test_over_the_throttle_the_management_api_answers_limit_exceeded(gateway_url: str) -> None:
    assert control(gateway_url, "PUT", {"rate": 0.001, "burst": 3})["burst"] == 3
    assert error_codes(gateway_url, 5) == ["GoneException"] * 3 + ["LimitExceededException"] * 2
    assert control(gateway_url, "GET") == {"rate": 0.001, "burst": 3.0, "admitted": 3, "throttled": 2}
    control(gateway_url, "DELETE")
    assert error_codes(gateway_url, 5) == ["GoneException"] * 5
