"""Posting frames through libcurl's multi interface (pycurl), the cheapest per frame we measured.

`python -m bench.fanout` compares it with the plain client (aiohttp + botocore `SigV4Auth`
per request): the HTTP work happens in libcurl's C code, easy handles (as many as posts in
flight) are reused with their keep-alive connections, and requests are signed with a key derived
once a day (`signing.py`). The retry, `Retry-After`, deadline and 410 rules are
those of `RetryPolicy`, as for `AiohttpTransport`; how fast posts start, and how many are in flight,
is the `RateController`'s to say (`rate.py`): a 429 is retried at the pace it sets until the deadline.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from .base import (
    IN_FLIGHT_GRACE_SECONDS,
    RETRYABLE_STATUSES,
    Outcome,
    RetryPolicy,
    log_undelivered,
    region_of,
)
from .rate import RateController
from .signing import RequestSigner

logger = logging.getLogger(__name__)

# libcurl's defaults that cost bytes on every request and that the Management API does not read.
_DROPPED_HEADERS = ("Accept:", "Content-Type:", "Expect:")
# What API Gateway's connection ids are made of (base64): quoted by four replacements.
_BASE64ISH = re.compile(r"[A-Za-z0-9_.~=+/%-]*")


def quote_segment(value: str) -> str:
    """`urllib.parse.quote(value, safe="")`, faster for the ids API Gateway hands out.

    >>> quote_segment("L0SM9cOF/+v=")
    'L0SM9cOF%2F%2Bv%3D'
    """
    if _BASE64ISH.fullmatch(value):
        return value.replace("%", "%25").replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")
    return quote(value, safe="")


@dataclass
class _Request:
    method: str
    connection_id: str
    attempt: int = 0  # failed attempts (5xx, network); 429s are retried until the deadline instead
    outcome: Outcome | None = None
    reason: str = ""
    started: float = 0.0


@dataclass
class _Batch:
    """One call's requests and what they share: body, credentials, deadline, failure reasons."""

    method: str
    data: bytes
    credentials: Any
    deadline: float
    requests: list[_Request]
    failures: dict[str, int] = field(default_factory=dict)
    failed_ids: list[str] = field(default_factory=list)

    def fail(self, request: _Request, reason: str) -> None:
        request.outcome = Outcome.FAILED
        request.reason = reason
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.failed_ids.append(request.connection_id)


class _Handle:
    """An easy handle and what it was last set to (attributes on pycurl's own objects are slow to read)."""

    __slots__ = ("body", "curl", "method", "request", "timeout_ms")

    def __init__(self, curl: Any) -> None:
        self.curl = curl
        self.method = "POST"
        self.body: bytes | None = None
        self.timeout_ms = 0
        self.request: _Request | None = None


class _Session:
    """One CurlMulti and its easy handles, kept for the process (a warm Lambda's connections)."""

    def __init__(self, transport: CurlTransport) -> None:
        import pycurl  # on first post: Lambdas that never notify do not pay for it

        self.pycurl = pycurl
        self.transport = transport
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAXCONNECTS, transport.rate.max_in_flight)
        self.idle: list[_Handle] = []
        self.handles: dict[Any, _Handle] = {}  # by pycurl handle, as info_read returns them

    def close(self) -> None:
        for curl in self.handles:
            curl.close()
        self.multi.close()
        self.handles, self.idle = {}, []

    def _new_handle(self) -> _Handle:
        pycurl, transport = self.pycurl, self.transport
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(transport.connect_timeout * 1000))
        curl.setopt(pycurl.WRITEFUNCTION, _discard)  # bodies are not read: the status says it all
        if transport.ca_bundle:
            curl.setopt(pycurl.CAINFO, transport.ca_bundle)
        handle = self.handles[curl] = _Handle(curl)
        return handle

    def run(self, batch: _Batch) -> None:
        """Send every request of `batch` at the pace and in-flight bound of the transport's `RateController`,
        retrying as `RetryPolicy` says; what is not sent by the deadline is failed at once."""
        pycurl, multi, rate = self.pycurl, self.multi, self.transport.rate
        ready: deque[_Request] = deque(batch.requests)
        later: list[tuple[float, int, _Request]] = []  # retries, by when they are due
        active = 0
        while ready or later or active:
            now = time.monotonic()
            if now >= batch.deadline and (ready or later):
                for request in (*ready, *(entry[2] for entry in later)):
                    batch.fail(request, f"{request.reason}, deadline" if request.reason else "deadline")
                ready.clear()
                later.clear()
            while later and later[0][0] <= now:
                ready.append(heapq.heappop(later)[2])
            paced = False  # requests wait for a token, not for a free slot
            if ready:
                room = min(len(ready), rate.in_flight_limit() - active)
                if room > 0:
                    granted = rate.take(room, now)
                    paced = granted < room
                    remaining = batch.deadline - now
                    for _ in range(granted):
                        self._start(batch, ready.popleft(), remaining)
                    active += granted
            if active:
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                finished = 0
                while True:
                    queued, succeeded, errored = multi.info_read()
                    for curl in succeeded:
                        self._finish(batch, self.handles[curl], None, later)
                    for curl, code, _message in errored:
                        self._finish(batch, self.handles[curl], code, later)
                    finished += len(succeeded) + len(errored)
                    if not queued:
                        break
                active -= finished
                if finished and ready and not paced:
                    continue  # free slots: start the next requests before waiting
                if active:
                    # Wait for a socket, for libcurl's own timers, the next token or the next retry.
                    wait = multi.timeout() / 1000
                    if wait < 0:
                        wait = 1.0
                    now = time.monotonic()
                    if later:
                        wait = min(wait, later[0][0] - now)
                    if paced:
                        # At least a millisecond: select(2) cannot wait less, and tokens come in batches.
                        wait = min(wait, max(rate.wait(now), 0.001))
                    wait = min(1.0, max(wait, 0.0))
                    if multi.select(wait) == 0 and wait > 0:
                        # No socket to wait on yet (a host name being resolved): pause rather than spin.
                        time.sleep(min(wait, 0.001))
            elif ready:
                time.sleep(min(max(rate.wait(time.monotonic()), 0.0005), max(0.0, batch.deadline - now)))
            elif later:
                time.sleep(max(0.0, min(later[0][0], batch.deadline) - time.monotonic()))

    def _start(self, batch: _Batch, request: _Request, remaining: float) -> None:
        pycurl, transport = self.pycurl, self.transport
        handle = self.idle.pop() if self.idle else self._new_handle()
        curl = handle.curl
        quoted = quote_segment(request.connection_id)
        headers = transport.signer.sign(
            batch.credentials, request.method, transport.path + quoted, batch.data
        )
        curl.setopt(pycurl.URL, transport.url + quoted)
        curl.setopt(pycurl.HTTPHEADER, [*(f"{k}: {v}" for k, v in headers.items()), *_DROPPED_HEADERS])
        # The call's deadline (and a grace for what is in flight then), when nearer than the per-request
        # timeout, bounds this attempt.
        timeout_ms = max(1, int(min(transport.request_timeout, remaining + IN_FLIGHT_GRACE_SECONDS) * 1000))
        if timeout_ms != handle.timeout_ms:
            curl.setopt(pycurl.TIMEOUT_MS, timeout_ms)
            handle.timeout_ms = timeout_ms
        if request.method != handle.method:
            if request.method == "POST":
                curl.unsetopt(pycurl.CUSTOMREQUEST)
            else:
                curl.setopt(pycurl.HTTPGET, 1)
                curl.setopt(pycurl.CUSTOMREQUEST, request.method)
            handle.method, handle.body = request.method, None
        if request.method == "POST" and handle.body is not batch.data:
            curl.setopt(pycurl.POSTFIELDS, batch.data)  # kept by the handle: one frame, many requests
            handle.body = batch.data
        handle.request = request
        request.started = time.monotonic()
        self.multi.add_handle(curl)

    def _finish(
        self, batch: _Batch, handle: _Handle, error: int | None, later: list[tuple[float, int, _Request]]
    ) -> None:
        pycurl, policy, curl = self.pycurl, self.transport.retry, handle.curl
        request = handle.request
        assert request is not None
        handle.request = None
        status = curl.getinfo(pycurl.RESPONSE_CODE) if error is None else None
        retry_after = curl.getinfo(pycurl.RETRY_AFTER) if status is not None and status >= 300 else 0
        self.multi.remove_handle(curl)
        self.idle.append(handle)
        if status is not None:
            if 200 <= status < 300:
                request.outcome = Outcome.DELIVERED
                self.transport.rate.answered(request.started, time.monotonic())
                return
            if status == 410:
                request.outcome = Outcome.GONE
                self.transport.rate.answered(request.started, time.monotonic())
                return
            request.reason = str(status)
            if status not in RETRYABLE_STATUSES:
                batch.fail(request, request.reason)
                return
        elif request.reason and time.monotonic() >= batch.deadline:
            # An attempt the deadline cut short: what kept the frame from its connection came before it.
            batch.fail(request, f"{request.reason}, deadline")
            return
        else:
            request.reason = f"curl error {error}"
        now = time.monotonic()
        if status == 429:
            # Throttled: the account's rate says nothing about this request, so it is retried until the
            # deadline, when the controller (cut by this answer) gives it a token.
            self.transport.rate.throttled(request.started, now)
            delay = float(retry_after)
        else:
            request.attempt += 1
            if request.attempt >= policy.max_attempts:
                batch.fail(request, request.reason)
                return
            # libcurl parses Retry-After (seconds or an HTTP date); 0 when absent.
            delay = float(retry_after) if retry_after else policy.backoff(request.attempt - 1)
        due = now + delay
        if due >= batch.deadline:
            batch.fail(request, f"{request.reason}, no time left to retry")
            return
        heapq.heappush(later, (due, id(request), request))


_INHERITED: list[_Session] = []


def _discard(_chunk: bytes) -> None:
    return None


class CurlTransport:
    """Posts frames with libcurl's multi interface, at the pace `rate` sets.

        transport = CurlTransport("https://abc.execute-api.eu-west-1.amazonaws.com/dev")
        transport.post_to_connections(["id1=", "id2="], b'{"event":"jobs-updated"}')
        # [Outcome.DELIVERED, Outcome.GONE]
        transport.post_to_connections(ids, frame, deadline=10.0)  # give up on what is not sent in 10 s

    `rate` is the `RateController` it shares with the process's other transports (`transport_for`
    passes `process_rate(...)`); without one it paces itself with a controller of its own whose
    in-flight bound starts at `concurrency` and grows as posts are slow.

    A call drives one multi handle and its easy handles, kept for the process and reused by the
    next call (a warm Lambda reuses its connections); calls made at once use one each.
    Credentials come from botocore's credential chain, frozen once per call so that refreshable
    ones (the Lambda role) rotate between calls; the region from the endpoint
    (`*.execute-api.{region}.amazonaws.com`) or botocore's configuration.
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
        ca_bundle: str | None = None,
        rate: RateController | None = None,
    ) -> None:
        if not endpoint_url:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set: frames cannot be posted")
        base = endpoint_url.rstrip("/")
        self.url = f"{base}/@connections/"
        self.path = f"{urlsplit(base).path}/@connections/"
        self.concurrency = concurrency
        self.rate = rate or RateController(min_in_flight=concurrency)
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.ca_bundle = ""
        self._ca_bundle = ca_bundle  # the CA certificates an https endpoint is checked against
        self._base = base
        self._region = region
        self._credentials = credentials
        self._signer: RequestSigner | None = None
        self._idle: list[_Session] = []  # sessions no call is using, most recently used last
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def signer(self) -> RequestSigner:
        assert self._signer is not None
        return self._signer

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        if not connection_ids:
            return []
        return self._send("POST", list(connection_ids), data, deadline)

    def delete_connection(self, connection_id: str) -> Outcome:
        return self._send("DELETE", [connection_id], b"", None)[0]

    def close(self) -> None:
        """Close every thread's handles and connections (tests, scripts; Lambda never needs it)."""
        with self._lock:
            sessions, self._idle = self._idle, []
        for session in sessions:
            session.close()

    def _send(self, method: str, ids: list[str], data: bytes, deadline: float | None) -> list[Outcome]:
        try:
            credentials = self._frozen_credentials()
            if credentials is None:
                logger.error("no AWS credentials found by botocore: frames cannot be signed")
                return [Outcome.FAILED] * len(ids)
            batch = _Batch(
                method,
                data,
                credentials,
                time.monotonic() + (self.retry.deadline if deadline is None else deadline),
                [_Request(method, cid) for cid in ids],
            )
            # A warm Lambda runs one call at a time and so reuses one session and its connections; calls
            # made at once from several threads (a local server) each take their own.
            session = self._take_session()
            try:
                session.run(batch)
            finally:
                self._give_back(session)
        except Exception:
            logger.exception("posting frames failed", extra={"count": len(ids)})
            return [Outcome.FAILED] * len(ids)
        if batch.failures:
            log_undelivered(method, batch.failures, batch.failed_ids)
        return [request.outcome or Outcome.FAILED for request in batch.requests]

    def _take_session(self) -> _Session:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must not touch its parent's connections (closing one would send a TLS
                # close_notify on a socket the parent still uses): it leaves them be and opens its own.
                _INHERITED.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return _Session(self)

    def _give_back(self, session: _Session) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._idle.append(session)

    def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is None or self._signer is None:
            import botocore.session

            session = botocore.session.get_session()
            if credentials is None:
                credentials = self._credentials = session.get_credentials()
            region = self._region or region_of(self._base) or session.get_config_variable("region")
            self._signer = RequestSigner(self._base, "execute-api", region or "us-east-1")
            if self._base.startswith("https:"):
                from botocore.httpsession import DEFAULT_CA_BUNDLE

                # By default the bundle boto3 trusts, wherever libcurl was built.
                self.ca_bundle = self._ca_bundle or DEFAULT_CA_BUNDLE
        if credentials is None:
            return None
        return credentials.get_frozen_credentials()
