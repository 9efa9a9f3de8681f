"""DynamoDB throttling and failing calls, injected at botocore's boundary, during `$connect` and notify.

A `before-send` handler on the app's DynamoDB client answers chosen calls with the error
DynamoDB sends (`ProvisionedThroughputExceededException`, 400, or `InternalServerError`, 500)
before they leave the process, so botocore's own retry logic (the app's `standard` mode:
4 retries, 5 attempts, jittered exponential backoff) decides exactly as against AWS, and the
server never sees the call. Only botocore's waits are shortened (`ScaledBackoff`): a throttled
call that is never served asks for about 7 s of backoff on average.
Everything else is real: moto's server over HTTP, the local gateway running the app's WebSocket
handlers, `websockets` clients, Firebase-shaped tokens through firebase-admin, the libcurl transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.endpoint
import pytest
import websockets
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from chalice.test import Client
from chalice_realtime.aws import RETRIES
from chalice_realtime.connections import MAX_CONNECTION_SECONDS, TTL_ATTRIBUTE
from chalice_realtime.notifier import DeliveryReport
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.transports.curl import CurlTransport
from moto.server import ThreadedMotoServer
from websockets.asyncio.client import ClientConnection

import app as app_module
from chalicelib import services as services_module
from chalicelib.jobs.runner import job_message
from chalicelib.services import Services
from chalicelib.settings import Settings
from devserver.gateway import Gateway
from devserver.lambdas import websocket_functions
from infra.tables import create_tables
from tests.conftest import TEST_ENV
from tests.integration.faults_support import notifier_later
from tests.integration.test_local_gateway import RunningGateway
from testsupport.localstack import free_port

pytestmark = pytest.mark.integration

# botocore's attempts per call with the app's retry configuration: `max_attempts` counts retries.
ATTEMPTS = 1 + int(str(RETRIES["max_attempts"]))
FRAME_WAIT = 10.0


@dataclass(frozen=True)
class Error:
    status: int
    code: str
    message: str


THROTTLED = Error(
    400,
    "ProvisionedThroughputExceededException",
    "The level of configured provisioned throughput for the table was exceeded.",
)
INTERNAL = Error(500, "InternalServerError", "Internal server error")


class _Body:
    """The raw body botocore reads an `AWSResponse` from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


@dataclass
class _Rule:
    operation: str
    table: str
    user_id: str | None
    error: Error
    times: int | None


class DynamoDBFaults:
    """Answers matching DynamoDB calls with an error as DynamoDB sends it; botocore retries as usual.

    faults = DynamoDBFaults(client)
    faults.fail("PutItem", "test-connections", error=THROTTLED, times=2)  # then the real call
    faults.answered["PutItem"]  # how many attempts got the error
    """

    def __init__(self, client: Any) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.answered: Counter[str] = Counter()
        client.meta.events.register_first("before-send.dynamodb", self._before_send)

    def fail(
        self,
        operation: str,
        table: str,
        *,
        error: Error = THROTTLED,
        user_id: str | None = None,
        times: int | None = None,
    ) -> None:
        """Fail `operation` on `table` (only queries for `user_id` if given), `times` attempts or forever."""
        with self._lock:
            self._rules.append(_Rule(operation, table, user_id, error, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.answered.clear()

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        body = json.loads(request.body or b"{}")
        values = json.dumps(body.get("ExpressionAttributeValues", {}))
        with self._lock:
            for rule in self._rules:
                if (
                    rule.operation == operation
                    and rule.table == body.get("TableName")
                    and (rule.user_id is None or json.dumps({"S": rule.user_id}) in values)
                    and (rule.times is None or rule.times > 0)
                ):
                    if rule.times is not None:
                        rule.times -= 1
                    self.answered[operation] += 1
                    return _error_response(request.url, rule.error)
        return None


def _error_response(url: str, error: Error) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{error.code}", "message": error.message})
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fault-injected"}
    return AWSResponse(url, error.status, headers, _Body(body.encode()))


class ScaledBackoff:
    """Stands in for the `time` module inside `botocore.endpoint`, the only place botocore waits
    between attempts: it records each backoff botocore's retry handler asks for and waits 1 % of it."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.requested.append(seconds)
        time.sleep(seconds / 100)


@dataclass
class Stand:
    """moto's server, the app's DynamoDB client with the fault injector, the gateway, the app's services."""

    settings: Settings
    dynamodb: Any
    faults: DynamoDBFaults
    gateway: RunningGateway
    services: Services


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"

    def client(service: str, **config: Any) -> Any:
        return boto3.session.Session().client(
            service, endpoint_url=endpoint, region_name="us-east-1", config=Config(**config)
        )

    # Configured as chalice_realtime.aws builds the app's clients: botocore's standard retries.
    dynamodb = client("dynamodb", retries=RETRIES, max_pool_connections=32)
    sns = client("sns")
    create_tables(dynamodb, {k: v for k, v in TEST_ENV.items() if k.endswith("_TABLE")})
    topic_arn = sns.create_topic(Name="test-jobs")["TopicArn"]
    gateway = RunningGateway(
        Gateway(websocket_functions(app_module.app), domain_name="127.0.0.1", stage="local")
    )
    env = {**TEST_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{gateway.port}", "JOBS_TOPIC_ARN": topic_arn}
    settings = Settings.from_env(env)
    transport = CurlTransport(settings.realtime.websocket_endpoint)
    built = Services(settings, dynamodb=dynamodb, sns=sns, transport=transport)
    # Sleeps pass at once (a `report` job runs in milliseconds); each reading is 1 ms on: messages keep order.
    built.clock = FakeClock(time.time(), tick=0.001)
    # Installed for the module, until the gateway has stopped: a `$disconnect` that runs after a test
    # must still find these services, not ones built from the test environment (which names real AWS).
    services_module.use(built)
    try:
        with gateway:
            yield Stand(settings, dynamodb, DynamoDBFaults(dynamodb), gateway, built)
    finally:
        services_module.use(None)
        transport.close()
        moto.stop()


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> ScaledBackoff:
    scaled = ScaledBackoff()
    monkeypatch.setattr(botocore.endpoint, "time", scaled)
    return scaled


@pytest.fixture
def services(stand: Stand, firebase_certs: Any, backoff: ScaledBackoff) -> Iterator[Services]:
    """The app's services on the stand (installed for the gateway's handlers and app.py's), no faults."""
    services_module.use(stand.services)
    stand.faults.clear()
    yield stand.services
    stand.faults.clear()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="chalicelib")
    return caplog


def open_socket(stand: Stand, token: str) -> Any:
    return websockets.connect(stand.gateway.url, subprotocols=["bearer", token], open_timeout=10)  # type: ignore[list-item]


def rows_of(stand: Stand, user_id: str) -> list[str]:
    items = stand.dynamodb.scan(TableName=stand.settings.realtime.connections_table, ConsistentRead=True)[
        "Items"
    ]
    return [item["connection_id"]["S"] for item in items if item.get("user_id", {}).get("S") == user_id]


async def frames_within(socket: ClientConnection, wait: float) -> list[dict[str, Any]]:
    """Every frame the socket receives in the next `wait` seconds."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), left)))
        except TimeoutError:
            break
    return frames


def notified_reports(logs: pytest.LogCaptureFixture) -> list[DeliveryReport]:
    """The delivery report of each notify, as the notifier logged it."""
    return [
        DeliveryReport(r.delivered, r.gone, r.failed)  # type: ignore[attr-defined]
        for r in logs.records
        if r.getMessage() == "notified"
    ]


# ---------------------------------------------------------------- $connect


def test_a_throttled_connect_write_is_retried_by_botocore_and_admitted(
    stand: Stand, services: Services, tokens: TokenFactory
) -> None:
    table = stand.settings.realtime.connections_table
    stand.faults.fail("PutItem", table, error=THROTTLED, times=1)

    async def scenario() -> None:
        async with open_socket(stand, tokens.mint("tom")) as ws:
            assert ws.subprotocol == "bearer"
            await ws.send(json.dumps({"action": "ping"}))
            assert await frames_within(ws, 1.0) == [{"event": "pong"}]
            assert len(rows_of(stand, "tom")) == 1

    asyncio.run(scenario())
    assert stand.faults.answered["PutItem"] == 1  # the second attempt went through


@pytest.mark.parametrize(
    ("operation", "error"),
    [("PutItem", THROTTLED), ("PutItem", INTERNAL), ("Query", INTERNAL)],
    ids=["write-throttled", "write-failing", "cap-lookup-failing"],
)
def test_a_connect_whose_storage_keeps_failing_is_refused_then_admitted_on_retry(
    stand: Stand,
    services: Services,
    tokens: TokenFactory,
    logs: pytest.LogCaptureFixture,
    backoff: ScaledBackoff,
    operation: str,
    error: Error,
) -> None:
    stand.faults.fail(operation, stand.settings.realtime.connections_table, error=error)
    token = tokens.mint("ursula")

    async def refused() -> int:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refusal:
            async with open_socket(stand, token):
                pass
        return int(refusal.value.response.status_code)

    assert asyncio.run(refused()) == 500  # the upgrade is refused: the browser library backs off and retries
    assert stand.faults.answered[operation] == ATTEMPTS  # botocore retried before giving up
    assert len(backoff.requested) == ATTEMPTS - 1  # and backed off before each retry
    assert rows_of(stand, "ursula") == []  # never half-stored
    assert "connect failed to" in logs.text  # to store, or to enforce the cap (its row then removed)

    stand.faults.clear()

    async def retried() -> None:
        async with open_socket(stand, token) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await frames_within(ws, 1.0) == [{"event": "pong"}]
            assert len(rows_of(stand, "ursula")) == 1

    asyncio.run(retried())


# ---------------------------------------------------------------- notify


def test_a_throttled_lookup_is_retried_then_reported_failed_without_costing_others_their_frames(
    stand: Stand, services: Services, tokens: TokenFactory, logs: pytest.LogCaptureFixture
) -> None:
    table = stand.settings.realtime.connections_table

    async def scenario() -> tuple[DeliveryReport, DeliveryReport, list[list[dict[str, Any]]]]:
        async with (
            open_socket(stand, tokens.mint("vera")) as vera_1,
            open_socket(stand, tokens.mint("vera")) as vera_2,
            open_socket(stand, tokens.mint("walt")) as walt,
        ):
            stand.faults.fail("Query", table, user_id="vera", times=1)
            once = await asyncio.to_thread(services.notifier.notify_users, ["vera", "walt"], "throttled-once")
            stand.faults.fail("Query", table, user_id="vera")
            always = await asyncio.to_thread(
                services.notifier.notify_users, ["vera", "walt"], "throttled-always"
            )
            frames = [await frames_within(ws, 1.0) for ws in (vera_1, vera_2, walt)]
            return once, always, frames

    once, always, frames = asyncio.run(scenario())
    assert once == DeliveryReport(delivered=3, gone=0, failed=0)  # retried by botocore, then delivered
    assert always == DeliveryReport(delivered=1, gone=0, failed=1)  # vera's lookup counted, walt served
    assert frames == [
        [{"event": "throttled-once"}],
        [{"event": "throttled-once"}],
        [{"event": "throttled-once"}, {"event": "throttled-always"}],
    ]
    assert stand.faults.answered["Query"] == 1 + ATTEMPTS
    failures = [r for r in logs.records if r.getMessage() == "connection lookup failed"]
    assert [r.user_id for r in failures] == ["vera"]  # type: ignore[attr-defined]
    assert "ProvisionedThroughputExceededException" in logs.text


def test_the_job_lambda_completes_and_reports_when_lookups_fail(
    stand: Stand, services: Services, tokens: TokenFactory, logs: pytest.LogCaptureFixture
) -> None:
    job = services.jobs.submit("xena", {"kind": "report", "params": {"seconds": 2}})

    async def scenario() -> list[dict[str, Any]]:
        async with open_socket(stand, tokens.mint("xena")) as ws:
            logs.clear()
            stand.faults.fail(
                "Query", stand.settings.realtime.connections_table, error=INTERNAL, user_id="xena"
            )
            event = Client(app_module.app).events.generate_sns_event(message=job_message(job))
            await asyncio.to_thread(app_module.run_job, event, None)  # returns: the batch is not lost
            return await frames_within(ws, 0.5)

    frames = asyncio.run(scenario())
    finished = services.jobs.get("xena", job.job_id)
    assert finished is not None and finished.status == "succeeded" and finished.progress == 100
    assert frames == []  # nobody could be looked up
    reports = notified_reports(logs)
    assert reports and all(report == DeliveryReport(failed=1) for report in reports)
    lookups_failed = [r for r in logs.records if r.getMessage() == "connection lookup failed"]
    assert len(lookups_failed) == len(reports)
    assert stand.faults.answered["Query"] == ATTEMPTS * len(reports)


def test_a_chat_message_is_stored_and_answered_201_when_notify_lookups_are_throttled(
    stand: Stand, services: Services, tokens: TokenFactory, logs: pytest.LogCaptureFixture
) -> None:
    table = stand.settings.realtime.connections_table
    headers = {"Authorization": f"Bearer {tokens.mint('yuri')}", "Content-Type": "application/json"}

    async def scenario() -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
        async with open_socket(stand, tokens.mint("zoe")) as zoe:
            with Client(app_module.app) as client:
                stand.faults.fail("Query", table)  # every connection lookup, both users
                throttled = await asyncio.to_thread(
                    client.http.post,
                    "/messages",
                    headers=headers,
                    body=json.dumps({"to": "zoe", "text": "while throttled"}),
                )
                during = await frames_within(zoe, 0.5)
                stand.faults.clear()
                recovered = await asyncio.to_thread(
                    client.http.post,
                    "/messages",
                    headers=headers,
                    body=json.dumps({"to": "zoe", "text": "after"}),
                )
                after = await frames_within(zoe, 1.0)
                listed = await asyncio.to_thread(client.http.get, "/messages?with=zoe", headers=headers)
        assert throttled.status_code == 201 and recovered.status_code == 201
        return [m["text"] for m in json.loads(listed.body)["messages"]], during, after

    texts, during, after = asyncio.run(scenario())
    assert texts == ["after", "while throttled"]  # both stored, newest first
    assert during == [] and after == [{"event": "chat-messages-updated"}]
    reports = notified_reports(logs)
    assert reports[0] == DeliveryReport(failed=2)  # the recipient's and the sender's lookups
    assert reports[1] == DeliveryReport(delivered=1)
    assert {r.user_id for r in logs.records if r.getMessage() == "connection lookup failed"} == {  # type: ignore[attr-defined]
        "yuri",
        "zoe",
    }


# ---------------------------------------------------------------- $disconnect lost


def test_a_row_whose_disconnect_failed_carries_the_ttl_and_goes_on_the_first_410(
    stand: Stand, services: Services, tokens: TokenFactory, logs: pytest.LogCaptureFixture
) -> None:
    """`$disconnect` is best effort on AWS; here its DeleteItem keeps failing, so the row stays behind."""
    table = stand.settings.realtime.connections_table
    stand.faults.fail("DeleteItem", table, error=INTERNAL)

    async def scenario() -> None:
        async with open_socket(stand, tokens.mint("olga")) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await frames_within(ws, 1.0) == [{"event": "pong"}]
        deadline = time.monotonic() + FRAME_WAIT
        while stand.faults.answered["DeleteItem"] < ATTEMPTS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert stand.faults.answered["DeleteItem"] == ATTEMPTS  # botocore retried, then the handler raised
    assert "$disconnect handler ws_disconnect raised" in logs.text  # on AWS: the event is lost
    items = stand.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    (row,) = [item for item in items if item.get("user_id", {}).get("S") == "olga"]
    lifetime = int(row[TTL_ATTRIBUTE]["N"]) - int(row["connected_at"]["N"]) // 1000
    assert MAX_CONNECTION_SECONDS < lifetime <= MAX_CONNECTION_SECONDS + 15 * 60  # DynamoDB expires it
    ttl = stand.dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}

    # Sooner than the TTL: the first notify meets 410 from the gateway. Right away the row is kept (a 410
    # for a row this young may come from a connect still running); half a minute on, it is deleted.
    assert services.notifier.notify("olga", "jobs-updated") == DeliveryReport(gone=1)
    assert len(rows_of(stand, "olga")) == 1
    later = notifier_later(services)
    assert later.notify("olga", "jobs-updated") == DeliveryReport(gone=1)
    assert rows_of(stand, "olga") == []
    assert later.notify("olga", "jobs-updated") == DeliveryReport()
