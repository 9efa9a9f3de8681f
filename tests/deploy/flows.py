"""Drive every Lambda function of the app through its code paths against moto, set up as the stack.

Each function runs with the settings its packaged environment gives it (table
names, topic, endpoint, SSM parameter, all rendered by `FakeStack`), so the AWS
calls recorded here are the ones the deployed function would make, on the
resources the template names. A function in the template without a flow here
fails the deployment tests: add its flow when you add the function.

A handler has several flows, one per code path (`@flow("ws_connect")` on each):
refusals, limits, failures of the AWS calls it makes, duplicates, gone
connections. The policy test then holds every call of every path against the
function's role, so a path that calls something its role does not allow fails
here, not in production. A new path is one more decorated function.

Paths every notifying flow covers: delivery to a live connection, and a
connection that is gone (410), whose row is then deleted. Some also have a
connection whose post is refused: its frame is handed to the fan-out queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from chalice.test import Client
from chalice_realtime.connections import Connection
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import FaultRule
from chalice_realtime.testing.management_api import received as frames_posted
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport

from chalicelib import services as services_module
from chalicelib.settings import Settings
from infra.tables import create_tables
from tests.deploy.recording import CallRecorder
from tests.deploy.stack import FakeStack
from testsupport.aws_clients import clear_clients

STRIPE_SECRET = "whsec_deploy_test"


@dataclass
class Deployment:
    """moto holding this stack's tables, topic and parameter; runs handlers as a given function."""

    stack: FakeStack
    recorder: CallRecorder
    tokens: TokenFactory
    management_api: Any
    client: Client
    clock: FakeClock = field(default_factory=lambda: FakeClock(time.time(), tick=0.001))
    routes_called: set[tuple[str, str]] = field(default_factory=set)
    functions_run: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)  # AWS operation -> error code it answers
    refused: list[FaultRule] = field(default_factory=list)

    def prepare(self) -> None:
        """Create what the stack would hold before any function runs (nothing is recorded)."""
        env = self.stack.environment("APIHandler")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        tables = {k: r["Properties"] for k, r in self.stack.of_type("AWS::DynamoDB::Table").items()}
        create_tables(dynamodb, {k: v for k, v in env.items() if k.endswith("_TABLE")}, tables)
        topic_name = env["JOBS_TOPIC_ARN"].rsplit(":", 1)[1]
        boto3.client("sns", region_name="us-east-1").create_topic(Name=topic_name)
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=env["STRIPE_WEBHOOK_SECRET_PARAM"], Value=STRIPE_SECRET, Type="SecureString"
        )
        self.recorder.websocket_endpoint = env["WEBSOCKET_ENDPOINT"]
        sqs = boto3.client("sqs", region_name="us-east-1")
        sqs.create_queue(QueueName=env["FANOUT_QUEUE_URL"].rsplit("/", 1)[1])

    def settings_of(self, function: str) -> Settings:
        return Settings.from_env(self.stack.environment(function))

    @contextmanager
    def as_function(self, function: str) -> Iterator[Any]:
        """Run the block as `function`: its settings, fresh clients (as a cold Lambda), its calls recorded."""
        clear_clients()
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        for client in (dynamodb, sns):
            client.meta.events.register("before-call", self._fail_if_asked)
        settings = self.settings_of(function)
        built = services_module.Services(
            settings,
            dynamodb=dynamodb,
            sns=sns,
            # The boto3 transport: its calls pass the botocore hooks the recorder listens on and reach moto
            # in-process. The shipped one makes the same signed calls (realtime/tests/test_transport.py).
            transport=Boto3ThreadPoolTransport(settings.realtime.websocket_endpoint),
        )
        built.clock = self.clock
        services_module.use(built)
        self.functions_run.add(function)
        try:
            with self.recorder.running(function):
                yield built
        finally:
            services_module.use(None)

    @contextmanager
    def failing(self, operation: str, code: str = "InternalServerError") -> Iterator[None]:
        """Inside the block, each `operation` call (`"Query"`, `"Publish"`) of the running function fails
        with `code`, after it was recorded: the function still needed the permission to make it."""
        self.failures[operation] = code
        try:
            yield
        finally:
            del self.failures[operation]

    def _fail_if_asked(self, model: Any, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        code = self.failures.get(model.name)
        if code is None:
            return None
        status = 500 if code == "InternalServerError" else 400
        # A response from a `before-call` handler is the call's answer (no retries): botocore raises it.
        http = AWSResponse("https://failing.invalid", status, {}, None)
        return http, {"Error": {"Code": code, "Message": "failing on purpose"}, "ResponseMetadata": {}}

    def invoke(self, handler: str, event: dict[str, Any]) -> Any:
        with self.as_function(self.stack.function_for(handler)):
            return self.client.lambda_.invoke(handler, event).payload

    def rest(
        self, method: str, route: str, *, user: str | None = None, path: str | None = None, **kwargs: Any
    ) -> Any:
        """Call a REST route as the REST function (its authorizer runs inline, as API Gateway's would)."""
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens.mint(user)}"
        if isinstance(kwargs.get("body"), dict):
            headers["Content-Type"] = "application/json"
            kwargs["body"] = json.dumps(kwargs["body"])
        self.routes_called.add((route, method))
        with self.as_function(self.stack.function_for("app")):
            response = getattr(self.client.http, method.lower())(path or route, headers=headers, **kwargs)
        return response

    def connect(
        self,
        user_id: str,
        *connection_ids: str,
        gone: bool = False,
        refused: bool = False,
        connected_at: int | None = None,
    ) -> None:
        """Rows for live connections of `user_id` (recorded as nobody's); `gone` ones answer 410, `refused`
        ones 403 (a frame the notifier hands to the fan-out workers).

        `connected_at` (epoch ms) orders them among the user's connections; by default now, and for gone
        ones an hour ago (a 410 for a younger row may be a connect still in flight: its row is kept).
        """
        store = services_module.Services(
            self.settings_of("APIHandler"), dynamodb=boto3.client("dynamodb", region_name="us-east-1")
        ).realtime.connections
        now_ms = int(time.time() * 1000)
        for cid in connection_ids:
            store.add(Connection(cid, user_id, connected_at or (now_ms - 3_600_000 if gone else now_ms)))
            if gone:
                self.management_api.gone.add(cid)
            if refused:
                self.refused.append(FaultRule(status=403, connection_id=cid))
                self.management_api.faults.replace(self.refused)

    def connect_many(self, user_id: str, connection_ids: list[str]) -> None:
        """Rows for many live connections of `user_id`, 25 per BatchWriteItem (recorded as nobody's)."""
        table = self.settings_of("APIHandler").realtime.connections_table
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        now_ms = int(time.time() * 1000)
        for start in range(0, len(connection_ids), 25):
            rows = connection_ids[start : start + 25]
            dynamodb.batch_write_item(
                RequestItems={
                    table: [
                        {
                            "PutRequest": {
                                "Item": {
                                    "connection_id": {"S": cid},
                                    "user_id": {"S": user_id},
                                    "connected_at": {"N": str(now_ms + start + n)},
                                    "expires_at": {"N": str(now_ms // 1000 + 7800)},
                                }
                            }
                        }
                        for n, cid in enumerate(rows)
                    ]
                }
            )

    def received(self, connection_id: str) -> list[dict[str, str]]:
        return frames_posted(self.management_api, connection_id)

    def fanout_shards(self) -> list[dict[str, Any]]:
        """The shards on the fan-out queue, taken off it (as a worker would)."""
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = self.stack.environment("APIHandler")["FANOUT_QUEUE_URL"]
        shards = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                shards.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return shards

    def connection_rows(self) -> set[str]:
        table = self.settings_of("APIHandler").realtime.connections_table
        items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table)["Items"]
        return {item["connection_id"]["S"] for item in items}


Flow = Callable[[Deployment], None]
FLOWS: dict[str, list[Flow]] = {}


def flow(handler: str) -> Callable[[Flow], Flow]:
    """Register one path through the function whose handler is `app.<handler>` (they run in order)."""

    def register(function: Flow) -> Flow:
        FLOWS.setdefault(handler, []).append(function)
        return function

    return register


def expect(response: Any, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.body)
    return json.loads(response.body) if response.body else None


# ---------------------------------------------------------------- REST


@flow("app")
def core_routes(d: Deployment) -> None:
    expect(d.rest("GET", "/health"), 200)
    assert expect(d.rest("GET", "/me", user="alice"), 200) == {"user_id": "alice"}
    expect(d.rest("GET", "/me", headers={"Authorization": "Bearer not-a-token"}), 403)  # the Deny


@flow("app")
def chat(d: Deployment) -> None:
    if ("/messages", "POST") not in {(r, m) for r, methods in _app_routes().items() for m in methods}:
        return
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    d.connect("bob", "bob-live")
    d.connect("bob", "bob-gone", gone=True)
    d.connect("bob", "bob-refused", refused=True)
    expect(d.rest("POST", "/messages", user="alice", body={"to": "bob", "text": "hi"}), 201)
    assert d.received("bob-live") == [{"event": "chat-messages-updated"}]
    assert "bob-gone" not in d.connection_rows()
    assert [list(shard["connections"]) for shard in d.fanout_shards()] == [["bob-refused"]]
    page = expect(d.rest("GET", "/messages", user="bob", path="/messages?with=alice"), 200)
    assert [m["text"] for m in page["messages"]] == ["hi"]
    assert expect(d.rest("GET", "/messages/unread-count", user="bob"), 200)["unread"] == 1
    expect(d.rest("POST", "/messages/read", user="bob", body={"with": "alice"}), 200)


@flow("app")
def payments(d: Deployment) -> None:
    if "/webhooks/stripe" not in _app_routes():
        return
    from testsupport.stripe_events import build_test_event, signed_delivery

    d.connect("carol", "carol-live")
    d.connect("carol", "carol-gone", gone=True)
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "carol"), STRIPE_SECRET)
    expect(d.rest("POST", "/webhooks/stripe", headers=headers, body=body.encode()), 200)
    assert d.received("carol-live") == [{"event": "payments-updated"}]
    assert "carol-gone" not in d.connection_rows()
    listed = expect(d.rest("GET", "/payments", user="carol"), 200)
    assert len(listed["payments"]) == 1


@flow("app")
def stripe_duplicates_and_refusals(d: Deployment) -> None:
    """A redelivered event, a failure after the success, an unhandled type, a bad signature: no notify."""
    if "/webhooks/stripe" not in _app_routes():
        return
    from testsupport.stripe_events import build_test_event, signed_delivery

    d.connect("chuck", "chuck-live")
    intent = "pi_deploytest000000000000001"
    succeeded = build_test_event("payment_intent.succeeded", "chuck", object_id=intent)
    failed_later = build_test_event(
        "payment_intent.payment_failed", "chuck", object_id=intent, created=succeeded["created"] - 60
    )
    answers = []
    for event in (succeeded, succeeded, failed_later, build_test_event("customer.created", "chuck")):
        body, headers = signed_delivery(event, STRIPE_SECRET)
        answers.append(expect(d.rest("POST", "/webhooks/stripe", headers=headers, body=body.encode()), 200))
    assert [a["outcome"] for a in answers] == ["recorded", "duplicate", "stale", "ignored"]
    body, headers = signed_delivery(succeeded, "whsec_not_the_secret")
    expect(d.rest("POST", "/webhooks/stripe", headers=headers, body=body.encode()), 400)
    assert d.received("chuck-live") == [{"event": "payments-updated"}]  # once, for the one recorded
    assert len(expect(d.rest("GET", "/payments", user="chuck"), 200)["payments"]) == 1


@flow("app")
def jobs(d: Deployment) -> None:
    if "/jobs" not in _app_routes():
        return
    d.connect("frank", "frank-live")
    d.connect("frank", "frank-gone", gone=True)
    request = {"kind": "report", "params": {"seconds": 2}}
    job = expect(d.rest("POST", "/jobs", user="frank", body=request), 202)
    assert d.received("frank-live") == []  # queued: the runner notifies once it starts
    assert expect(d.rest("GET", "/jobs", user="frank"), 200)["jobs"][0]["job_id"] == job["job_id"]
    d.clock.advance(3 * 3600)  # never delivered: the read retires it as stale, notifying the owner
    shown = expect(d.rest("GET", "/jobs/{job_id}", user="frank", path=f"/jobs/{job['job_id']}"), 200)
    assert shown["status"] == "failed"
    assert d.received("frank-live") == [{"event": "jobs-updated"}]
    assert "frank-gone" not in d.connection_rows()


@flow("app")
def jobs_refused_and_unqueueable(d: Deployment) -> None:
    """Bad input, someone else's job, and a publish that fails: the job is marked failed, the owner told."""
    if "/jobs" not in _app_routes():
        return
    d.connect("ivan", "ivan-live")
    expect(d.rest("POST", "/jobs", user="ivan", body={"kind": "no-such-kind"}), 400)
    with d.failing("Publish"):
        expect(d.rest("POST", "/jobs", user="ivan", body={"kind": "report", "params": {"seconds": 1}}), 503)
    (job,) = expect(d.rest("GET", "/jobs", user="ivan"), 200)["jobs"]
    assert job["status"] == "failed"
    assert d.received("ivan-live") == [{"event": "jobs-updated"}]
    expect(d.rest("GET", "/jobs/{job_id}", user="judy", path=f"/jobs/{job['job_id']}"), 404)


@flow("app")
def jobs_limited_and_cancelled(d: Deployment) -> None:
    """The active-jobs limit (a 429 whose job is withdrawn), cancel of a queued job (owner notified),
    of someone else's (404) and of a finished one (409), and POST /jobs past its rate (429, no job)."""
    if "/jobs/{job_id}/cancel" not in _app_routes():
        return
    d.connect("kate", "kate-live")
    request = {"kind": "report", "params": {"seconds": 1}}
    limit = d.settings_of("APIHandler").max_active_jobs_per_user
    queued = [expect(d.rest("POST", "/jobs", user="kate", body=request), 202)["job_id"] for _ in range(limit)]
    expect(d.rest("POST", "/jobs", user="kate", body=request), 429)
    assert len(expect(d.rest("GET", "/jobs", user="kate"), 200)["jobs"]) == limit
    cancel = "/jobs/{job_id}/cancel"
    answer = expect(d.rest("POST", cancel, user="kate", path=f"/jobs/{queued[0]}/cancel"), 202)
    assert answer == {"job_id": queued[0], "status": "cancelled"}
    assert d.received("kate-live") == [{"event": "jobs-updated"}]
    expect(d.rest("POST", cancel, user="mallory", path=f"/jobs/{queued[1]}/cancel"), 404)
    d.clock.advance(3 * 3600)  # never delivered: failed as stale when read
    expect(d.rest("GET", "/jobs", user="kate"), 200)
    expect(d.rest("POST", cancel, user="kate", path=f"/jobs/{queued[1]}/cancel"), 409)
    rate = d.settings_of("APIHandler").jobs_rate_limit
    d.clock.advance(rate.seconds)  # a fresh window
    for _ in range(rate.requests):
        expect(d.rest("POST", "/jobs", user="liam", body={"kind": "no-such-kind"}), 400)
    expect(d.rest("POST", "/jobs", user="liam", body=request), 429)
    assert expect(d.rest("GET", "/jobs", user="liam"), 200)["jobs"] == []


@flow("app")
def messages_limited(d: Deployment) -> None:
    """POST /messages past its rate: a 429, no message, no notification."""
    d.connect("nina", "nina-live")
    rate = d.settings_of("APIHandler").messages_rate_limit
    d.clock.advance(rate.seconds)  # a fresh window
    for _ in range(rate.requests):
        expect(d.rest("POST", "/messages", user="olaf", body={"to": "olaf", "text": "me"}), 400)
    expect(d.rest("POST", "/messages", user="olaf", body={"to": "nina", "text": "hi"}), 429)
    assert d.received("nina-live") == []


@flow("app")
def jobs_of_the_stage_shared_fairly(d: Deployment) -> None:
    """The stage's job limit (429 for anyone once full), fair share past half of it (429 for a user's
    second job, a new user still admitted), and the request counters failing (503, nothing done)."""
    if "/jobs/{job_id}/cancel" not in _app_routes():
        return
    request = {"kind": "report", "params": {"seconds": 1}}
    cap = d.settings_of("APIHandler").max_active_jobs
    admitted: list[tuple[str, str]] = []
    for n in range(cap + 1):  # one job per user until the stage is full (earlier flows may hold some)
        response = d.rest("POST", "/jobs", user=f"crowd{n}", body=request)
        if response.status_code == 429:
            assert "jobs at once" in json.loads(response.body)["Message"]
            break
        admitted.append((f"crowd{n}", expect(response, 202)["job_id"]))
    else:
        raise AssertionError(f"{cap + 1} jobs admitted on a stage of {cap}")
    cancel = "/jobs/{job_id}/cancel"
    for user, job_id in admitted[: len(admitted) // 2]:  # back under the limit, still past half of it
        expect(d.rest("POST", cancel, user=user, path=f"/jobs/{job_id}/cancel"), 202)
    busy = d.rest("POST", "/jobs", user=admitted[-1][0], body=request)
    assert "one active job per user" in expect(busy, 429)["Message"]
    expect(d.rest("POST", "/jobs", user="newcomer", body=request), 202)
    with d.failing("UpdateItem"):  # the rate counter is the route's first write
        expect(d.rest("POST", "/messages", user="pia", body={"to": "nina", "text": "hi"}), 503)


def _app_routes() -> dict[str, list[str]]:
    from app import app

    return {path: list(methods) for path, methods in app.routes.items()}


# ---------------------------------------------------------------- authorizer


@flow("realtime_auth")
def authorizer(d: Deployment) -> None:
    event = {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {d.tokens.mint('alice')}",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:restdevapi/api/GET/me",
    }
    answer = d.invoke("realtime_auth", event)
    assert answer["principalId"] == "alice"


@flow("realtime_auth")
def authorizer_refusal(d: Deployment) -> None:
    event = {
        "type": "TOKEN",
        "authorizationToken": "Bearer not-a-token",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:restdevapi/api/GET/me",
    }
    statement = d.invoke("realtime_auth", event)["policyDocument"]["Statement"]
    assert all(s["Effect"] == "Deny" or not s.get("Resource") for s in statement)


# ---------------------------------------------------------------- websocket


def _connect_as(d: Deployment, user_id: str | None, connection_id: str) -> int:
    """`$connect` of `connection_id` presenting a token of `user_id` (None: no token); its status."""
    headers = {"Sec-WebSocket-Protocol": f"bearer, {d.tokens.mint(user_id)}"} if user_id else {}
    answer = d.invoke("ws_connect", websocket_event("$connect", connection_id, headers=headers))
    return int(answer["statusCode"])


def _cap(d: Deployment) -> int:
    return d.settings_of(d.stack.function_for("ws_connect")).realtime.max_connections_per_user


@flow("ws_connect")
def ws_connect(d: Deployment) -> None:
    d.connect("dave", "dave-0", gone=True, connected_at=int(time.time() * 1000) - 3_600_000)
    d.connect("dave", *[f"dave-{n}" for n in range(1, _cap(d))])
    assert _connect_as(d, "dave", "dave-new") == 200
    rows = d.connection_rows()
    # The oldest, beyond the cap, was closed (410: already gone) and forgotten.
    assert "dave-new" in rows and "dave-0" not in rows


@flow("ws_connect")
def ws_connect_refused_without_a_valid_token(d: Deployment) -> None:
    assert _connect_as(d, None, "nobody-1") == 401
    headers = {"Sec-WebSocket-Protocol": "bearer, not-a-token"}
    forged = websocket_event("$connect", "nobody-2", headers=headers)
    assert d.invoke("ws_connect", forged)["statusCode"] == 401
    assert not {"nobody-1", "nobody-2"} & d.connection_rows()


@flow("ws_connect")
def ws_connect_refused_beyond_the_cap(d: Deployment) -> None:
    """`cap` connections newer than this one were admitted meanwhile: 429, and its own row is deleted."""
    later = int(time.time() * 1000) + 60_000
    d.connect("mallory", *[f"mallory-{n}" for n in range(_cap(d))], connected_at=later)
    assert _connect_as(d, "mallory", "mallory-late") == 429
    assert "mallory-late" not in d.connection_rows()


@flow("ws_connect")
def ws_connect_refused_when_the_store_fails(d: Deployment) -> None:
    """500 whether the row could not be written or the cap could not be enforced after it was."""
    with d.failing("PutItem"):
        assert _connect_as(d, "oscar", "oscar-1") == 500
    with d.failing("Query"):
        assert _connect_as(d, "oscar", "oscar-2") == 500
    assert not {"oscar-1", "oscar-2"} & d.connection_rows()


@flow("ws_message")
def ws_message(d: Deployment) -> None:
    d.connect("erin", "erin-1")
    event = websocket_event("$default", "erin-1", body='{"action": "ping"}')
    assert d.invoke("ws_message", event)["statusCode"] == 200
    assert d.received("erin-1") == [{"event": "pong"}]
    for body in ("not json", '{"action": "subscribe"}'):  # ignored
        assert d.invoke("ws_message", websocket_event("$default", "erin-1", body=body))["statusCode"] == 200
    assert d.received("erin-1") == [{"event": "pong"}]


@flow("ws_message")
def ws_message_from_a_gone_connection(d: Deployment) -> None:
    d.connect("erin", "erin-gone", gone=True)
    event = websocket_event("$default", "erin-gone", body='{"action": "ping"}')
    assert d.invoke("ws_message", event)["statusCode"] == 200


@flow("ws_disconnect")
def ws_disconnect(d: Deployment) -> None:
    d.connect("erin", "erin-2")
    for _ in range(2):  # the second time its row is already gone
        assert d.invoke("ws_disconnect", websocket_event("$disconnect", "erin-2"))["statusCode"] == 200
    assert "erin-2" not in d.connection_rows()


# ---------------------------------------------------------------- rooms and topics


def _ws(d: Deployment, connection_id: str, action: str, topic: str) -> None:
    body = json.dumps({"action": action, "topic": topic})
    assert d.invoke("ws_message", websocket_event("$default", connection_id, body=body))["statusCode"] == 200


def _stale_subscription(
    d: Deployment, user_id: str, connection_id: str, topic: str, *, refused: bool = False
) -> None:
    """A subscription of a connection that died an hour ago without `$disconnect` (recorded as nobody's);
    with `refused`, one whose posts are refused instead (403), so its frames go to the fan-out workers."""
    from chalice_realtime.subscriptions import Subscription, SubscriptionStore

    d.connect(
        user_id,
        connection_id,
        gone=not refused,
        refused=refused,
        connected_at=int(time.time() * 1000) - 3_600_000,
    )
    table = d.settings_of("APIHandler").realtime.topics_table
    store = SubscriptionStore(table, boto3.client("dynamodb", region_name="us-east-1"))
    store.add(Subscription(topic, user_id, connection_id, int(time.time() * 1000) - 3_600_000))


@flow("app")
def rooms(d: Deployment) -> None:
    if "/rooms" not in _app_routes():
        return
    room_id = expect(d.rest("POST", "/rooms", user="rita", body={"name": "standup"}), 201)["room_id"]
    topic = f"room:{room_id}"
    assert [r["room_id"] for r in expect(d.rest("GET", "/rooms", user="rita"), 200)["rooms"]] == [room_id]
    expect(
        d.rest(
            "POST",
            "/rooms/{room_id}/members",
            user="rita",
            path=f"/rooms/{room_id}/members",
            body={"user_id": "sam"},
        ),
        200,
    )
    expect(d.rest("GET", "/rooms/{room_id}", user="sam", path=f"/rooms/{room_id}"), 200)
    # A member's subscribe meets another's dead socket in the presence frame it sets off (the 410 path), and
    # a socket whose post is refused: that frame goes on to the fan-out workers.
    _stale_subscription(d, "vic", "vic-old", topic)
    _stale_subscription(d, "wes", "wes-refused", topic, refused=True)
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    d.connect("sam", "sam-1")
    _ws(d, "sam-1", "subscribe", topic)
    assert {"event": "subscribed", "topic": topic} in d.received("sam-1")
    assert "vic-old" not in d.connection_rows()
    handed_on = d.fanout_shards()
    # Its presence frames (the subscribe's, and the one the 410 set off) went on for the refused socket.
    assert {(s["topic"], tuple(c for c, _, _ in s["subscribers"])) for s in handed_on} == {
        (topic, ("wes-refused",))
    }
    d.connect("mallory", "mallory-ws")
    _ws(d, "mallory-ws", "subscribe", topic)
    assert d.received("mallory-ws") == [{"event": "subscribe-refused", "topic": topic}]
    expect(
        d.rest(
            "POST",
            "/rooms/{room_id}/messages",
            user="rita",
            path=f"/rooms/{room_id}/messages",
            body={"text": "hi"},
        ),
        201,
    )
    assert {"event": "room-messages-updated", "topic": topic} in d.received("sam-1")
    expect(d.rest("GET", "/rooms/{room_id}/messages", user="sam", path=f"/rooms/{room_id}/messages"), 200)
    assert expect(
        d.rest("GET", "/rooms/{room_id}/presence", user="sam", path=f"/rooms/{room_id}/presence"), 200
    ) == {"users": ["sam"]}
    _ws(d, "sam-1", "unsubscribe", topic)
    _ws(d, "sam-1", "subscribe", topic)
    expect(
        d.rest(
            "DELETE", "/rooms/{room_id}/members/{user_id}", user="rita", path=f"/rooms/{room_id}/members/sam"
        ),
        200,
    )
    assert d.received("sam-1")[-1] == {"event": "unsubscribed", "topic": topic}


@flow("ws_disconnect")
def ws_disconnect_ends_subscriptions(d: Deployment) -> None:
    """The presence frame a disconnect sets off meets another member's dead socket (the 410 path)."""
    room_id = expect(d.rest("POST", "/rooms", user="tess", body={"name": "night shift"}), 201)["room_id"]
    topic = f"room:{room_id}"
    d.connect("tess", "tess-1")
    _ws(d, "tess-1", "subscribe", topic)
    _stale_subscription(d, "ulla", "ulla-old", topic)
    _stale_subscription(d, "xena", "xena-refused", topic, refused=True)
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    assert d.invoke("ws_disconnect", websocket_event("$disconnect", "tess-1"))["statusCode"] == 200
    assert "ulla-old" not in d.connection_rows()
    # The presence frame the refused socket did not take went on to the fan-out workers.
    assert {c for s in d.fanout_shards() for c, _, _ in s["subscribers"]} == {"xena-refused"}


# ---------------------------------------------------------------- jobs


def _submitted_job(d: Deployment, owner: str, request: dict[str, Any]) -> str:
    """Queue a job through the REST function; the SNS message its publish carried."""
    from chalicelib.jobs.runner import job_message

    job = expect(d.rest("POST", "/jobs", user=owner, body=request), 202)
    stored = services_module.Services(
        d.settings_of("APIHandler"), dynamodb=boto3.client("dynamodb", region_name="us-east-1")
    ).job_store.get(owner, job["job_id"])
    assert stored is not None
    return job_message(stored)


@flow("run_job")
def run_job(d: Deployment) -> None:
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    d.connect("grace", "grace-live")
    d.connect("grace", "grace-gone", gone=True)
    d.connect("grace", "grace-refused", refused=True)
    for request in ({"kind": "report", "params": {"seconds": 2}}, {"kind": "fail", "params": {}}):
        message = _submitted_job(d, "grace", request)
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))  # a redelivery
    listed = expect(d.rest("GET", "/jobs", user="grace"), 200)["jobs"]
    assert sorted(job["status"] for job in listed) == ["failed", "succeeded"]
    assert {"event": "jobs-updated"} in d.received("grace-live")
    assert "grace-gone" not in d.connection_rows()
    assert {c for shard in d.fanout_shards() for c in shard["connections"]} == {"grace-refused"}


@flow("run_job")
def run_job_cancelled_while_running(d: Deployment) -> None:
    """The owner cancels while the job runs: its next progress write finds it, it stops as `cancelled`."""
    d.connect("pete", "pete-live")
    message = _submitted_job(d, "pete", {"kind": "report", "params": {"seconds": 5}})
    job_id = json.loads(message)["job_id"]
    cancel_at = d.clock.now() + 2.5
    sleep = d.clock.sleep

    def cancel_midway(seconds: float) -> None:
        sleep(seconds)
        if d.clock.now() >= cancel_at and not cancelled:
            cancelled.append(
                expect(
                    d.rest("POST", "/jobs/{job_id}/cancel", user="pete", path=f"/jobs/{job_id}/cancel"), 202
                )
            )

    cancelled: list[Any] = []
    d.clock.sleep = cancel_midway  # type: ignore[method-assign]
    try:
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))
    finally:
        del d.clock.sleep
    assert cancelled == [{"job_id": job_id, "status": "running"}]
    shown = expect(d.rest("GET", "/jobs/{job_id}", user="pete", path=f"/jobs/{job_id}"), 200)
    assert shown["status"] == "cancelled"
    assert d.received("pete-live")[-1] == {"event": "jobs-updated"}


@flow("run_job")
def run_job_messages_that_are_not_jobs(d: Deployment) -> None:
    """A malformed message and one naming no stored job are dropped without running anything."""
    from chalicelib.jobs.model import new_job_id

    unknown = json.dumps({"owner": "grace", "job_id": new_job_id(d.clock.now())})
    for message in ("not json", unknown):
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))


@flow("sweep_stale_jobs")
def sweep_stale_jobs(d: Deployment) -> None:
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    d.connect("heidi", "heidi-live")
    d.connect("heidi", "heidi-gone", gone=True)
    d.connect("heidi", "heidi-refused", refused=True)
    _submitted_job(d, "heidi", {"kind": "report", "params": {"seconds": 1}})
    d.clock.advance(3 * 3600)  # its SNS delivery never ran it: stale
    d.invoke("sweep_stale_jobs", d.client.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert expect(d.rest("GET", "/jobs", user="heidi"), 200)["jobs"][0]["status"] == "failed"
    assert d.received("heidi-live") == [{"event": "jobs-updated"}]
    assert "heidi-gone" not in d.connection_rows()
    assert [list(shard["connections"]) for shard in d.fanout_shards()] == [["heidi-refused"]]
    d.invoke("sweep_stale_jobs", d.client.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert d.received("heidi-live") == [{"event": "jobs-updated"}]  # nothing stale the second time


# ---------------------------------------------------------------- fan-out worker


def _shard_event(d: Deployment, shard: dict[str, Any]) -> dict[str, Any]:
    return d.client.events.generate_sqs_event(message_bodies=[json.dumps(shard)], queue_name="fanout")


@flow("fanout_worker")
def fanout_worker(d: Deployment) -> None:
    """A shard of connections: delivered, a gone one's row deleted; delivered again: nothing sent twice."""
    d.connect("ivy", "ivy-live")
    d.connect("ivy", "ivy-gone", gone=True)
    connections = {"ivy-live": 1, "ivy-gone": 1}
    shard = {"v": 1, "id": "deploy-1:c0", "key": "jobs-updated", "frame": '{"event":"jobs-updated"}'}
    for _ in range(2):  # SQS delivers at least once
        d.invoke("fanout_worker", _shard_event(d, {**shard, "connections": connections}))
    assert d.received("ivy-live") == [{"event": "jobs-updated"}]
    assert "ivy-gone" not in d.connection_rows()


@flow("fanout_worker")
def fanout_worker_reads_users_and_hands_on_the_rest_of_a_large_one(d: Deployment) -> None:
    """A shard of users: each one's connections read; one holding more than a shard's worth has the rest
    handed on behind a cursor, and what the worker read beyond a shard's worth goes to another worker."""
    from chalice_realtime.fanout import SHARD_CONNECTIONS

    d.fanout_shards()  # what earlier flows handed on is not this flow's
    d.connect("jay", "jay-live")
    d.connect_many("kim", [f"kim-{n:05d}" for n in range(SHARD_CONNECTIONS + 1)])
    shard = {"v": 1, "id": "deploy-2:u0", "key": "jobs-updated", "frame": '{"event":"jobs-updated"}'}
    d.invoke("fanout_worker", _shard_event(d, {**shard, "users": ["jay", "kim"]}))
    assert d.received("jay-live") == [{"event": "jobs-updated"}]
    handed_on = d.fanout_shards()
    # kim's connections past the first page, behind a cursor; and what the worker read past one shard's worth.
    assert [(s["user"], s["cursor"] is not None) for s in handed_on if "user" in s] == [("kim", True)]
    assert sum(len(s.get("connections", {})) for s in handed_on) == 1


@flow("fanout_worker")
def fanout_worker_delivers_the_rest_of_a_topic(d: Deployment) -> None:
    """A topic shard: its subscribers read from the topics table and posted; a gone one's subscription and
    row go and the presence frame that follows reaches the live one; delivered again: nothing twice."""
    if "/rooms" not in _app_routes():
        return
    room_id = expect(d.rest("POST", "/rooms", user="lena", body={"name": "all hands"}), 201)["room_id"]
    topic = f"room:{room_id}"
    d.connect("lena", "lena-1")
    _ws(d, "lena-1", "subscribe", topic)
    _stale_subscription(d, "mo", "mo-old", topic)
    d.fanout_shards()  # what earlier flows handed on is not this flow's
    key = "room-messages-updated"
    frame = json.dumps({"event": key, "topic": topic}, separators=(",", ":"))
    shard = {
        "v": 1,
        "id": "deploy-3:t",
        "key": key,
        "frame": frame,
        "topic": topic,
        "cursor": None,
        "page": 0,
    }
    for _ in range(2):  # SQS delivers at least once
        d.invoke("fanout_worker", _shard_event(d, shard))
    received = d.received("lena-1")
    assert received.count({"event": key, "topic": topic}) == 1
    assert {"event": "presence-updated", "topic": topic} in received
    assert "mo-old" not in d.connection_rows()
    members = expect(
        d.rest("GET", "/rooms/{room_id}/presence", user="lena", path=f"/rooms/{room_id}/presence"), 200
    )
    assert members == {"users": ["lena"]}
