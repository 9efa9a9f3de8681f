"""A stand-in for API Gateway's Management API, for benchmarks: a separate process on loopback.

Every `POST|DELETE /@connections/{id}` is answered after a fixed delay (default 20 ms, an
in-region AWS round trip): 410 for ids ending in `-gone`, else 200. With `--rate`, a token bucket
of that many requests per second and `--burst` tokens (full at the start) stands for API Gateway's
account throttle: a request that finds it empty is answered `429 LimitExceededException`, with the
body and header API Gateway sends. `GET /_stats` returns the request counts as JSON (and when the
first and last frame were accepted, in seconds of the stand-in's clock); `POST /_reset` zeroes them
and fills the bucket again. It is a raw asyncio protocol, not a web framework, so that the
stand-in's own CPU does not limit what is measured.

    python -m bench.standin --delay 0.02      # prints "http://127.0.0.1:PORT", serves until killed
    python -m bench.standin --rate 5000 --burst 2500   # API Gateway's throttle, scaled to one core
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter

STATS: Counter[str] = Counter()


def _response(status: int, body: bytes = b"", extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}.get(status, "Status")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


OK = _response(200)
GONE = _response(
    410,
    b'{"message":"GoneException"}',
    "Content-Type: application/json\r\nx-amzn-ErrorType: GoneException\r\n",
)
# What API Gateway answers a request over the account's throttle (botocore reads the error code
# from x-amzn-ErrorType: LimitExceededException).
THROTTLED = _response(
    429,
    b'{"message":"Too Many Requests"}',
    "Content-Type: application/json\r\nx-amzn-ErrorType: LimitExceededException\r\n",
)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; starts full. A rate of 0 admits everything."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.refill()

    def refill(self) -> None:
        self.tokens, self.updated = self.burst, time.monotonic()

    def admit(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


BUCKET = TokenBucket(0, 0)


class ManagementApi(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order (same delay)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        STATS["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self.answer(method, path)

    def answer(self, method: str, path: str) -> None:
        assert self.transport is not None
        if path == "/_stats":
            self.transport.write(
                _response(200, json.dumps(STATS).encode(), "Content-Type: application/json\r\n")
            )
            return
        if path == "/_reset":
            STATS.clear()
            BUCKET.refill()
            self.transport.write(OK)
            return
        if "/@connections/" not in path:
            self.transport.write(_response(404))
            return
        STATS[method] += 1
        if not BUCKET.admit():
            STATS["429"] += 1
            asyncio.get_running_loop().call_later(self.delay, self._write, THROTTLED)
            return
        gone = path.endswith("-gone")
        STATS["410" if gone else "200"] += 1
        if not gone and method == "POST":
            now = time.monotonic()
            STATS["first_frame_at"] = STATS["first_frame_at"] or now
            STATS["last_frame_at"] = now
        asyncio.get_running_loop().call_later(self.delay, self._write, GONE if gone else OK)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(delay: float, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ManagementApi(delay), "127.0.0.1", port, backlog=1024)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each answer (0.02)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=0, help="throttle: requests/s admitted (0: none)")
    parser.add_argument("--burst", type=float, default=0, help="throttle: the bucket's size (tokens)")
    args = parser.parse_args()
    BUCKET.rate, BUCKET.burst = args.rate, args.burst
    BUCKET.refill()
    try:
        asyncio.run(serve(args.delay, args.port))
    except KeyboardInterrupt:
        sys.exit(0)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
