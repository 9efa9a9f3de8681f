"""Frames against a Management API that throttles like API Gateway: a token bucket answering
`429 LimitExceededException` to what is over it. Nothing is lost to the throttle, the ceiling holds,
and what the caller's deadline leaves undelivered comes back FAILED and is logged with its ids.

The stand-in is a raw asyncio HTTP/1.1 server on 127.0.0.1 in a thread of the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from chalice_realtime.transports.aiohttp import AiohttpTransport
from chalice_realtime.transports.base import Outcome, RetryPolicy
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
from chalice_realtime.transports.curl import CurlTransport
from chalice_realtime.transports.rate import RateController

FRAME = b'{"event":"jobs-updated"}'
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_THROTTLED_BODY = b'{"message":"Too Many Requests"}'
# What API Gateway answers over its throttle; botocore reads the error code from x-amzn-ErrorType.
THROTTLED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"x-amzn-ErrorType: LimitExceededException\r\n"
    + f"Content-Length: {len(_THROTTLED_BODY)}\r\n\r\n".encode()
    + _THROTTLED_BODY
)


@dataclass
class ThrottledApi:
    """A Management API behind a token bucket of `rate` requests/s and `burst` tokens (None: no throttle)."""

    rate: float | None
    burst: float
    url: str = ""
    delivered: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    arrivals: list[float] = field(default_factory=list)  # when each answered-200 request came in
    _tokens: float = 0.0
    _last: float = 0.0

    def admit(self) -> bool:
        if self.rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def answer(self, path: str) -> bytes:
        if self.admit():
            self.delivered[unquote(path.rsplit("/@connections/", 1)[-1])] += 1
            self.arrivals.append(time.monotonic())
            return OK
        self.throttled += 1
        return THROTTLED


class _Protocol(asyncio.Protocol):
    def __init__(self, api: ThrottledApi) -> None:
        self.api = api
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head[1:]
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(self.api.answer(head[0].split(" ")[1]))


@contextlib.contextmanager
def serving(rate: float | None, burst: float) -> Iterator[ThrottledApi]:
    api = ThrottledApi(rate, burst, _tokens=burst, _last=time.monotonic())
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def start() -> None:
        server = await loop.create_server(lambda: _Protocol(api), "127.0.0.1", 0, backlog=1024)
        api.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    started.wait(5)
    try:
        yield api
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


TRANSPORTS: dict[str, Callable[..., Any]] = {
    "curl": CurlTransport,
    "aiohttp": AiohttpTransport,
    "boto3": Boto3ThreadPoolTransport,
}


# Each transport's tests run where its extra is installed ([fast]: pycurl, [aiohttp]); boto3's everywhere.
FAST = pytest.mark.requires_extra("fast")
EXTRA_OF = {"curl": FAST, "aiohttp": pytest.mark.requires_extra("aiohttp")}


@pytest.fixture(params=[pytest.param(kind, marks=EXTRA_OF.get(kind, ())) for kind in TRANSPORTS])
def make_transport(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def build(url: str, **options: Any) -> Any:
        transport = TRANSPORTS[request.param](url, **options)
        made.append(transport)
        return transport

    yield build
    for transport in made:
        close = getattr(transport, "close", None)
        if close is not None:
            close()


def ids(n: int) -> list[str]:
    return [f"conn-{i}=" for i in range(n)]


def test_a_throttled_burst_loses_no_frame(make_transport: Callable[..., Any]) -> None:
    """600 frames against 300/s with a burst of 50: most first attempts are over the limit."""
    connections = ids(600)
    with serving(rate=300, burst=50) as api:
        transport = make_transport(api.url, retry=RetryPolicy(deadline=30.0))
        outcomes = transport.post_to_connections(connections, FRAME)
    assert outcomes == [Outcome.DELIVERED] * len(connections)
    assert api.delivered == Counter(dict.fromkeys(connections, 1))  # each exactly once
    assert api.throttled > 0  # the throttle did bite


@FAST
def test_the_curl_transport_backs_off_instead_of_hammering_the_throttle() -> None:
    connections = ids(1_500)
    with serving(rate=500, burst=100) as api:
        transport = CurlTransport(
            api.url, retry=RetryPolicy(deadline=30.0), rate=RateController(ceiling=2_000)
        )
        try:
            outcomes = transport.post_to_connections(connections, FRAME)
        finally:
            transport.close()
    assert outcomes == [Outcome.DELIVERED] * len(connections)
    # Sent at 2,000/s and retried on their own timers, 1,500 posts behind 500/s provoke several 429s each.
    assert api.throttled <= 0.3 * len(connections)
    assert transport.rate.snapshot().cuts >= 1


def test_the_ceiling_holds_against_a_server_that_would_take_more(make_transport: Callable[..., Any]) -> None:
    connections = ids(500)
    with serving(rate=None, burst=0) as api:
        transport = make_transport(api.url, rate=RateController(ceiling=200))
        transport.post_to_connections(["warm-up="], FRAME)  # the client built, as in a warm Lambda
        api.arrivals.clear()
        outcomes = transport.post_to_connections(connections, FRAME)
    assert outcomes == [Outcome.DELIVERED] * len(connections)
    arrivals = sorted(api.arrivals)
    busiest = max(sum(1 for later in arrivals[i:] if later - first < 1.0) for i, first in enumerate(arrivals))
    assert busiest <= 200 * 1.05 + 5  # 200 a second, and the controller's small burst


def test_frames_the_deadline_leaves_undelivered_are_failed_and_logged_with_their_ids(
    make_transport: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    connections = ids(400)
    with serving(rate=40, burst=10) as api, caplog.at_level(logging.WARNING):
        transport = make_transport(api.url)
        outcomes = transport.post_to_connections(connections, FRAME, deadline=1.0)
    delivered = [
        cid for cid, outcome in zip(connections, outcomes, strict=True) if outcome is Outcome.DELIVERED
    ]
    failed = [cid for cid, outcome in zip(connections, outcomes, strict=True) if outcome is Outcome.FAILED]
    assert len(delivered) + len(failed) == len(connections)
    # What the bucket allowed by the deadline (boto3: plus botocore's own retries of the last calls).
    assert 0 < len(delivered) < len(connections) / 2
    assert api.delivered == Counter(dict.fromkeys(delivered, 1))  # a FAILED frame never arrived
    (line,) = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert line.failed == len(failed)  # type: ignore[attr-defined]
    sample = line.connection_ids  # type: ignore[attr-defined]
    assert set(sample) <= set(failed) and len(sample) == 10  # a sample, not a line per frame
    assert line.getMessage().startswith(f"{len(failed)} frames not delivered after retries (429, deadline")
    assert all(cid in line.getMessage() for cid in sample)
