"""Posting frames with asyncio + aiohttp, each request signed by botocore's `SigV4Auth` (`[aiohttp]`).

No native library is needed (aiohttp has pure-Python wheels); it costs more CPU per frame than
`curl` (`python -m bench.fanout`).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .base import (
    IN_FLIGHT_GRACE_SECONDS,
    RETRYABLE_STATUSES,
    Outcome,
    RetryPolicy,
    _never_failing,
    log_undelivered,
    region_of,
    retry_after_seconds,
)
from .rate import RateController

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger(__name__)


@dataclass
class _Pool:
    """The keep-alive connections and the in-flight bound, both tied to one event loop."""

    session: Any  # aiohttp.ClientSession
    semaphore: asyncio.Semaphore


_Work = Callable[[_Pool], Coroutine[Any, Any, list[Outcome]]]


class AiohttpTransport:
    """Posts frames concurrently with asyncio + aiohttp, each request signed by botocore's `SigV4Auth`.

    The event loop runs on one background thread kept for the process, so a warm
    Lambda reuses its keep-alive connections across invocations; synchronous callers
    just block on `post_to_connections`. At most `concurrency` requests are in flight, started at
    the pace of `rate` (the process's `RateController` from `transport_for`, else one of its own);
    a 429 is retried until the deadline.
    Credentials come from botocore's credential chain, the region from the endpoint
    (`*.execute-api.{region}.amazonaws.com`) or from botocore's configuration.

        transport = AiohttpTransport("https://abc.execute-api.eu-west-1.amazonaws.com/dev")
        transport.post_to_connections(["id1=", "id2="], b'{"event":"jobs-updated"}')
        # [Outcome.DELIVERED, Outcome.GONE]
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        concurrency: int = 64,
        retry: RetryPolicy | None = None,
        request_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        region: str | None = None,
        credentials: Any = None,
        persistent_loop: bool = True,
        rate: RateController | None = None,
    ) -> None:
        if not endpoint_url:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set: frames cannot be posted")
        self._base = endpoint_url.rstrip("/")
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self.rate = rate or RateController(min_in_flight=concurrency)
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._region = region
        self._credentials = credentials
        self._persistent = persistent_loop
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: _Pool | None = None
        self._pid = 0

    # ------------------------------------------------------------ public, synchronous

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        if not connection_ids:
            return []
        ids = list(connection_ids)
        seconds = self._retry.deadline if deadline is None else deadline
        try:
            return self._run(lambda pool: self._send_all("POST", ids, data, pool, seconds), len(ids), seconds)
        except Exception:
            logger.exception("posting frames failed", extra={"count": len(ids)})
            return [Outcome.FAILED] * len(ids)

    def submit(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> Future[list[Outcome]]:
        """Start posting on the background loop and return at once (the notifier pipelines users with it).

        future = transport.submit(["id1="], frame("jobs-updated"))
        future.result()  # [Outcome.DELIVERED]
        """
        import asyncio  # on first use: Lambdas that never notify do not pay for it

        ids = list(connection_ids)
        try:
            if not self._persistent:
                raise RuntimeError("submit needs the background loop")
            loop = self._background_loop()
            inner = asyncio.run_coroutine_threadsafe(
                self._with_shared_session(
                    lambda pool: self._send_all(
                        "POST", ids, data, pool, self._retry.deadline if deadline is None else deadline
                    )
                ),
                loop,
            )
        except Exception:
            logger.exception("posting frames failed", extra={"count": len(ids)})
            failed: Future[list[Outcome]] = Future()
            failed.set_result([Outcome.FAILED] * len(ids))
            return failed
        return _never_failing(inner, len(ids))

    def delete_connection(self, connection_id: str) -> Outcome:
        try:
            return self._run(
                lambda pool: self._send_all("DELETE", [connection_id], b"", pool, self._retry.deadline),
                1,
                self._retry.deadline,
            )[0]
        except Exception:
            logger.exception("closing a connection failed", extra={"connection_id": connection_id})
            return Outcome.FAILED

    def close(self) -> None:
        """Close pooled connections and stop the background loop (tests, scripts; Lambda never needs it)."""
        import asyncio

        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        pool, self._pool = self._pool, None
        if pool is not None:
            asyncio.run_coroutine_threadsafe(pool.session.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()

    # ------------------------------------------------------------ running coroutines from sync code

    def _run(self, work: _Work, count: int, deadline: float) -> list[Outcome]:
        import asyncio

        if not self._persistent:
            return asyncio.run(self._with_fresh_session(work))
        loop = self._background_loop()
        future = asyncio.run_coroutine_threadsafe(self._with_shared_session(work), loop)
        try:
            # The coroutine bounds itself by the deadline; this margin only guards against a stuck loop.
            return future.result(timeout=deadline + self._request_timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.error("posting frames overran the deadline", extra={"count": count})
            return [Outcome.FAILED] * count

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        pid = os.getpid()
        if self._loop is None or self._pid != pid:
            with self._lock:
                if self._loop is None or self._pid != pid:
                    # A forked child inherits no threads: it builds its own loop and pool.
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(target=loop.run_forever, name="notify-loop", daemon=True)
                    thread.start()
                    self._loop, self._thread, self._pid = loop, thread, pid
                    atexit.register(self.close)  # close sockets cleanly when a script ends
                    self._pool = None
        assert self._loop is not None
        return self._loop

    async def _with_shared_session(self, work: _Work) -> list[Outcome]:
        import asyncio

        if self._pool is None:
            self._pool = _Pool(self._new_session(), asyncio.Semaphore(self._concurrency))
        return await work(self._pool)

    async def _with_fresh_session(self, work: _Work) -> list[Outcome]:
        import asyncio

        async with self._new_session() as session:
            return await work(_Pool(session, asyncio.Semaphore(self._concurrency)))

    def _new_session(self) -> Any:
        import aiohttp  # imported on first post: it costs cold starts of Lambdas that never notify

        connector = aiohttp.TCPConnector(limit=self._concurrency, keepalive_timeout=60, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._request_timeout, sock_connect=self._connect_timeout),
            # Nothing here needs cookies, compression or redirects: each costs CPU on every frame.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
        )

    # ------------------------------------------------------------ the requests

    async def _send_all(
        self, method: str, ids: list[str], data: bytes, pool: _Pool, seconds: float
    ) -> list[Outcome]:
        import asyncio

        signer = self._signer()
        if signer is None:
            logger.error("no AWS credentials found by botocore: frames cannot be signed")
            return [Outcome.FAILED] * len(ids)
        deadline = time.monotonic() + seconds
        failures: dict[str, int] = {}
        outcomes = await asyncio.gather(
            *(self._send(method, cid, data, pool, signer, deadline, failures) for cid in ids)
        )
        if failures:
            failed = [cid for cid, outcome in zip(ids, outcomes, strict=True) if outcome is Outcome.FAILED]
            log_undelivered(method, failures, failed)
        return list(outcomes)

    async def _send(
        self,
        method: str,
        connection_id: str,
        data: bytes,
        pool: _Pool,
        signer: Callable[[str, str, bytes], dict[str, str]],
        deadline: float,
        failures: dict[str, int],
    ) -> Outcome:
        import asyncio

        import aiohttp
        from yarl import URL

        url = f"{self._base}/@connections/{quote(connection_id, safe='')}"
        target = URL(url, encoded=True)  # already quoted exactly as it was signed
        reason = ""
        rate = self.rate
        attempt = 0  # failed attempts (5xx, network); 429s are retried until the deadline instead
        while True:
            status: int | None = None
            retry_after: float | None = None
            async with pool.semaphore:
                # Measured after the wait for a slot and a token: a large fan-out queues here.
                while not rate.take(1, now := time.monotonic()) and now < deadline:
                    await asyncio.sleep(max(rate.wait(now), 0.001))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = f"{reason}, deadline" if reason else "deadline"
                    break
                # The session's timeout applies unless the deadline (and a grace for what is in flight then)
                # is nearer.
                allowed = remaining + IN_FLIGHT_GRACE_SECONDS
                timeout = (
                    {}
                    if allowed >= self._request_timeout
                    else {"timeout": aiohttp.ClientTimeout(total=allowed, sock_connect=self._connect_timeout)}
                )
                headers = signer(method, url, data)
                started = time.monotonic()
                try:
                    async with pool.session.request(
                        method, target, data=data or None, headers=headers, allow_redirects=False, **timeout
                    ) as response:
                        status = response.status
                        if status >= 300:
                            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                        await response.read()  # so the connection goes back to the pool
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    if reason and time.monotonic() >= deadline:
                        # An attempt the deadline cut short: what kept the frame back came before it.
                        reason = f"{reason}, deadline"
                        break
                    reason = type(exc).__name__
            if status is not None:
                if 200 <= status < 300 or status == 410:
                    rate.answered(started, time.monotonic())
                    return Outcome.DELIVERED if status != 410 else Outcome.GONE
                reason = str(status)
                if status not in RETRYABLE_STATUSES:
                    break
            if status == 429:
                rate.throttled(started, time.monotonic())  # retried when the (cut) rate gives a token
                delay = retry_after or 0.0
            else:
                attempt += 1
                if attempt >= self._retry.max_attempts:
                    break
                delay = retry_after if retry_after is not None else self._retry.backoff(attempt - 1)
            if time.monotonic() + delay >= deadline:
                reason = f"{reason}, no time left to retry"
                break
            if delay:
                await asyncio.sleep(delay)
        failures[reason] = failures.get(reason, 0) + 1
        return Outcome.FAILED

    def _signer(self) -> Callable[[str, str, bytes], dict[str, str]] | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials
        if credentials is None:
            import botocore.session

            session = botocore.session.get_session()
            credentials = self._credentials = session.get_credentials()
            if self._region is None:
                self._region = region_of(self._base) or session.get_config_variable("region") or "us-east-1"
        if credentials is None:
            return None
        region = self._region or region_of(self._base) or "us-east-1"
        # Frozen once per call: refreshable credentials (Lambda role, SSO) rotate between calls, not mid-sign.
        auth = SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region)

        def sign(method: str, url: str, body: bytes) -> dict[str, str]:
            request = AWSRequest(method=method, url=url, data=body)
            auth.add_auth(request)
            return dict(request.headers.items())

        return sign
