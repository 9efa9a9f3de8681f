"""Drive every Lambda function of the app through its code paths against moto, set up as the stack.

Each function runs with the settings its packaged environment gives it (table
names, topic, endpoint, SSM parameter, all rendered by `FakeStack`), so the AWS
calls recorded here are the ones the deployed function would make, on the
resources the template names. A function in the template without a flow here
fails the deployment tests: add its flow when you add the function.

Paths every notifying flow covers: delivery to a live connection, and a
connection that is gone (410), whose row is then deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from chalice.test import Client

from chalicelib import aws as aws_clients
from chalicelib import services as services_module
from chalicelib.connections import Connection
from chalicelib.settings import Settings
from infra.tables import create_tables
from tests.apigw import websocket_event
from tests.deploy.recording import CallRecorder
from tests.deploy.stack import FakeStack
from tests.firebase_tokens import TokenFactory
from tests.management_api import received as frames_posted

STRIPE_SECRET = "whsec_deploy_test"


class FakeClock:
    """The jobs' clock: `sleep` advances it, so a job runs at once; `advance` makes jobs stale."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Deployment:
    """moto holding this stack's tables, topic and parameter; runs handlers as a given function."""

    stack: FakeStack
    recorder: CallRecorder
    tokens: TokenFactory
    management_api: Any
    client: Client
    clock: FakeClock = field(default_factory=FakeClock)
    routes_called: set[tuple[str, str]] = field(default_factory=set)
    functions_run: set[str] = field(default_factory=set)

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

    def settings_of(self, function: str) -> Settings:
        return Settings.from_env(self.stack.environment(function))

    @contextmanager
    def as_function(self, function: str) -> Iterator[Any]:
        """Run the block as `function`: its settings, fresh clients (as a cold Lambda), its calls recorded."""
        aws_clients.client.cache_clear()
        built = services_module.Services(
            self.settings_of(function),
            dynamodb=boto3.client("dynamodb", region_name="us-east-1"),
            sns=boto3.client("sns", region_name="us-east-1"),
        )
        built.job_clock = self.clock
        services_module.use(built)
        self.functions_run.add(function)
        try:
            with self.recorder.running(function):
                yield built
        finally:
            services_module.use(None)

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

    def connect(self, user_id: str, *connection_ids: str, gone: bool = False) -> None:
        """Rows for live connections of `user_id` (recorded as nobody's); `gone` ones answer 410."""
        store = services_module.Services(
            self.settings_of("APIHandler"), dynamodb=boto3.client("dynamodb", region_name="us-east-1")
        ).connections
        for cid in connection_ids:
            store.add(Connection(cid, user_id, int(time.time() * 1000)))
            if gone:
                self.management_api.gone.add(cid)

    def received(self, connection_id: str) -> list[dict[str, str]]:
        return frames_posted(self.management_api, connection_id)

    def connection_rows(self) -> set[str]:
        table = self.settings_of("APIHandler").connections_table
        items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table)["Items"]
        return {item["connection_id"]["S"] for item in items}


Flow = Callable[[Deployment], None]
FLOWS: dict[str, Flow] = {}


def flow(handler: str) -> Callable[[Flow], Flow]:
    """Register the flow that exercises the function whose handler is `app.<handler>`."""

    def register(function: Flow) -> Flow:
        FLOWS[handler] = function
        return function

    return register


def expect(response: Any, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.body)
    return json.loads(response.body) if response.body else None


# ---------------------------------------------------------------- REST


@flow("app")
def rest_api(d: Deployment) -> None:
    expect(d.rest("GET", "/health"), 200)
    assert expect(d.rest("GET", "/me", user="alice"), 200) == {"user_id": "alice"}
    for route_flow in REST_FLOWS:
        route_flow(d)


REST_FLOWS: list[Flow] = []


def rest_flow(function: Flow) -> Flow:
    REST_FLOWS.append(function)
    return function


@rest_flow
def chat(d: Deployment) -> None:
    if ("/messages", "POST") not in {(r, m) for r, methods in _app_routes().items() for m in methods}:
        return
    d.connect("bob", "bob-live")
    d.connect("bob", "bob-gone", gone=True)
    expect(d.rest("POST", "/messages", user="alice", body={"to": "bob", "text": "hi"}), 201)
    assert d.received("bob-live") == [{"event": "chat-messages-updated"}]
    assert "bob-gone" not in d.connection_rows()
    page = expect(d.rest("GET", "/messages", user="bob", path="/messages?with=alice"), 200)
    assert [m["text"] for m in page["messages"]] == ["hi"]
    assert expect(d.rest("GET", "/messages/unread-count", user="bob"), 200)["unread"] == 1
    expect(d.rest("POST", "/messages/read", user="bob", body={"with": "alice"}), 200)


@rest_flow
def payments(d: Deployment) -> None:
    if "/webhooks/stripe" not in _app_routes():
        return
    from tests.stripe_events import build_test_event, signed_delivery

    d.connect("carol", "carol-live")
    d.connect("carol", "carol-gone", gone=True)
    body, headers = signed_delivery(build_test_event("payment_intent.succeeded", "carol"), STRIPE_SECRET)
    expect(d.rest("POST", "/webhooks/stripe", headers=headers, body=body.encode()), 200)
    assert d.received("carol-live") == [{"event": "payments-updated"}]
    assert "carol-gone" not in d.connection_rows()
    listed = expect(d.rest("GET", "/payments", user="carol"), 200)
    assert len(listed["payments"]) == 1


@rest_flow
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


def _app_routes() -> dict[str, list[str]]:
    from app import app

    return {path: list(methods) for path, methods in app.routes.items()}


# ---------------------------------------------------------------- authorizer


@flow("firebase_auth")
def authorizer(d: Deployment) -> None:
    event = {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {d.tokens.mint('alice')}",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:restdevapi/api/GET/me",
    }
    answer = d.invoke("firebase_auth", event)
    assert answer["principalId"] == "alice"


# ---------------------------------------------------------------- websocket


@flow("ws_connect")
def ws_connect(d: Deployment) -> None:
    cap = d.settings_of(d.stack.function_for("ws_connect")).max_connections_per_user
    d.connect("dave", *[f"dave-{n}" for n in range(cap)])
    token = d.tokens.mint("dave")
    event = websocket_event("$connect", "dave-new", headers={"Sec-WebSocket-Protocol": f"bearer, {token}"})
    assert d.invoke("ws_connect", event)["statusCode"] == 200
    rows = d.connection_rows()
    assert "dave-new" in rows and "dave-0" not in rows  # the oldest was closed beyond the cap


@flow("ws_message")
def ws_message(d: Deployment) -> None:
    d.connect("erin", "erin-1")
    event = websocket_event("$default", "erin-1", body='{"action": "ping"}')
    assert d.invoke("ws_message", event)["statusCode"] == 200
    assert d.received("erin-1") == [{"event": "pong"}]


@flow("ws_disconnect")
def ws_disconnect(d: Deployment) -> None:
    d.connect("erin", "erin-2")
    assert d.invoke("ws_disconnect", websocket_event("$disconnect", "erin-2"))["statusCode"] == 200
    assert "erin-2" not in d.connection_rows()


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
    d.connect("grace", "grace-live")
    d.connect("grace", "grace-gone", gone=True)
    for request in ({"kind": "report", "params": {"seconds": 2}}, {"kind": "fail", "params": {}}):
        message = _submitted_job(d, "grace", request)
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))
        d.invoke("run_job", d.client.events.generate_sns_event(message=message))  # a redelivery
    listed = expect(d.rest("GET", "/jobs", user="grace"), 200)["jobs"]
    assert sorted(job["status"] for job in listed) == ["failed", "succeeded"]
    assert {"event": "jobs-updated"} in d.received("grace-live")
    assert "grace-gone" not in d.connection_rows()


@flow("sweep_stale_jobs")
def sweep_stale_jobs(d: Deployment) -> None:
    d.connect("heidi", "heidi-live")
    d.connect("heidi", "heidi-gone", gone=True)
    _submitted_job(d, "heidi", {"kind": "report", "params": {"seconds": 1}})
    d.clock.advance(3 * 3600)  # its SNS delivery never ran it: stale
    d.invoke("sweep_stale_jobs", d.client.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert expect(d.rest("GET", "/jobs", user="heidi"), 200)["jobs"][0]["status"] == "failed"
    assert d.received("heidi-live") == [{"event": "jobs-updated"}]
    assert "heidi-gone" not in d.connection_rows()
