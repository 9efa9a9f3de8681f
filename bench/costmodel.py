"""From measured counts to dollars: AWS's published prices and billing rules, as pure functions.

`python -m bench.cost` measures what each operation uses (Lambda time, DynamoDB items, frames,
log bytes) against the local stand-ins; everything here turns those counts into billing units
and dollars, with no I/O, so each rule has a unit test (tests/bench/test_cost_model.py).

    usage = usage_of(measured, memory_mb={"api_handler": 512})
    bill = Bill([Operation("notify", per_month=15_000_000, usage=usage)], PRICES)
    bill.by_component()   # {"Lambda duration": 1.23, ...}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

GIB = 1024**3
DAYS_PER_MONTH = 30  # the monthly figures are 30 days of the daily traffic

# ---------------------------------------------------------------- prices (one table)

LAMBDA_PRICING = "https://aws.amazon.com/lambda/pricing/"
API_GATEWAY_PRICING = "https://aws.amazon.com/api-gateway/pricing/"
DYNAMODB_PRICING = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
SNS_PRICING = "https://aws.amazon.com/sns/pricing/"
CLOUDWATCH_PRICING = "https://aws.amazon.com/cloudwatch/pricing/"


@dataclass(frozen=True)
class Price:
    """`usd` for every `per` units of `unit`, as a pricing page states it."""

    usd: float
    per: float
    unit: str
    source: str

    def of(self, quantity: float) -> float:
        return quantity * self.usd / self.per


@dataclass(frozen=True)
class PriceList:
    """On-demand list prices of one region on one date; no free tier, no volume tiers beyond the first."""

    region: str
    as_of: str
    lambda_gb_second: Price
    lambda_request: Price
    websocket_message: Price
    websocket_connection_minute: Price
    rest_request: Price
    dynamodb_write_unit: Price
    dynamodb_read_unit: Price
    dynamodb_storage: Price
    sns_publish: Price
    logs_ingestion: Price
    custom_metric: Price
    http_request: Price  # not billed here: the what-if of an HTTP API in place of the REST API


# Checked on `as_of` against the pages named in each Price. Those pages fill most rates in by script, so
# where a page's text showed none the rate was confirmed in its worked examples (Lambda: $0.00001667 per
# GB-s, $0.20 per million) or in write-ups quoting it (API Gateway: $1.00 per million WebSocket messages,
# $0.25 per million connection minutes, $3.50 per million REST and $1.00 per million HTTP requests;
# DynamoDB on demand since November 2024: $0.625 / $0.125 per million units; SNS: $0.50 per million
# publishes; CloudWatch: $0.50 per GB ingested, $0.30 per metric-month).
PRICES = PriceList(
    region="us-east-1",
    as_of="2026-12-01",
    lambda_gb_second=Price(0.0000166667, 1, "GB-second (x86)", LAMBDA_PRICING),
    lambda_request=Price(0.20, 1_000_000, "requests", LAMBDA_PRICING),
    websocket_message=Price(1.00, 1_000_000, "messages, 32 KB each (first 1 billion)", API_GATEWAY_PRICING),
    websocket_connection_minute=Price(0.25, 1_000_000, "connection minutes", API_GATEWAY_PRICING),
    rest_request=Price(3.50, 1_000_000, "REST API requests (first 333 million)", API_GATEWAY_PRICING),
    # The on-demand prices after the cut of 1 November 2024 (half the earlier $1.25 and $0.25).
    dynamodb_write_unit=Price(0.625, 1_000_000, "write request units", DYNAMODB_PRICING),
    dynamodb_read_unit=Price(0.125, 1_000_000, "read request units", DYNAMODB_PRICING),
    dynamodb_storage=Price(0.25, 1, "GB-month (Standard table class)", DYNAMODB_PRICING),
    sns_publish=Price(0.50, 1_000_000, "publishes, 64 KB each (deliveries to Lambda: free)", SNS_PRICING),
    logs_ingestion=Price(0.50, 1, "GB ingested (Standard log class)", CLOUDWATCH_PRICING),
    custom_metric=Price(0.30, 1, "custom metric-month (first 10,000)", CLOUDWATCH_PRICING),
    http_request=Price(1.00, 1_000_000, "HTTP API requests (first 300 million)", API_GATEWAY_PRICING),
)

# ---------------------------------------------------------------- billing rules

WEBSOCKET_MESSAGE_BYTES = 32 * 1024  # API Gateway meters WebSocket messages in 32 KB units
SNS_PUBLISH_BYTES = 64 * 1024  # SNS bills each 64 KB chunk of a publish as one request
WRITE_UNIT_BYTES = 1024  # 1 write request unit per 1 KB written
READ_UNIT_BYTES = 4 * 1024  # 1 read request unit per 4 KB read strongly consistently
ITEM_STORAGE_OVERHEAD_BYTES = 100  # DynamoDB stores 100 bytes of overhead per item, per index too
LOG_EVENT_OVERHEAD_BYTES = 26  # CloudWatch Logs bills 26 bytes of metadata per log event
# START, END and REPORT lines Lambda writes per invocation: about 270 bytes of text (3 events).
LAMBDA_PLATFORM_LOG_BYTES = 270 + 3 * LOG_EVENT_OVERHEAD_BYTES
API_GATEWAY_MAX_CONNECTION_MINUTES = 120  # a WebSocket connection lasts at most 2 hours


def websocket_messages(payload_bytes: int) -> int:
    """Billed messages for one WebSocket message or frame: one per started 32 KB, at least one."""
    return max(1, math.ceil(payload_bytes / WEBSOCKET_MESSAGE_BYTES))


def sns_publishes(payload_bytes: int) -> int:
    """Billed requests for one SNS publish: one per started 64 KB, at least one."""
    return max(1, math.ceil(payload_bytes / SNS_PUBLISH_BYTES))


def connection_minutes(connections: float, hours: float) -> float:
    """Connection minutes of `connections` held open `hours` each."""
    return connections * hours * 60


def sessions_per_day(hours: float, session_minutes: float = API_GATEWAY_MAX_CONNECTION_MINUTES) -> int:
    """WebSocket connections one browser opens to stay connected `hours`, each lasting at most
    `session_minutes` (API Gateway closes a connection at 2 h; the client reconnects a little earlier)."""
    return math.ceil(hours * 60 / min(session_minutes, API_GATEWAY_MAX_CONNECTION_MINUTES))


def gb_seconds(duration_ms: float, memory_mb: int) -> float:
    """Lambda's billed GB-seconds: duration rounded up to the millisecond, times memory in GB."""
    return math.ceil(duration_ms) / 1000 * memory_mb / 1024


def write_units(item_bytes: int, *, transactional: bool = False) -> int:
    """Write request units for one item write: 1 per started KB (at least 1), doubled in a transaction."""
    units = max(1, math.ceil(item_bytes / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(read_bytes: int, *, consistent: bool, transactional: bool = False) -> float:
    """Read request units for one read of `read_bytes` (a GetItem's item, or a Query's items summed).

    1 per started 4 KB when strongly consistent, half that when eventually consistent, double in a
    transaction; at least one 4 KB unit even when nothing is found.
    """
    units = max(1, math.ceil(read_bytes / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def _number_size(text: str) -> int:
    """Bytes DynamoDB counts for a number: about 1 per 2 significant digits, plus 1."""
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "").split("E")[0].strip("0")
    return math.ceil(max(1, len(digits)) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one DynamoDB attribute value (`{"S": ...}`, `{"N": ...}`, ...), by DynamoDB's rules."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item: each attribute's name (UTF-8) plus its value; 0 for no item."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and what it projects (`None`: all attributes)."""

    name: str
    keys: tuple[str, ...]
    table_keys: tuple[str, ...]
    projected: tuple[str, ...] | None = ()

    def entry(self, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The index's copy of `item`, or None when the item lacks an index key (sparse index)."""
        if not item or any(k not in item for k in self.keys):
            return None
        if self.projected is None:
            return dict(item)
        names = {*self.keys, *self.table_keys, *self.projected}
        return {k: v for k, v in item.items() if k in names}


def index_writes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, index: Index
) -> list[int]:
    """Sizes of the index writes one item write causes (each costs write units like an item write).

    No entry before and after, or the same entry: none. Added or removed: one. Key changed: two
    (a delete and a put). Same key, projected attributes changed: one.
    """
    old, new = index.entry(before), index.entry(after)
    if old == new:
        return []
    if old is None or new is None:
        return [item_size(old or new)]
    if any(old[k] != new[k] for k in index.keys):
        return [item_size(old), item_size(new)]
    return [item_size(new)]


def stored_bytes(item: Mapping[str, Any] | None, indexes: Iterable[Index] = ()) -> int:
    """Billed storage of one item: its size plus 100 bytes, and the same for each index entry."""
    total = item_size(item) + ITEM_STORAGE_OVERHEAD_BYTES if item else 0
    for index in indexes:
        entry = index.entry(item)
        if entry is not None:
            total += item_size(entry) + ITEM_STORAGE_OVERHEAD_BYTES
    return total


def log_bytes(lines: Iterable[str]) -> int:
    """CloudWatch Logs' billed bytes for log lines: UTF-8 text plus 26 bytes per event."""
    return sum(len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES for line in lines)


def authorizer_invocations(requests: float, active_seconds: float, ttl_seconds: int) -> float:
    """At most one Lambda authorizer run per token per TTL window (API Gateway caches the answer),
    never more than one per request: an upper bound for a browser making `requests` in `active_seconds`.
    """
    return min(requests, active_seconds / ttl_seconds)


# ---------------------------------------------------------------- usage and the bill


@dataclass(frozen=True)
class Usage:
    """Billing units used: by one occurrence of an operation, or by all of them in a month."""

    lambda_gb_seconds: float = 0.0
    lambda_requests: float = 0.0
    websocket_messages: float = 0.0
    connection_minutes: float = 0.0
    rest_requests: float = 0.0
    write_units: float = 0.0
    read_units: float = 0.0
    storage_gb_months: float = 0.0
    sns_publishes: float = 0.0
    log_bytes: float = 0.0
    custom_metrics: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def times(self, count: float) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) * count for f in fields(self)})


@dataclass(frozen=True)
class Component:
    """One line of the AWS bill: a `Usage` field priced by a `PriceList` field (after `scale`)."""

    name: str
    usage: str
    price: str
    scale: float = 1.0


COMPONENTS: tuple[Component, ...] = (
    Component("API Gateway WebSocket messages", "websocket_messages", "websocket_message"),
    Component("API Gateway connection minutes", "connection_minutes", "websocket_connection_minute"),
    Component("API Gateway REST requests", "rest_requests", "rest_request"),
    Component("Lambda duration", "lambda_gb_seconds", "lambda_gb_second"),
    Component("Lambda requests", "lambda_requests", "lambda_request"),
    Component("DynamoDB writes", "write_units", "dynamodb_write_unit"),
    Component("DynamoDB reads", "read_units", "dynamodb_read_unit"),
    Component("DynamoDB storage", "storage_gb_months", "dynamodb_storage"),
    Component("SNS publishes", "sns_publishes", "sns_publish"),
    Component("CloudWatch Logs ingestion", "log_bytes", "logs_ingestion", 1 / GIB),
    Component("CloudWatch custom metrics", "custom_metrics", "custom_metric"),
)


def dollars(usage: Usage, prices: PriceList = PRICES) -> dict[str, float]:
    """Dollars per bill component for `usage`."""
    return {c.name: getattr(prices, c.price).of(getattr(usage, c.usage) * c.scale) for c in COMPONENTS}


@dataclass(frozen=True)
class Invocation:
    """One Lambda run measured: the function, its measured time, and whether it is a Lambda request
    of its own (work done inside another function's run, such as a notify, is not)."""

    function: str
    duration_ms: float
    request: bool = True


@dataclass(frozen=True)
class Measured:
    """What one occurrence of an operation was measured to use, before billing rules."""

    invocations: tuple[Invocation, ...] = ()
    messages_in: tuple[int, ...] = ()  # bytes of each WebSocket message from a browser ($connect: 0)
    frames_out: tuple[int, ...] = ()  # bytes of each frame posted to a browser
    rest_requests: int = 0
    write_units: float = 0.0
    read_units: float = 0.0
    stored_bytes: int = 0  # net change of billed storage
    sns_payloads: tuple[int, ...] = ()  # bytes of each SNS publish
    log_lines: tuple[str, ...] = ()  # what the app wrote to its log
    calls: Mapping[str, int] = field(default_factory=dict)  # AWS calls, for the table

    @property
    def frames(self) -> int:
        return len(self.frames_out)


def usage_of(measured: Measured, memory_mb: Mapping[str, int]) -> Usage:
    """The billing units of one measured occurrence.

    What it stores is billed for half the month on average: occurrences are spread evenly over
    a month that starts with empty tables (chat messages, jobs and payments stay that long).
    """
    return Usage(
        lambda_gb_seconds=sum(gb_seconds(i.duration_ms, memory_mb[i.function]) for i in measured.invocations),
        lambda_requests=sum(1 for i in measured.invocations if i.request),
        websocket_messages=sum(websocket_messages(n) for n in (*measured.messages_in, *measured.frames_out)),
        rest_requests=measured.rest_requests,
        write_units=measured.write_units,
        read_units=measured.read_units,
        storage_gb_months=measured.stored_bytes / GIB / 2,
        sns_publishes=sum(sns_publishes(n) for n in measured.sns_payloads),
        log_bytes=log_bytes(measured.log_lines)
        + LAMBDA_PLATFORM_LOG_BYTES * sum(1 for i in measured.invocations if i.request),
    )


@dataclass(frozen=True)
class Operation:
    """A line of traffic: what one occurrence uses and how often it happens in a month."""

    name: str
    per_month: float
    usage: Usage

    def monthly(self) -> Usage:
        return self.usage.times(self.per_month)


@dataclass(frozen=True)
class Bill:
    """The month's bill for a list of operations."""

    operations: Sequence[Operation]
    prices: PriceList = PRICES

    def by_operation(self) -> dict[str, dict[str, float]]:
        return {op.name: dollars(op.monthly(), self.prices) for op in self.operations}

    def by_component(self) -> dict[str, float]:
        total = Usage()
        for op in self.operations:
            total += op.monthly()
        return dollars(total, self.prices)

    def total(self) -> float:
        return sum(self.by_component().values())

    def dominant(self) -> tuple[str, float]:
        """The most expensive component and its share of the total."""
        components = self.by_component()
        name = max(components, key=lambda c: components[c])
        total = self.total()
        return name, components[name] / total if total else 0.0


# ---------------------------------------------------------------- the stated traffic


@dataclass(frozen=True)
class Traffic:
    """The traffic a bill is for, per day; a month is `DAYS_PER_MONTH` days of it."""

    users: int = 10_000
    browsers_per_user: int = 2
    hours_per_day: float = 8
    notifications_per_user: float = 50
    jobs: float = 1_000
    job_seconds: int = 60
    chat_messages_per_user: float = 20
    payments: float = 100
    room_messages_per_user: float = 10  # posts to a group chat room
    room_visits_per_user: float = 4  # a room opened (subscribe) and closed again (unsubscribe)
    ping_minutes: float = 5  # client/realtime.js pingIntervalMs
    session_minutes: float = 110  # client/realtime.js maxConnectionAgeMs: it reconnects before the 2 h limit
    authorizer_ttl_seconds: int = 300  # Chalice's default for @app.authorizer()
    heartbeat_seconds: int = 15  # chalicelib.jobs.model.HEARTBEAT_SECONDS
    sweeps: float = 24 * 60  # sweep_stale_jobs runs every minute

    @property
    def browsers(self) -> int:
        return self.users * self.browsers_per_user


# Measured operations `operations` needs, by key.
MEASURED_KEYS = (
    "connect",
    "disconnect",
    "ping",
    "notify",
    "refetch job",
    "authorizer",
    "chat send",
    "chat refetch",
    "job submit",
    "job run",
    "job heartbeat",
    "payment",
    "payment refetch",
    "sweep",
    "room post",
    "room refetch",
    "subscribe",
    "unsubscribe",
    "presence refetch",
)


def operations(
    traffic: Traffic, measured: Mapping[str, Measured], memory_mb: Mapping[str, int], metric_series: int
) -> list[Operation]:
    """The month's operations for `traffic`, each priced from its measured occurrence.

    How often a refetch happens comes from the frames its cause was measured to send (one REST
    refetch per frame a browser receives); the authorizer runs at most once per browser per TTL.
    """
    missing = [key for key in MEASURED_KEYS if key not in measured]
    if missing:
        raise ValueError(f"no measurement for {', '.join(missing)}")
    t = traffic
    month = DAYS_PER_MONTH
    sessions = t.browsers * sessions_per_day(t.hours_per_day, t.session_minutes)
    daily: list[tuple[str, str, float]] = [
        (f"$connect (each browser every {t.session_minutes:g} min)", "connect", sessions),
        ("$disconnect", "disconnect", sessions),
        ("keep-alive ping and pong", "ping", t.browsers * t.hours_per_day * 60 / t.ping_minutes),
        ("notify (the stated notifications)", "notify", t.users * t.notifications_per_user),
        (
            "refetch after a notification (GET /jobs/{id})",
            "refetch job",
            t.users * t.notifications_per_user * measured["notify"].frames,
        ),
        ("chat message (POST /messages)", "chat send", t.users * t.chat_messages_per_user),
        (
            "refetch after a chat frame (unread count + conversation)",
            "chat refetch",
            t.users * t.chat_messages_per_user * measured["chat send"].frames,
        ),
        ("job submit (POST /jobs, SNS publish)", "job submit", t.jobs),
        (f"job run ({t.job_seconds} s report, SNS-invoked)", "job run", t.jobs),
        ("job heartbeat", "job heartbeat", t.jobs * (t.job_seconds // t.heartbeat_seconds)),
        (
            "refetch after a job frame (GET /jobs/{id})",
            "refetch job",
            t.jobs * measured["job run"].frames,
        ),
        ("Stripe webhook (POST /webhooks/stripe)", "payment", t.payments),
        (
            "refetch after a payment frame (GET /payments)",
            "payment refetch",
            t.payments * measured["payment"].frames,
        ),
        ("stale-job sweep (every minute)", "sweep", t.sweeps),
        (
            "room message (POST /rooms/{id}/messages, notify_topic)",
            "room post",
            t.users * t.room_messages_per_user,
        ),
        (
            "refetch after a room frame (GET /rooms/{id}/messages)",
            "room refetch",
            t.users * t.room_messages_per_user * measured["room post"].frames,
        ),
        ("room opened: subscribe on the socket", "subscribe", t.users * t.room_visits_per_user),
        ("room closed: unsubscribe on the socket", "unsubscribe", t.users * t.room_visits_per_user),
        (
            "refetch after a presence frame (GET /rooms/{id}/presence)",
            "presence refetch",
            # Each answer frame (`subscribed`, `unsubscribed`) aside, every frame is a presence-updated.
            t.users
            * t.room_visits_per_user
            * (max(0, measured["subscribe"].frames - 1) + max(0, measured["unsubscribe"].frames - 1)),
        ),
    ]
    # The webhook is the one REST route without the authorizer.
    authorized_requests = sum(
        per_day * measured[key].rest_requests for _, key, per_day in daily if key != "payment"
    )
    per_browser = authorized_requests / t.browsers
    daily.append(
        (
            f"REST authorizer (cached {t.authorizer_ttl_seconds} s per token)",
            "authorizer",
            t.browsers
            * authorizer_invocations(per_browser, t.hours_per_day * 3600, t.authorizer_ttl_seconds),
        )
    )
    result = [
        Operation(name, per_day * month, usage_of(measured[key], memory_mb)) for name, key, per_day in daily
    ]
    result.append(
        Operation(
            "connections held open",
            connection_minutes(t.browsers, t.hours_per_day) * month,
            Usage(connection_minutes=1),
        )
    )
    result.append(
        Operation(
            f"notify metrics ({metric_series} EMF metric series)", 1, Usage(custom_metrics=metric_series)
        )
    )
    return result


def lambda_memory(config: Mapping[str, Any]) -> dict[str, int]:
    """Memory (MB) per Lambda function from `.chalice/config.json`: its own setting, else the app's."""
    default = int(config.get("lambda_memory_size", 128))
    return {
        name: int(settings.get("lambda_memory_size", default))
        for name, settings in config.get("lambda_functions", {}).items()
    }
