"""The transports against a real HTTP stand-in of the Management API on 127.0.0.1.

Each behaviour is parametrized over the pycurl transport, the aiohttp one and the boto3
thread-pool one: 410 cleanup, 429 with and without `Retry-After`, 500, retries exhausted,
a dropped TCP connection, the report, and a signature AWS would accept. The rules that only
the two transports of our own keep (`Retry-After`, the deadline, refreshed credentials) are
checked on both of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice_realtime.connections import Connection, ConnectionStore
from chalice_realtime.notifier import DeliveryReport, Notifier, frame
from chalice_realtime.testing.dynamodb import CountingDynamoDB
from chalice_realtime.testing.management_api import FaultRule, Seen, serving
from chalice_realtime.testing.management_api import ManagementApiStandIn as StandIn
from chalice_realtime.transports.aiohttp import AiohttpTransport
from chalice_realtime.transports.base import (
    IN_FLIGHT_GRACE_SECONDS,
    ManagementTransport,
    Outcome,
    RetryPolicy,
    region_of,
    retry_after_seconds,
)
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
from chalice_realtime.transports.curl import CurlTransport
from fakes.env import TEST_ENV


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serving() as stand_in:
        yield stand_in


# Each transport's tests run where its extra is installed ([fast]: pycurl, [aiohttp]); boto3's everywhere.
FAST = pytest.mark.requires_extra("fast")
AIOHTTP = pytest.mark.requires_extra("aiohttp")
EXTRA_OF = {"curl": FAST, "aiohttp": AIOHTTP}

FAST_RETRIES = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.1, deadline=8.0)


def aiohttp_transport(url: str) -> AiohttpTransport:
    return AiohttpTransport(url, concurrency=8, retry=FAST_RETRIES)


def curl_transport(url: str) -> CurlTransport:
    return CurlTransport(url, concurrency=8, retry=FAST_RETRIES)


def boto3_transport(url: str) -> Boto3ThreadPoolTransport:
    return Boto3ThreadPoolTransport(url, concurrency=8)


TRANSPORTS: dict[str, Callable[[str], ManagementTransport]] = {
    "curl": curl_transport,
    "aiohttp": aiohttp_transport,
    "boto3-threads": boto3_transport,
}
# Ours: they wait as `Retry-After` says, bound a call by a deadline and sign outside botocore's client.
OWN_TRANSPORTS = {
    "curl": lambda url, **options: CurlTransport(url, **options),
    "aiohttp": lambda url, **options: AiohttpTransport(url, **options),
}


@pytest.fixture(params=[pytest.param(kind, marks=EXTRA_OF.get(kind, ())) for kind in TRANSPORTS])
def make_transport(request: pytest.FixtureRequest) -> Iterator[Callable[[str], ManagementTransport]]:
    made: list[ManagementTransport] = []

    def build(url: str) -> ManagementTransport:
        transport = TRANSPORTS[request.param](url)
        made.append(transport)
        return transport

    build.kind = request.param  # type: ignore[attr-defined]
    yield build
    for transport in made:
        if isinstance(transport, AiohttpTransport | CurlTransport):
            transport.close()


@pytest.fixture(params=[pytest.param(kind, marks=EXTRA_OF[kind]) for kind in OWN_TRANSPORTS])
def make_own_transport(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def build(url: str, **options: Any) -> Any:
        transport = OWN_TRANSPORTS[request.param](url, **options)
        made.append(transport)
        return transport

    yield build
    for transport in made:
        transport.close()


FRAME = frame("jobs-updated")


def test_every_connection_gets_the_frame_once(stand_in: StandIn, make_transport: Any) -> None:
    transport = make_transport(stand_in.url)
    ids = [f"c{n}" for n in range(20)]
    assert transport.post_to_connections(ids, FRAME) == [Outcome.DELIVERED] * 20
    for cid in ids:
        assert stand_in.frames(cid) == [b'{"event":"jobs-updated"}']


def test_gone_is_gone(stand_in: StandIn, make_transport: Any) -> None:
    stand_in.fail(FaultRule(status=410, connection_id="old"))
    transport = make_transport(stand_in.url)
    assert transport.post_to_connections(["old", "new"], FRAME) == [Outcome.GONE, Outcome.DELIVERED]
    assert len(stand_in.requests("old")) == 1  # a 410 is final, never retried


@pytest.mark.parametrize(
    "first",
    [
        FaultRule(status=429),
        FaultRule(status=429, retry_after=1),
        FaultRule(status=500),
        FaultRule(status=503),
        FaultRule(drop=True),
    ],
    ids=["429", "429+1", "500", "503", "drop"],
)
def test_throttling_server_errors_and_dropped_connections_are_retried(
    stand_in: StandIn, make_transport: Any, first: FaultRule
) -> None:
    stand_in.fail(dataclasses.replace(first, connection_id="c1", times=1))
    transport = make_transport(stand_in.url)
    assert transport.post_to_connections(["c1"], FRAME) == [Outcome.DELIVERED]
    assert stand_in.frames("c1") == [FRAME]  # delivered exactly once


def test_retry_after_is_honoured(stand_in: StandIn, make_own_transport: Any) -> None:
    # botocore's retry modes ignore Retry-After; our transports wait as told.
    stand_in.fail(FaultRule(status=429, connection_id="c1", retry_after=1, times=1))
    transport = make_own_transport(stand_in.url, retry=FAST_RETRIES)
    assert transport.post_to_connections(["c1"], FRAME) == [Outcome.DELIVERED]
    first, second = stand_in.requests("c1")
    assert second.at - first.at >= 0.9


def test_a_retry_after_beyond_the_deadline_fails_at_once(stand_in: StandIn, make_own_transport: Any) -> None:
    stand_in.fail(FaultRule(status=429, connection_id="c1", retry_after=30, times=1))
    transport = make_own_transport(stand_in.url, retry=RetryPolicy(deadline=2.0))
    started = time.monotonic()
    assert transport.post_to_connections(["c1"], FRAME) == [Outcome.FAILED]
    assert time.monotonic() - started < 1.5
    assert len(stand_in.requests("c1")) == 1


def test_the_deadline_bounds_a_call_to_a_server_that_never_answers(make_own_transport: Any) -> None:
    """A stand-in that accepts and never answers: the call ends at its deadline with every frame FAILED."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        transport = make_own_transport(url, retry=RetryPolicy(deadline=1.0), request_timeout=5.0)
        started = time.monotonic()
        assert transport.post_to_connections(["c1", "c2", "c3"], FRAME) == [Outcome.FAILED] * 3
        assert 0.9 <= time.monotonic() - started < 3.0


def test_posts_in_flight_at_the_deadline_come_back_with_their_real_outcome(make_transport: Any) -> None:
    """Each post is answered after 200 ms and the call's deadline is 100 ms: the posts already sent are
    DELIVERED, not FAILED (a FAILED frame is handed on and would reach its browser twice)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: Counter[str] = Counter()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(0.2)
            received[self.path.rsplit("/", 1)[-1]] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = make_transport(f"http://127.0.0.1:{server.server_address[1]}")
        started = time.monotonic()
        outcomes = transport.post_to_connections(["c1", "c2", "c3", "c4"], FRAME, deadline=0.1)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert outcomes == [Outcome.DELIVERED] * 4
    assert received == Counter({"c1": 1, "c2": 1, "c3": 1, "c4": 1})
    assert took < 0.1 + IN_FLIGHT_GRACE_SECONDS + 0.5


def test_refreshed_credentials_sign_the_next_call(stand_in: StandIn, make_own_transport: Any) -> None:
    """The Lambda role's credentials rotate: each call signs with the keys botocore hands out then."""
    from datetime import UTC, datetime, timedelta

    from botocore.credentials import RefreshableCredentials

    issued = iter(range(1, 100))

    def refresh() -> dict[str, str]:
        n = next(issued)
        # Within botocore's mandatory refresh window: every get_frozen_credentials() fetches new keys.
        expiry = datetime.now(UTC) + timedelta(minutes=5)
        return {
            "access_key": f"ASIAROLE{n}",
            "secret_key": f"secret-{n}",
            "token": f"token-{n}",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "assume-role")
    transport = make_own_transport(stand_in.url, retry=FAST_RETRIES, credentials=credentials)
    for cid in ("first", "second"):
        assert transport.post_to_connections([cid], FRAME) == [Outcome.DELIVERED]
    keys = []
    for cid in ("first", "second"):
        (seen,) = stand_in.requests(cid)
        headers = {k.lower(): v for k, v in seen.headers.items()}
        access_key = headers["authorization"].split("Credential=")[1].split("/")[0]
        n = access_key.removeprefix("ASIAROLE")
        assert headers["x-amz-security-token"] == f"token-{n}"
        assert verifies(stand_in.url, seen, Credentials(access_key, f"secret-{n}", f"token-{n}"))
        keys.append(access_key)
    assert keys[0] != keys[1]


def test_retries_exhausted_is_failed_not_raised(stand_in: StandIn, make_transport: Any) -> None:
    stand_in.fail(FaultRule(status=503, connection_id="bad"))
    transport = make_transport(stand_in.url)
    assert transport.post_to_connections(["bad", "good"], FRAME) == [Outcome.FAILED, Outcome.DELIVERED]
    assert len(stand_in.requests("bad")) == 5  # 5 attempts in all for both (botocore: 4 retries)
    assert stand_in.frames("bad") == []


def test_a_client_error_is_failed_without_retrying(stand_in: StandIn, make_transport: Any) -> None:
    stand_in.fail(FaultRule(status=403, connection_id="c1", times=1))
    transport = make_transport(stand_in.url)
    assert transport.post_to_connections(["c1"], FRAME) == [Outcome.FAILED]
    assert len(stand_in.requests("c1")) == 1


def test_nothing_listening_is_failed_not_raised(make_transport: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: connection refused
        transport = make_transport(url)
        assert transport.post_to_connections(["c1"], FRAME) == [Outcome.FAILED]


def test_delete_closes_the_connection(stand_in: StandIn, make_transport: Any) -> None:
    stand_in.fail(FaultRule(status=410, connection_id="gone"))
    transport = make_transport(stand_in.url)
    assert transport.delete_connection("live") == Outcome.DELIVERED
    assert transport.delete_connection("gone") == Outcome.GONE
    assert [s.method for s in stand_in.requests("live")] == ["DELETE"]


def verifies(url: str, seen: Seen, credentials: Credentials) -> bool:
    """Whether the request's signature is the one AWS would compute for it with `credentials`."""
    headers = {k.lower(): v for k, v in seen.headers.items()}
    authorization = headers["authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(
        method=seen.method,
        url=url + seen.raw_path,
        data=seen.body,
        headers={name: headers[name] for name in signed if name != "host"},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(credentials.get_frozen_credentials(), "execute-api", "us-east-1")
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return "/us-east-1/execute-api/aws4_request" in authorization and authorization.endswith(
        f"Signature={expected}"
    )


def test_ids_are_url_quoted_and_the_signature_verifies(stand_in: StandIn, make_transport: Any) -> None:
    """The request is signed for execute-api as AWS checks it: recomputing it with the secret matches."""
    cid = "Vx/Ab+c=="  # API Gateway ids are base64-ish: '=' and '/' must be quoted in the path
    transport = make_transport(stand_in.url)
    assert transport.post_to_connections([cid], FRAME) == [Outcome.DELIVERED]
    assert transport.delete_connection(cid) == Outcome.DELIVERED
    post, delete = stand_in.requests(cid)
    credentials = Credentials(TEST_ENV["AWS_ACCESS_KEY_ID"], TEST_ENV["AWS_SECRET_ACCESS_KEY"])
    for seen in (post, delete):
        assert seen.raw_path == "/@connections/Vx%2FAb%2Bc%3D%3D"
        assert verifies(stand_in.url, seen, credentials)
    assert (post.method, post.body, delete.method, delete.body) == ("POST", FRAME, "DELETE", b"")


def test_the_notifier_cleans_gone_rows_and_reports_every_outcome(
    realtime: Any, stand_in: StandIn, make_transport: Any
) -> None:
    for n, cid in enumerate(["a1", "a2", "a3", "a4", "a5", "a6"]):
        realtime.connections.add(Connection(cid, "alice", 1_700_000_000_000 + n))
    realtime.connections.add(Connection("b1", "bob", 1_700_000_000_000))
    stand_in.fail(
        FaultRule(status=410, connection_id="a2"),
        FaultRule(status=500, connection_id="a3"),
        FaultRule(status=429, connection_id="a4", times=1),
        FaultRule(drop=True, connection_id="a5", times=1),
        FaultRule(status=410, connection_id="b1"),
    )
    notifier = Notifier(realtime.connections, make_transport(stand_in.url))
    report = notifier.notify_users(["alice", "bob"], "chat-messages-updated")
    assert report == DeliveryReport(delivered=4, gone=2, failed=1)
    for cid in ("a1", "a4", "a5", "a6"):
        assert stand_in.frames(cid) == [b'{"event":"chat-messages-updated"}']
    # Gone rows are deleted; a failed one stays for the next notify (or its TTL).
    assert realtime.connections.connection_ids_of("alice") == ["a1", "a3", "a4", "a5", "a6"]
    assert realtime.connections.connection_ids_of("bob") == []


@AIOHTTP
def test_the_notifier_posts_concurrently_to_many_users(realtime: Any, stand_in: StandIn) -> None:
    users = [f"u{n}" for n in range(30)]
    for user in users:
        for k in range(3):
            realtime.connections.add(Connection(f"{user}-{k}", user, 1_700_000_000_000 + k))
    stand_in.fail(FaultRule(status=410, connection_id="u3-1"), FaultRule(status=410, connection_id="u7-0"))
    transport = aiohttp_transport(stand_in.url)
    try:
        report = Notifier(realtime.connections, transport).notify_users(users, "jobs-updated")
    finally:
        transport.close()
    assert report == DeliveryReport(delivered=88, gone=2, failed=0)
    assert realtime.connections.connection_ids_of("u3") == ["u3-0", "u3-2"]
    assert len([s for s in stand_in.seen if s.status == "200"]) == 88


def test_connections_are_kept_alive_across_calls(stand_in: StandIn, make_transport: Any) -> None:
    """A warm Lambda's second notify reuses the first one's TCP connection: no new handshake."""
    transport = make_transport(stand_in.url)
    for _ in range(3):
        assert transport.post_to_connections(["c1"], FRAME) == [Outcome.DELIVERED]
    assert len({s.client_port for s in stand_in.requests("c1")}) == 1


def test_calls_made_at_once_from_several_threads_each_deliver(
    stand_in: StandIn, make_own_transport: Any
) -> None:
    """A local server notifies from several request threads at once: no call waits for or breaks another."""
    from concurrent.futures import ThreadPoolExecutor

    transport = make_own_transport(stand_in.url, retry=FAST_RETRIES)
    stand_in.fail(*[FaultRule(status=429, connection_id=f"t{n}-1", times=1) for n in range(8)])
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda n: transport.post_to_connections([f"t{n}-{k}" for k in range(10)], FRAME), range(8)
            )
        )
    assert results == [[Outcome.DELIVERED] * 10] * 8
    assert all(stand_in.frames(f"t{n}-{k}") == [FRAME] for n in range(8) for k in range(10))


def test_when_signing_fails_frames_fail_and_nothing_is_sent(
    stand_in: StandIn, make_own_transport: Any
) -> None:
    class NoCredentials:
        def get_frozen_credentials(self) -> Any:
            raise RuntimeError("credentials could not be refreshed")

    transport = make_own_transport(stand_in.url, credentials=NoCredentials())
    assert transport.post_to_connections(["c1", "c2"], FRAME) == [Outcome.FAILED, Outcome.FAILED]
    assert stand_in.seen == []


@AIOHTTP
def test_per_call_event_loop_mode_delivers_too(stand_in: StandIn) -> None:
    stand_in.fail(FaultRule(status=410, connection_id="c2"))
    transport = AiohttpTransport(stand_in.url, retry=FAST_RETRIES, persistent_loop=False)
    assert transport.post_to_connections(["c1", "c2"], FRAME) == [Outcome.DELIVERED, Outcome.GONE]
    assert transport.post_to_connections(["c1"], FRAME) == [Outcome.DELIVERED]


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://abc123.execute-api.eu-west-1.amazonaws.com/dev", "eu-west-1"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod", "cn-north-1"),
        ("http://127.0.0.1:8001", None),
        ("https://ws.example.com/prod", None),
    ],
)
def test_region_comes_from_the_endpoint(url: str, region: str | None) -> None:
    assert region_of(url) == region


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


@pytest.mark.parametrize("transport", [AiohttpTransport, CurlTransport])
def test_an_empty_endpoint_is_refused(transport: Callable[[str], Any]) -> None:
    with pytest.raises(RuntimeError, match="WEBSOCKET_ENDPOINT"):
        transport("")


def notify_alice(realtime: Any, stand_in: StandIn) -> tuple[DeliveryReport, list[str]]:
    """Notify alice's connections through the shipped transport; the report and the DynamoDB calls made."""
    counting = CountingDynamoDB(realtime.dynamodb)
    store = ConnectionStore(realtime.settings.connections_table, counting)
    transport = aiohttp_transport(stand_in.url)
    try:
        return Notifier(store, transport).notify("alice", "jobs-updated"), counting.calls
    finally:
        transport.close()


@AIOHTTP
@pytest.mark.parametrize("k", [1, 5, 40])
def test_notify_to_k_connections_is_one_query_and_k_posts(realtime: Any, stand_in: StandIn, k: int) -> None:
    for n in range(k):
        realtime.connections.add(Connection(f"a{n}", "alice", 1_700_000_000_000 + n))
    report, calls = notify_alice(realtime, stand_in)
    assert report == DeliveryReport(delivered=k)
    assert calls == ["query"]
    assert [(s.method, s.status) for s in stand_in.seen] == [("POST", "200")] * k


@AIOHTTP
def test_gone_rows_cost_one_batch_write_per_25(realtime: Any, stand_in: StandIn) -> None:
    for n in range(30):
        realtime.connections.add(Connection(f"a{n}", "alice", 1_700_000_000_000 + n))
    stand_in.gone.update(f"a{n}" for n in range(27))
    report, calls = notify_alice(realtime, stand_in)
    assert report == DeliveryReport(delivered=3, gone=27)
    assert calls == ["query", "batch_write_item", "batch_write_item"]
