"""The transport that needs nothing beyond boto3: a Management API client driven from a thread pool.

It is the fallback when pycurl (the `[fast]` extra) is not installed; `python -m bench.fanout`
measures what it costs per frame against the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..aws import client_config, error_code
from .base import RETRYABLE_STATUSES, Outcome, RetryPolicy, log_undelivered
from .rate import RateController

if TYPE_CHECKING:
    from types_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient

logger = logging.getLogger(__name__)


class Boto3ThreadPoolTransport:
    """A boto3 `apigatewaymanagementapi` client driven from a thread pool.

    Each call starts at the pace of `rate` (the process's `RateController` from `transport_for`,
    else one of its own). Retries follow `RetryPolicy`, as for the other transports, rather than
    botocore's (whose backoff knows nothing of the rate or of the caller's deadline): a 429 until
    the deadline, 5xx and connection errors `max_attempts` in all. What still fails is `FAILED`.

        transport = Boto3ThreadPoolTransport("https://abc.execute-api.eu-west-1.amazonaws.com/dev")
        transport.post_to_connections(["id1=", "id2="], b'{"event":"jobs-updated"}')
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        concurrency: int = 32,
        client: ApiGatewayManagementApiClient | None = None,
        retry: RetryPolicy | None = None,
        rate: RateController | None = None,
    ) -> None:
        if not endpoint_url and client is None:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set: frames cannot be posted")
        self._endpoint_url = endpoint_url
        self._concurrency = concurrency
        self._client = client
        self._retry = retry or RetryPolicy()
        self.rate = rate or RateController(min_in_flight=concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        if not connection_ids:
            return []
        until = time.monotonic() + (self._retry.deadline if deadline is None else deadline)
        if len(connection_ids) == 1:
            results = [self._post(connection_ids[0], data, until)]
        else:
            results = list(self._executor().map(lambda cid: self._post(cid, data, until), connection_ids))
        failures: dict[str, int] = {}
        failed = []
        for cid, (outcome, reason) in zip(connection_ids, results, strict=True):
            if outcome is Outcome.FAILED:
                failed.append(cid)
                failures[reason] = failures.get(reason, 0) + 1
        if failed:
            log_undelivered("POST", failures, failed)
        return [outcome for outcome, _ in results]

    def delete_connection(self, connection_id: str) -> Outcome:
        outcome, reason = self._call(
            lambda api: api.delete_connection(ConnectionId=connection_id),
            time.monotonic() + self._retry.deadline,
        )
        if outcome is Outcome.FAILED:
            log_undelivered("DELETE", {reason: 1}, [connection_id])
        return outcome

    def _post(self, connection_id: str, data: bytes, until: float) -> tuple[Outcome, str]:
        return self._call(lambda api: api.post_to_connection(ConnectionId=connection_id, Data=data), until)

    def _call(
        self, call: Callable[[ApiGatewayManagementApiClient], object], until: float
    ) -> tuple[Outcome, str]:
        """The outcome of one connection's call, and why it failed ('' unless FAILED)."""
        rate, policy = self.rate, self._retry
        attempt = 0  # failed attempts (5xx, network); 429s are retried until the deadline instead
        reason = ""
        while True:
            while not rate.take(1, now := time.monotonic()) and now < until:
                time.sleep(max(rate.wait(now), 0.001))
            if now >= until:  # no attempt starts after the deadline; one in flight then runs its course
                return Outcome.FAILED, f"{reason}, deadline" if reason else "deadline"
            try:
                started = time.monotonic()
                call(self._management_client())
            except ClientError as exc:
                code = error_code(exc)
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "GoneException" or status == 410:
                    return Outcome.GONE, ""
                reason = str(status or code)
                if code == "LimitExceededException" or status == 429:
                    reason = "429"
                    if time.monotonic() >= until:
                        return Outcome.FAILED, "429, deadline"
                    rate.throttled(started, time.monotonic())  # retried when the (cut) rate gives a token
                    continue
                if status not in RETRYABLE_STATUSES:
                    return Outcome.FAILED, reason
            except BotoCoreError as exc:
                reason = type(exc).__name__
            else:
                rate.answered(started, time.monotonic())
                return Outcome.DELIVERED, ""
            attempt += 1
            delay = policy.backoff(attempt - 1)
            if attempt >= policy.max_attempts:
                return Outcome.FAILED, reason
            if time.monotonic() + delay >= until:
                return Outcome.FAILED, f"{reason}, no time left to retry"
            time.sleep(delay)

    def _management_client(self) -> ApiGatewayManagementApiClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    self._client = boto3.session.Session().client(
                        "apigatewaymanagementapi",
                        endpoint_url=self._endpoint_url,
                        config=client_config(
                            max_pool_connections=self._concurrency, connect_timeout=2, read_timeout=5
                        ).merge(Config(retries={"mode": "standard", "total_max_attempts": 1})),
                    )
        return self._client

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self._concurrency, thread_name_prefix="notify"
                    )
        return self._pool
