"""The AWS bill for stated traffic, from what each operation was measured to use.

    python -m bench.cost                      # the example traffic; writes docs/cost.md
    python -m bench.cost --users 50000 --notifications 200 --output -   # print only

Each operation (a `$connect`, a ping, a notify, a chat message, a job, a webhook, the
browsers' refetches, ...) runs in this process as Lambda would run it, against moto's
server and the Management API stand-in (`bench.calls.local_aws`), several times. Measured:

- Lambda time: the handler's wall time here (median of the runs), minus the time the
  meters below spend on their own reads; memory from `.chalice/config.json`;
- AWS calls: `bench.calls.CallLog` (botocore's hooks and the stand-in's request log);
- DynamoDB units and storage: by DynamoDB's rules from the items each call reads and writes
  (moto's `ConsumedCapacity` is a constant, whatever the item size): the items written are
  read before and after with a client of our own, index entries derived from `infra/`;
- WebSocket messages: the bytes of each frame delivered, of each ping, and each `$connect`;
- SNS publishes: the bytes published; CloudWatch: the app's log lines and EMF metric series.

`bench/costmodel.py` turns those into dollars with the prices in its one table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import costmodel
from bench.calls import CallLog, describe, local_aws
from bench.costmodel import (
    COMPONENTS,
    DAYS_PER_MONTH,
    PRICES,
    Bill,
    Index,
    Invocation,
    Measured,
    Traffic,
)
from bench.harness import ROOT, machine, table

CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "APP_STAGE": "dev",
    "FIREBASE_PROJECT_ID": "bench-project",
    "CONNECTIONS_TABLE": "bench-cost-connections",
    "JOBS_TABLE": "bench-cost-jobs",
    "MESSAGES_TABLE": "bench-cost-messages",
    "PAYMENTS_TABLE": "bench-cost-payments",
    "JOBS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-cost-jobs",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench",
    # As deployed: the log volume is part of the bill.
    "LOG_LEVEL": CONFIG["environment_variables"]["LOG_LEVEL"],
    "MAX_CONNECTIONS_PER_USER": CONFIG["environment_variables"]["MAX_CONNECTIONS_PER_USER"],
}
DOCS = ROOT / "docs" / "cost.md"
RUN_TOKEN = "bench-runner"  # noqa: S105 - the run token a job runner holds, not a secret


# ---------------------------------------------------------------- meters


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...]


def table_shapes(env: Mapping[str, str]) -> dict[str, TableShape]:
    """Key attributes and global secondary indexes of each table, from `infra/resources.json`."""
    from infra.tables import env_var_for, table_resources

    shapes = {}
    for logical_id, props in table_resources().items():
        keys = tuple(k["AttributeName"] for k in props["KeySchema"])
        indexes = []
        for gsi in props.get("GlobalSecondaryIndexes", []):
            projection = gsi.get("Projection", {})
            projected: tuple[str, ...] | None = (
                None
                if projection.get("ProjectionType") == "ALL"
                else tuple(projection.get("NonKeyAttributes", ()))
            )
            index_keys = tuple(k["AttributeName"] for k in gsi["KeySchema"])
            indexes.append(Index(gsi["IndexName"], index_keys, keys, projected))
        shapes[env[env_var_for(logical_id)]] = TableShape(keys, tuple(indexes))
    return shapes


@dataclass
class _Write:
    table: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None  # None: read after the call (an update); {} : deleted
    transactional: bool


class CapacityMeter:
    """DynamoDB read and write units and stored bytes of a client's calls, by DynamoDB's rules.

    Writes: the item is read (strongly consistent, by another client) before the call, and after
    it for an update; a write bills the larger of the two sizes, plus each index entry it changes.
    Reads: the items returned (a Query's summed, then rounded). A failed conditional write still
    bills its item. The time spent on those extra reads is kept in `overhead_seconds`.
    """

    def __init__(self, auditor: Any, shapes: Mapping[str, TableShape]) -> None:
        self._auditor = auditor
        self._shapes = shapes
        self._lock = threading.Lock()
        self.write_units = 0.0
        self.read_units = 0.0
        self.stored_bytes = 0
        self.overhead_seconds = 0.0

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def reading(self) -> tuple[float, float, int, float]:
        with self._lock:
            return self.write_units, self.read_units, self.stored_bytes, self.overhead_seconds

    def _get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        item = self._auditor.get_item(TableName=table, Key=dict(key), ConsistentRead=True).get("Item")
        with self._lock:
            self.overhead_seconds += time.perf_counter() - started
        return dict(item) if item else None

    def _write(
        self, table: str, *, item: Any = None, key: Any = None, delete: bool = False, tx: bool
    ) -> _Write:
        if item is not None:
            key = {k: item[k] for k in self._shapes[table].keys}
        after = dict(item) if item is not None else ({} if delete else None)
        return _Write(table, dict(key), self._get(table, key), after, tx)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        name = model.name
        writes: list[_Write] = []
        if name == "PutItem":
            writes.append(self._write(params["TableName"], item=params["Item"], tx=False))
        elif name == "UpdateItem":
            writes.append(self._write(params["TableName"], key=params["Key"], tx=False))
        elif name == "DeleteItem":
            writes.append(self._write(params["TableName"], key=params["Key"], delete=True, tx=False))
        elif name == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        writes.append(self._write(table, item=request["PutRequest"]["Item"], tx=False))
                    else:
                        key = request["DeleteRequest"]["Key"]
                        writes.append(self._write(table, key=key, delete=True, tx=False))
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, spec),) = entry.items()
                if kind == "Put":
                    writes.append(self._write(spec["TableName"], item=spec["Item"], tx=True))
                elif kind == "Delete":
                    writes.append(self._write(spec["TableName"], key=spec["Key"], delete=True, tx=True))
                else:  # Update, ConditionCheck (billed as a write of the item as it is)
                    writes.append(self._write(spec["TableName"], key=spec["Key"], tx=True))
                    if kind == "ConditionCheck":
                        writes[-1].after = writes[-1].before or {}
        elif name in ("BatchGetItem", "TransactGetItems"):
            raise NotImplementedError(f"the cost meter does not price {name} yet")
        context["cost.writes"] = writes
        context["cost.consistent"] = bool(params.get("ConsistentRead"))

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        failed = "Error" in parsed
        units = 0.0
        stored = 0
        for write in context.get("cost.writes", []):
            shape = self._shapes[write.table]
            if failed:
                units += costmodel.write_units(
                    costmodel.item_size(write.before), transactional=write.transactional
                )
                continue
            after = write.after if write.after is not None else self._get(write.table, write.key)
            after = after or None
            size = max(costmodel.item_size(write.before), costmodel.item_size(after))
            units += costmodel.write_units(size, transactional=write.transactional)
            for index in shape.indexes:
                for entry in costmodel.index_writes(write.before, after, index):
                    units += costmodel.write_units(entry, transactional=write.transactional)
            stored += costmodel.stored_bytes(after, shape.indexes) - costmodel.stored_bytes(
                write.before, shape.indexes
            )
        reads = 0.0
        if model.name in ("Query", "Scan") and not failed:
            size = sum(costmodel.item_size(item) for item in parsed.get("Items", []))
            reads = costmodel.read_units(size, consistent=context.get("cost.consistent", False))
        elif model.name == "GetItem" and not failed:
            size = costmodel.item_size(parsed.get("Item"))
            reads = costmodel.read_units(size, consistent=context.get("cost.consistent", False))
        with self._lock:
            self.write_units += units
            self.read_units += reads
            self.stored_bytes += stored


class MeteredTransport:
    """The app's Management API transport, recording the size of each frame delivered."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.delivered: list[int] = []

    def post_to_connections(self, connection_ids: Sequence[str], data: bytes) -> list[Any]:
        from chalicelib.transport import Outcome

        outcomes: list[Any] = self._inner.post_to_connections(connection_ids, data)
        with self._lock:
            self.delivered.extend(len(data) for o in outcomes if o is Outcome.DELIVERED)
        return outcomes

    def delete_connection(self, connection_id: str) -> Any:
        return self._inner.delete_connection(connection_id)


class PublishLog:
    """Bytes of each SNS publish (message plus attributes) of a client."""

    def __init__(self) -> None:
        self.payloads: list[int] = []

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.sns.Publish", self._publish)

    def _publish(self, params: dict[str, Any], **_: Any) -> None:
        attributes = params.get("MessageAttributes", {})
        size = len(params["Message"].encode()) + sum(
            len(name.encode()) + len(json.dumps(value).encode()) for name, value in attributes.items()
        )
        self.payloads.append(size)


@dataclass
class Reading:
    """What one run of an operation used."""

    duration_ms: float
    write_units: float
    read_units: float
    stored_bytes: int
    frames: tuple[int, ...]
    sns_payloads: tuple[int, ...]
    log_lines: tuple[str, ...]
    calls: Counter[str] = field(default_factory=Counter)


class Meters:
    """All meters on the app's clients; `run(work)` measures one run of an operation."""

    def __init__(self, calls: CallLog, capacity: CapacityMeter, transport: MeteredTransport) -> None:
        self.calls = calls
        self.capacity = capacity
        self.transport = transport
        self.publishes = PublishLog()
        self.metric_series: set[tuple[str, ...]] = set()

    def run(self, work: Callable[[], Any]) -> tuple[Any, Reading]:
        w0, r0, s0, o0 = self.capacity.reading()
        f0, p0 = len(self.transport.delivered), len(self.publishes.payloads)
        log = io.StringIO()
        elapsed = 0.0

        def timed() -> Any:
            nonlocal elapsed
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(log):
                    return work()
            finally:
                elapsed = time.perf_counter() - started

        result, calls = self.calls.measure(timed)
        w1, r1, s1, o1 = self.capacity.reading()
        lines = tuple(log.getvalue().splitlines())
        self._note_metrics(lines)
        return result, Reading(
            duration_ms=max(0.0, elapsed - (o1 - o0)) * 1000,
            write_units=w1 - w0,
            read_units=r1 - r0,
            stored_bytes=s1 - s0,
            frames=tuple(self.transport.delivered[f0:]),
            sns_payloads=tuple(self.publishes.payloads[p0:]),
            log_lines=lines,
            calls=calls,
        )

    def _note_metrics(self, lines: Sequence[str]) -> None:
        """Metric series (namespace, name, dimension values) in the EMF blobs among `lines`."""
        for line in lines:
            if '"_aws"' not in line:
                continue
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for dimensions in directive["Dimensions"]:
                    values = tuple(f"{d}={blob[d]}" for d in dimensions)
                    for metric in directive["Metrics"]:
                        self.metric_series.add((directive["Namespace"], metric["Name"], *values))


# ---------------------------------------------------------------- the operations


class InstantClock:
    """The jobs' clock, advanced by sleeps instead of waiting: a 60 s job runs in its work time."""

    def __init__(self) -> None:
        self._now = time.time()
        self.slept = 0.0

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._now += seconds
        self.slept += seconds


@dataclass
class Sample:
    """Repeated runs of one operation: the median run's reading stands for it."""

    readings: list[Reading] = field(default_factory=list)

    def median(self) -> Reading:
        ordered = sorted(self.readings, key=lambda r: r.duration_ms)
        return ordered[len(ordered) // 2]


def measure_all(certs: Any, tokens: Any, traffic: Traffic, repeat: int) -> tuple[dict[str, Measured], int]:
    """Run every operation `repeat` times (after one warm-up run) and return what each used."""
    import boto3
    from chalice.test import Client

    import app as app_module
    from chalicelib import services
    from chalicelib.connections import Connection
    from chalicelib.settings import get_settings
    from chalicelib.transport import AiohttpTransport
    from tests.apigw import websocket_event
    from tests.stripe_events import build_test_event, signed_delivery

    settings = get_settings()
    transport = MeteredTransport(AiohttpTransport(settings.websocket_endpoint))
    current = services.Services(settings, transport=transport)
    clock = InstantClock()
    current.job_clock = clock
    services.use(current)
    capacity = CapacityMeter(boto3.client("dynamodb"), table_shapes(ENV))
    capacity.watch(current.dynamodb)
    log = CallLog(settings.websocket_endpoint, certs)
    log.watch(current.dynamodb)
    log.watch(current.sns)
    meters = Meters(log, capacity, transport)
    meters.publishes.watch(current.sns)
    store = current.connections
    browsers = traffic.browsers_per_user
    now_ms = int(time.time() * 1000)
    for user in ("alice", "bob"):
        for n in range(browsers):
            store.add(Connection(f"{user}-browser-{n}", user, now_ms + n))

    def bearer(uid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.mint(uid)}", "Content-Type": "application/json"}

    samples: dict[str, Sample] = {}
    shapes: dict[str, Callable[[Reading], Measured]] = {}

    def sample(
        key: str,
        shape: Callable[[Reading], Measured],
        work: Callable[[int], Any],
        prepare: Callable[[int], Any] = lambda run: None,
    ) -> None:
        """Warm up once, then measure `repeat` runs of `work(run number)`, each after `prepare(run)`."""
        for run in range(-1, repeat):
            prepare(run)
            if run < 0:
                work(run)
                continue
            _, reading = meters.run(functools.partial(work, run))
            samples.setdefault(key, Sample()).readings.append(reading)
        shapes[key] = shape

    def lambda_run(
        function: str, *, rest: int = 0, messages_in: tuple[int, ...] = ()
    ) -> Callable[..., Measured]:
        def shape(r: Reading, extra_ms: float = 0.0) -> Measured:
            return Measured(
                invocations=(Invocation(function, r.duration_ms + extra_ms),),
                messages_in=messages_in,
                frames_out=r.frames,
                rest_requests=rest,
                write_units=r.write_units,
                read_units=r.read_units,
                stored_bytes=r.stored_bytes,
                sns_payloads=r.sns_payloads,
                log_lines=r.log_lines,
                calls=r.calls,
            )

        return shape

    # ---- WebSocket routes: a browser of a user who has another browser connected
    def other_browsers(run: int) -> None:
        uid = f"connect-user-{run + 1}"
        for n in range(browsers - 1):
            store.add(Connection(f"{uid}-other-{n}", uid, int(time.time() * 1000)))

    def connect(run: int) -> None:
        uid = f"connect-user-{run + 1}"
        event = websocket_event(
            "$connect", f"{uid}-new", headers={"Sec-WebSocket-Protocol": f"bearer, {tokens.mint(uid)}"}
        )
        assert app_module.ws_connect(event, None)["statusCode"] == 200

    sample("connect", lambda_run("websocket_connect", messages_in=(0,)), connect, other_browsers)
    sample(
        "disconnect",
        lambda_run("websocket_disconnect"),
        lambda run: app_module.ws_disconnect(
            websocket_event("$disconnect", f"connect-user-{run + 1}-new"), None
        ),
    )
    ping = '{"action":"ping"}'
    sample(
        "ping",
        lambda_run("websocket_message", messages_in=(len(ping.encode()),)),
        lambda run: app_module.ws_message(websocket_event("MESSAGE", "alice-browser-0", body=ping), None),
    )
    # ---- a notify from app code, inside some other function's run (no Lambda request of its own)
    sample(
        "notify",
        lambda r: replace(
            lambda_run("api_handler")(r),
            invocations=(Invocation("api_handler", r.duration_ms, request=False),),
        ),
        lambda run: current.notifier.notify("alice", "jobs-updated"),
    )
    with Client(app_module.app) as client:
        submitted = client.http.post(
            "/jobs", headers=bearer("alice"), body=json.dumps({"kind": "report", "params": {"seconds": 1}})
        )
        job_id = json.loads(submitted.body)["job_id"]

        def get(path: str, uid: str = "alice") -> None:
            response = client.http.get(path, headers=bearer(uid))
            assert response.status_code == 200, response.body

        sample("refetch job", lambda_run("api_handler", rest=1), lambda run: get(f"/jobs/{job_id}"))

        def authorize(run: int) -> None:
            event = {
                "type": "TOKEN",
                "authorizationToken": f"Bearer {tokens.mint('alice')}",
                "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/api/GET/jobs",
            }
            assert app_module.firebase_auth(event, None)["principalId"] == "alice"

        sample("authorizer", lambda_run("firebase_auth"), authorize)

        # ---- chat: alice writes to bob; bob's browsers refetch the badge and the conversation
        def send(run: int) -> None:
            body = json.dumps({"to": "bob", "text": "Are we still on for lunch tomorrow at noon?"})
            response = client.http.post("/messages", headers=bearer("alice"), body=body)
            assert response.status_code == 201, response.body

        sample("chat send", lambda_run("api_handler", rest=1), send)

        def chat_refetch(run: int) -> None:
            get("/messages/unread-count", "bob")
            get("/messages?with=alice&limit=50", "bob")

        sample(
            "chat refetch",
            lambda r: replace(
                lambda_run("api_handler", rest=2)(r),
                invocations=(Invocation("api_handler", r.duration_ms / 2),) * 2,
            ),
            chat_refetch,
        )

        # ---- jobs: submit, the SNS-invoked run, a heartbeat
        job_body = json.dumps({"kind": "report", "params": {"seconds": traffic.job_seconds}})
        pending: list[str] = []

        def submit(run: int) -> None:
            response = client.http.post("/jobs", headers=bearer("alice"), body=job_body)
            assert response.status_code == 202, response.body
            pending.append(json.loads(response.body)["job_id"])

        sample("job submit", lambda_run("api_handler", rest=1), submit)
        slept: dict[int, float] = {}

        def run_job(run: int) -> None:
            message = json.dumps({"owner": "alice", "job_id": pending.pop()}, separators=(",", ":"))
            event: dict[str, Any] = {
                "Records": [{"Sns": {"Message": message, "Subject": None, "MessageAttributes": {}}}]
            }
            before = clock.slept
            app_module.run_job(event, None)
            slept[run] = clock.slept - before

        while len(pending) < repeat + 1:
            submit(0)
        sample("job run", lambda_run("run_job"), run_job)
        job_seconds_ms = statistics.median(slept.values()) * 1000
        shapes["job run"] = lambda r: lambda_run("run_job")(r, job_seconds_ms)

        def virtual_ms() -> int:
            return int(clock.now() * 1000)

        # A running job (claimed as the runner claims it) whose heartbeat is then written.
        submit(0)
        held = pending.pop()
        claimed, _ = current.job_store.claim("alice", held, token=RUN_TOKEN, now_ms=virtual_ms())
        assert claimed
        sample(
            "job heartbeat",
            lambda r: replace(lambda_run("run_job")(r), invocations=()),  # inside the job run's time
            lambda run: current.job_store.beat(
                "alice", held, token=RUN_TOKEN, now_ms=int(clock.now() * 1000)
            ),
        )
        sample(
            "sweep",
            lambda_run("sweep_stale_jobs"),
            lambda run: app_module.sweep_stale_jobs(
                {
                    "version": "0",
                    "account": "123456789012",
                    "region": "us-east-1",
                    "detail": {},
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "time": "2026-12-01T10:00:00Z",
                    "id": f"sweep-{run}",
                    "resources": [],
                },
                None,
            ),
        )

        # ---- payments: Stripe's webhook, then the owner's browsers refetch their payments
        def webhook(run: int) -> None:
            event = build_test_event("payment_intent.succeeded", "alice", amount=1999)
            body, headers = signed_delivery(event, ENV["STRIPE_WEBHOOK_SECRET"])
            response = client.http.post("/webhooks/stripe", headers=headers, body=body)
            assert response.status_code == 200, response.body

        sample("payment", lambda_run("api_handler", rest=1), webhook)
        sample("payment refetch", lambda_run("api_handler", rest=1), lambda run: get("/payments?limit=20"))

    measured = {key: shapes[key](samples[key].median()) for key in samples}
    return measured, len(meters.metric_series)


# ---------------------------------------------------------------- the report


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def count(n: float) -> str:
    return f"{n:,.0f}" if n >= 10 else f"{n:,.2f}".rstrip("0").rstrip(".")


ADVICE = {
    "API Gateway REST requests": (
        "every frame makes each browser refetch over REST. Coalescing refetches (one per key per "
        "burst, as the client's handlers can), fewer progress frames per job, or an HTTP API "
        "(billed at $1.00 per million, without a REST API's features) lower it"
    ),
    "API Gateway connection minutes": (
        "billed per open socket. The shared tab socket (one leader tab per browser holds it) keeps it "
        "at one connection per browser instead of one per tab; closing the socket of a hidden page "
        "lowers it further"
    ),
    "API Gateway WebSocket messages": (
        "frames, pings and connects. One socket per browser (the shared tab socket) means one frame per "
        "notify per browser rather than per tab; a longer ping interval (up to the 10-minute idle limit) "
        "lowers the pings"
    ),
    "Lambda duration": (
        "the job runner's wall time dominates it (a job is billed while it sleeps between steps); "
        "less memory for `run_job`, or Step Functions waits for jobs that mostly wait, lower it"
    ),
    "CloudWatch Logs ingestion": "a higher LOG_LEVEL in production, or fewer per-call log lines, lower it",
    "DynamoDB writes": "fewer progress writes per job (they are rate-limited to one a second) lower it",
}


def render(bill: Bill, traffic: Traffic, measured: Mapping[str, Measured], memory: Mapping[str, int]) -> str:
    prices = bill.prices
    by_component = bill.by_component()
    total = bill.total()
    monthly = costmodel.Usage()
    for op in bill.operations:
        monthly += op.monthly()
    dominant, share = bill.dominant()
    t = traffic
    out: list[str] = []
    out.append(
        f"Traffic: {t.users:,} users, {t.browsers_per_user} browsers each connected "
        f"{t.hours_per_day:g} h a day, {t.notifications_per_user:g} notifications per user per day, "
        f"{t.jobs:,.0f} jobs a day of {t.job_seconds} s, "
        f"{t.chat_messages_per_user:g} chat messages per user per day, {t.payments:,.0f} payments a day; "
        f"pings every {t.ping_minutes:g} min. A month is {DAYS_PER_MONTH} days. "
        f"Prices: {prices.region}, on-demand list prices as of {prices.as_of}, no free tier."
    )
    out.append("")
    out.append(
        f"**Total: {money(total)} a month.** The largest line is **{dominant}**: "
        f"{money(by_component[dominant])} ({share:.0%}); {ADVICE.get(dominant, '')}."
    )
    socket_side = sum(
        bill.by_operation()[op.name][c]
        for op in bill.operations
        for c in ("API Gateway WebSocket messages", "API Gateway connection minutes")
    )
    out.append(
        f"Socket-side charges (connection minutes and WebSocket messages) are {money(socket_side)}; they "
        "scale with open sockets, so tabs that each held their own socket would multiply them by the tabs "
        "open: the shared tab socket keeps them at one socket per browser."
    )
    out.append("")
    out.append("### Per component")
    out.append("")
    rows = []
    for c in COMPONENTS:
        price = getattr(prices, c.price)
        quantity = getattr(monthly, c.usage) * c.scale
        unit = "GB" if c.scale != 1 else price.unit.split(" (")[0].split(",")[0]
        rows.append(
            [
                c.name,
                f"{count(quantity)} {unit}",
                f"${price.usd:g} per {count(price.per)}",
                money(by_component[c.name]),
                f"{by_component[c.name] / total:.1%}" if total else "",
            ]
        )
    rows.sort(key=lambda row: -by_component[row[0]])
    rows.append(["**total**", "", "", f"**{money(total)}**", "100%"])
    out.append(table(["component", "monthly usage", "price", "per month", "share"], rows))
    out.append("")
    out.append("### Per operation")
    out.append("")
    groups = {
        "WebSocket": ("API Gateway WebSocket messages", "API Gateway connection minutes"),
        "REST": ("API Gateway REST requests",),
        "Lambda": ("Lambda duration", "Lambda requests"),
        "DynamoDB": ("DynamoDB writes", "DynamoDB reads", "DynamoDB storage"),
        "SNS": ("SNS publishes",),
        "CloudWatch": ("CloudWatch Logs ingestion", "CloudWatch custom metrics"),
    }
    rows = []
    per_op = bill.by_operation()
    for op in sorted(bill.operations, key=lambda o: -sum(per_op[o.name].values())):
        cost = per_op[op.name]
        rows.append(
            [
                op.name,
                count(op.per_month),
                *[money(sum(cost[c] for c in names)) for names in groups.values()],
                money(sum(cost.values())),
            ]
        )
    sums = [money(sum(by_component[c] for c in names)) for names in groups.values()]
    rows.append(["**total**", "", *sums, f"**{money(total)}**"])
    out.append(table(["operation", "per month", *groups, "total"], rows))
    out.append("")
    out.append("### What one occurrence was measured to use")
    out.append("")
    rows = []
    for key, m in measured.items():
        lam = ", ".join(
            f"{i.function} {i.duration_ms:,.1f} ms ({memory[i.function]} MB)"
            + ("" if i.request else ", no request")
            for i in m.invocations
        )
        rows.append(
            [
                key,
                lam or "(inside another run)",
                f"{m.write_units:g} / {m.read_units:g}",
                f"{m.stored_bytes:+,}",
                str(len(m.messages_in) + m.frames),
                str(m.rest_requests),
                f"{sum(len(line.encode()) for line in m.log_lines):,}",
                describe(Counter(m.calls)),
            ]
        )
    out.append(
        table(
            [
                "operation",
                "Lambda (measured)",
                "WRU / RRU",
                "stored bytes",
                "WS msgs",
                "REST",
                "log bytes",
                "AWS calls",
            ],
            rows,
        )
    )
    out.append("")
    out.append("### Prices used")
    out.append("")
    rows = [
        [name, f"${p.usd:g} per {count(p.per)} {p.unit}", p.source]
        for name, p in vars(prices).items()
        if isinstance(p, costmodel.Price)
    ]
    out.append(table(["price", "us-east-1", "page"], rows))
    return "\n".join(out)


NOT_COUNTED = """\
### Not counted

- Free tiers and volume tiers beyond the first (REST past 333 million requests a month, WebSocket
  messages past 1 billion), Savings Plans, taxes.
- Data transfer out to the internet (REST answers, frames): depends on payload sizes and the
  CloudFront or direct path in front; $0.09/GB list price after the first 100 GB.
- Cold starts: since August 2025 Lambda bills the init phase too; how many there are depends on
  concurrency, not on this model (`python -m bench.coldstart` measures one).
- The REST handlers' times include the local gateway's token check (on AWS the authorizer is a
  separate, cached function, counted on its own line): a small overstatement.
- Lambda times were measured on this machine against local stand-ins (moto answers in a few ms,
  the Management API stand-in at once); DynamoDB and `@connections` round trips on AWS are
  similar or slower, and a 512 MB Lambda has a third of a vCPU.
- Resync refetches after each 2-hour reconnect (the demo page refetches its panels), retries,
  410s for stale connections, the connection cap's evictions, failed jobs.
- CloudWatch Logs storage ($0.03/GB-month), API Gateway access logs (off), X-Ray (off), SSM
  parameter reads for the Stripe secret (standard parameters: free), Firebase (not AWS).
- `$disconnect` is not counted as a message; `$connect` is.
"""


def main(argv: Sequence[str] | None = None) -> None:
    d = Traffic()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--browsers", type=int, default=d.browsers_per_user, help="browsers per user")
    parser.add_argument("--hours", type=float, default=d.hours_per_day, help="hours connected a day")
    parser.add_argument(
        "--notifications", type=float, default=d.notifications_per_user, help="per user per day"
    )
    parser.add_argument("--jobs", type=float, default=d.jobs, help="jobs a day")
    parser.add_argument("--job-seconds", type=int, default=d.job_seconds, help="seconds per job (1-600)")
    parser.add_argument(
        "--chat-messages", type=float, default=d.chat_messages_per_user, help="per user per day"
    )
    parser.add_argument("--payments", type=float, default=d.payments, help="payments a day")
    parser.add_argument("--ping-minutes", type=float, default=d.ping_minutes)
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per operation (5)")
    parser.add_argument(
        "--output", default=str(DOCS), help=f"Markdown file to write ({DOCS.relative_to(ROOT)}; - for none)"
    )
    args = parser.parse_args(argv)
    traffic = Traffic(
        users=args.users,
        browsers_per_user=args.browsers,
        hours_per_day=args.hours,
        notifications_per_user=args.notifications,
        jobs=args.jobs,
        job_seconds=args.job_seconds,
        chat_messages_per_user=args.chat_messages,
        payments=args.payments,
        ping_minutes=args.ping_minutes,
    )
    from chalicelib.jobs.model import HEARTBEAT_SECONDS

    traffic = replace(traffic, heartbeat_seconds=HEARTBEAT_SECONDS)
    print(f"machine: {machine()}\n")
    with local_aws(ENV) as (certs, tokens):
        measured, series = measure_all(certs, tokens, traffic, args.repeat)
    memory = costmodel.lambda_memory(CONFIG)
    bill = Bill(costmodel.operations(traffic, measured, memory, series), PRICES)
    report = render(bill, traffic, measured, memory) + "\n\n" + NOT_COUNTED
    print(report)
    sys.stdout.flush()
    if args.output != "-":
        Path(args.output).write_text(
            "# What it costs on AWS\n\n"
            "<!-- Generated by `python -m bench.cost` (part of `make bench`): "
            "edit bench/cost.py, not this file. -->\n\n"
            f"Measured on {machine()}, with `python -m bench.cost`; the model and its tests: "
            "`bench/costmodel.py`, `tests/unit/test_cost_model.py`.\n\n" + report
        )
        print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
