"""The cost model: each step from measured counts to dollars, by AWS's billing rules (bench/costmodel.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import costmodel
from bench.costmodel import (
    COMPONENTS,
    PRICES,
    Bill,
    Index,
    Invocation,
    Measured,
    Operation,
    Traffic,
    Usage,
)

# ---------------------------------------------------------------- API Gateway WebSocket


@pytest.mark.parametrize(
    ("payload", "messages"),
    [(0, 1), (24, 1), (32 * 1024, 1), (32 * 1024 + 1, 2), (64 * 1024, 2), (100_000, 4)],
)
def test_websocket_messages_are_billed_per_started_32_kb(payload: int, messages: int) -> None:
    assert costmodel.websocket_messages(payload) == messages


def test_connection_minutes_of_browsers_held_open() -> None:
    # 10,000 users x 2 browsers x 8 h = 9.6 million connection minutes a day
    assert costmodel.connection_minutes(20_000, 8) == 9_600_000
    assert costmodel.connection_minutes(1, 0.5) == 30


@pytest.mark.parametrize(("hours", "sessions"), [(0.5, 1), (2, 1), (2.01, 2), (8, 4), (24, 12)])
def test_api_gateway_closes_a_connection_after_two_hours(hours: float, sessions: int) -> None:
    assert costmodel.sessions_per_day(hours) == sessions
    assert costmodel.sessions_per_day(hours, session_minutes=600) == sessions  # never longer than 2 h


def test_a_client_that_reconnects_earlier_opens_more_connections() -> None:
    assert costmodel.sessions_per_day(8, session_minutes=110) == 5  # 480 / 110 = 4.4


def test_one_million_messages_and_connection_minutes_cost_the_listed_prices() -> None:
    cost = costmodel.dollars(Usage(websocket_messages=1_000_000, connection_minutes=1_000_000))
    assert cost["API Gateway WebSocket messages"] == pytest.approx(1.00)
    assert cost["API Gateway connection minutes"] == pytest.approx(0.25)
    assert sum(cost.values()) == pytest.approx(1.25)


# ---------------------------------------------------------------- Lambda


@pytest.mark.parametrize(
    ("ms", "memory", "gb_s"),
    [
        (1000, 1024, 1.0),
        (1000, 512, 0.5),
        (100.2, 512, 0.101 * 0.5),  # rounded up to the next millisecond
        (0.3, 256, 0.001 * 0.25),
        (60_000, 512, 30.0),
    ],
)
def test_gb_seconds_round_duration_up_to_the_millisecond(ms: float, memory: int, gb_s: float) -> None:
    assert costmodel.gb_seconds(ms, memory) == pytest.approx(gb_s)


def test_lambda_dollars_from_gb_seconds_and_requests() -> None:
    # AWS's own example: 3 million runs of 1 s at 512 MB = 1.5 million GB-s, before the free tier
    usage = Usage(lambda_gb_seconds=3_000_000 * costmodel.gb_seconds(1000, 512), lambda_requests=3_000_000)
    cost = costmodel.dollars(usage)
    assert cost["Lambda duration"] == pytest.approx(1_500_000 * 0.0000166667)
    assert cost["Lambda requests"] == pytest.approx(0.60)


# ---------------------------------------------------------------- DynamoDB


@pytest.mark.parametrize(
    ("size", "transactional", "units"),
    [(0, False, 1), (1, False, 1), (1024, False, 1), (1025, False, 2), (3000, False, 3), (1025, True, 4)],
)
def test_write_units_per_started_kb_doubled_in_a_transaction(
    size: int, transactional: bool, units: int
) -> None:
    assert costmodel.write_units(size, transactional=transactional) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [
        (0, False, 0.5),
        (0, True, 1.0),
        (4096, True, 1.0),
        (4097, True, 2.0),
        (4097, False, 1.0),
        (8192, False, 1.0),
    ],
)
def test_read_units_per_started_4_kb_halved_when_eventually_consistent(
    size: int, consistent: bool, units: float
) -> None:
    assert costmodel.read_units(size, consistent=consistent) == units


def test_transactional_reads_cost_twice_a_strongly_consistent_read() -> None:
    assert costmodel.read_units(5000, consistent=False, transactional=True) == 4.0


def test_a_query_sums_its_items_before_rounding() -> None:
    item = {"pk": {"S": "p"}, "blob": {"S": "x" * 1995}}  # 2 + 1 + 4 + 1995 = 2,002 bytes
    assert costmodel.item_size(item) == 2002
    summed = costmodel.read_units(sum(costmodel.item_size(i) for i in [item] * 3), consistent=True)
    per_item = sum(costmodel.read_units(costmodel.item_size(i), consistent=True) for i in [item] * 3)
    assert (summed, per_item) == (2.0, 3.0)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "abc"}, 3),
        ({"S": "é"}, 2),  # UTF-8 bytes, not characters
        ({"N": "0"}, 2),
        ({"N": "7"}, 2),
        ({"N": "1700000000000"}, 2),  # trailing zeros trimmed: 2 significant digits
        ({"N": "1700000000001"}, 8),  # 13 significant digits
        ({"N": "-12.50"}, 3),
        ({"B": b"\x00\x01\x02"}, 3),
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"SS": ["a", "bc"]}, 3),
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (1 + 2) + (1 + 2)),
        ({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1),
    ],
)
def test_attribute_value_sizes(value: dict[str, Any], size: int) -> None:
    assert costmodel.value_size(value) == size


def test_item_size_counts_attribute_names() -> None:
    item = {"connection_id": {"S": "abc="}, "expires_at": {"N": "1700007800"}}
    # 1700007800: 8 significant digits, 4 bytes, plus 1
    assert costmodel.item_size(item) == len("connection_id") + 4 + len("expires_at") + 5
    assert costmodel.item_size(None) == 0


def test_unknown_attribute_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown DynamoDB type"):
        costmodel.value_size({"X": "1"})


BY_USER = Index("by_user", ("user_id", "connected_at"), ("connection_id",))
ROW = {
    "connection_id": {"S": "c1"},
    "user_id": {"S": "alice"},
    "connected_at": {"N": "1"},
    "expires_at": {"N": "9"},
}


def test_an_index_entry_holds_its_keys_the_table_keys_and_the_projection() -> None:
    assert BY_USER.entry(ROW) == {k: ROW[k] for k in ("connection_id", "user_id", "connected_at")}
    assert Index("all", ("user_id",), ("connection_id",), None).entry(ROW) == ROW
    assert BY_USER.entry({"connection_id": {"S": "c1"}}) is None  # sparse: no index key, no entry


def test_index_writes_follow_what_changed() -> None:
    entry = costmodel.item_size(BY_USER.entry(ROW))
    moved = {**ROW, "connected_at": {"N": "2"}}
    assert costmodel.index_writes(None, ROW, BY_USER) == [entry]  # added
    assert costmodel.index_writes(ROW, None, BY_USER) == [entry]  # deleted
    assert costmodel.index_writes(ROW, {**ROW, "expires_at": {"N": "10"}}, BY_USER) == []  # not projected
    assert costmodel.index_writes(ROW, moved, BY_USER) == [entry, entry]  # key changed: delete + put
    projecting = Index("p", ("user_id",), ("connection_id",), ("expires_at",))
    changed = {**ROW, "expires_at": {"N": "10"}}
    assert costmodel.index_writes(ROW, changed, projecting) == [
        costmodel.item_size(projecting.entry(changed))
    ]


def test_storage_adds_100_bytes_per_item_and_per_index_entry() -> None:
    size = costmodel.item_size(ROW)
    entry = costmodel.item_size(BY_USER.entry(ROW))
    assert costmodel.stored_bytes(ROW) == size + 100
    assert costmodel.stored_bytes(ROW, [BY_USER]) == size + 100 + entry + 100
    assert costmodel.stored_bytes(None, [BY_USER]) == 0


def test_dynamodb_dollars_at_the_on_demand_prices() -> None:
    cost = costmodel.dollars(Usage(write_units=2_000_000, read_units=8_000_000, storage_gb_months=4))
    assert cost["DynamoDB writes"] == pytest.approx(1.25)
    assert cost["DynamoDB reads"] == pytest.approx(1.00)
    assert cost["DynamoDB storage"] == pytest.approx(1.00)


# ---------------------------------------------------------------- SNS, CloudWatch, authorizer


@pytest.mark.parametrize(("payload", "publishes"), [(0, 1), (64 * 1024, 1), (64 * 1024 + 1, 2)])
def test_sns_publishes_are_billed_per_started_64_kb(payload: int, publishes: int) -> None:
    assert costmodel.sns_publishes(payload) == publishes


def test_log_bytes_add_26_bytes_per_event_and_cost_50_cents_a_gib() -> None:
    assert costmodel.log_bytes(["abc", "é"]) == 3 + 26 + 2 + 26
    cost = costmodel.dollars(Usage(log_bytes=costmodel.GIB, custom_metrics=10))
    assert cost["CloudWatch Logs ingestion"] == pytest.approx(0.50)
    assert cost["CloudWatch custom metrics"] == pytest.approx(3.00)


def test_the_authorizer_runs_at_most_once_per_ttl_and_never_more_than_requests() -> None:
    assert costmodel.authorizer_invocations(10, 8 * 3600, 300) == 10
    assert costmodel.authorizer_invocations(500, 8 * 3600, 300) == 96


# ---------------------------------------------------------------- from measurements to the bill


def test_usage_of_one_measured_occurrence() -> None:
    measured = Measured(
        invocations=(Invocation("api_handler", 100.2), Invocation("api_handler", 50, request=False)),
        messages_in=(0,),
        frames_out=(24, 40_000),
        rest_requests=1,
        write_units=3,
        read_units=0.5,
        stored_bytes=costmodel.GIB,
        sns_payloads=(70_000,),
        log_lines=("x" * 74,),
    )
    usage = costmodel.usage_of(measured, {"api_handler": 512})
    assert usage.lambda_gb_seconds == pytest.approx((0.101 + 0.050) * 0.5)
    assert usage.lambda_requests == 1  # work inside another run is not a request of its own
    assert usage.websocket_messages == 1 + 1 + 2
    assert (usage.rest_requests, usage.write_units, usage.read_units) == (1, 3, 0.5)
    assert usage.storage_gb_months == pytest.approx(0.5)  # stored half the month on average
    assert usage.sns_publishes == 2
    assert usage.log_bytes == 100 + costmodel.LAMBDA_PLATFORM_LOG_BYTES


def test_usage_adds_and_scales() -> None:
    total = Usage(rest_requests=2, log_bytes=10) + Usage(rest_requests=1, write_units=4)
    assert total == Usage(rest_requests=3, write_units=4, log_bytes=10)
    assert total.times(2) == Usage(rest_requests=6, write_units=8, log_bytes=20)


def test_per_operation_totals_add_up_to_the_component_totals() -> None:
    bill = Bill(
        [
            Operation(
                "ping", 57_600_000, Usage(websocket_messages=2, lambda_gb_seconds=0.001, lambda_requests=1)
            ),
            Operation("refetch", 30_000_000, Usage(rest_requests=1, read_units=0.5, lambda_requests=1)),
            Operation("held open", 288_000_000, Usage(connection_minutes=1)),
        ]
    )
    per_op = bill.by_operation()
    components = bill.by_component()
    for c in COMPONENTS:
        assert sum(op[c.name] for op in per_op.values()) == pytest.approx(components[c.name])
    assert bill.total() == pytest.approx(sum(sum(op.values()) for op in per_op.values()))
    assert per_op["refetch"]["API Gateway REST requests"] == pytest.approx(105.0)
    assert per_op["held open"]["API Gateway connection minutes"] == pytest.approx(72.0)
    assert bill.dominant() == ("API Gateway WebSocket messages", pytest.approx(115.2 / bill.total()))


def measurements(frames: int = 2) -> dict[str, Measured]:
    one = Measured(invocations=(Invocation("api_handler", 10),), rest_requests=1, frames_out=(24,) * frames)
    return {key: one for key in costmodel.MEASURED_KEYS}


def test_operations_count_the_stated_traffic_over_30_days() -> None:
    traffic = Traffic()
    ops = {op.name: op for op in costmodel.operations(traffic, measurements(), {"api_handler": 512}, 8)}
    browsers = 20_000
    assert ops["$connect (each browser every 110 min)"].per_month == browsers * 5 * 30
    assert ops["keep-alive ping and pong"].per_month == browsers * 8 * 60 / 5 * 30
    assert ops["notify (the stated notifications)"].per_month == 10_000 * 50 * 30
    # one refetch per frame a browser receives: 2 frames (browsers) per notify
    assert ops["refetch after a notification (GET /jobs/{id})"].per_month == 10_000 * 50 * 2 * 30
    assert ops["job heartbeat"].per_month == 1_000 * 4 * 30
    assert ops["connections held open"].per_month == browsers * 8 * 60 * 30
    assert ops["connections held open"].usage == Usage(connection_minutes=1)
    assert ops["notify metrics (8 EMF metric series)"].usage == Usage(custom_metrics=8)
    # far more REST requests per browser than 5-minute windows in 8 h: the authorizer is capped
    assert ops["REST authorizer (cached 300 s per token)"].per_month == browsers * 96 * 30


def test_refetches_follow_the_measured_frames() -> None:
    traffic = Traffic(users=100, browsers_per_user=3)
    ops = {
        op.name: op for op in costmodel.operations(traffic, measurements(frames=3), {"api_handler": 512}, 0)
    }
    assert ops["refetch after a chat frame (unread count + conversation)"].per_month == 100 * 20 * 3 * 30
    assert ops["refetch after a payment frame (GET /payments)"].per_month == 100 * 3 * 30


def test_operations_refuse_a_missing_measurement() -> None:
    partial = measurements()
    del partial["sweep"]
    with pytest.raises(ValueError, match="sweep"):
        costmodel.operations(Traffic(), partial, {"api_handler": 512}, 0)


def test_lambda_memory_per_function_falls_back_to_the_apps_setting() -> None:
    config = {
        "lambda_memory_size": 256,
        "lambda_functions": {"run_job": {"lambda_memory_size": 1024}, "x": {}},
    }
    assert costmodel.lambda_memory(config) == {"run_job": 1024, "x": 256}


def test_the_price_table_says_where_and_when_each_price_is_from() -> None:
    assert (PRICES.region, PRICES.as_of) == ("us-east-1", "2026-12-01")
    prices = [p for p in vars(PRICES).values() if isinstance(p, costmodel.Price)]
    assert {c.price for c in COMPONENTS} | {"http_request"} == set(vars(PRICES)) - {"region", "as_of"}
    assert all(p.source.startswith("https://aws.amazon.com/") and p.usd > 0 for p in prices)
    assert not math.isclose(PRICES.dynamodb_write_unit.usd, 1.25)  # the price after November 2024's cut


# ---------------------------------------------------------------- the DynamoDB meter, against moto


def test_the_capacity_meter_prices_the_connection_stores_calls(aws: dict[str, Any]) -> None:
    import boto3
    from chalice_realtime.connections import Connection, ConnectionStore

    from bench.cost import CapacityMeter, table_shapes
    from tests.conftest import TEST_ENV

    meter = CapacityMeter(boto3.client("dynamodb", region_name="us-east-1"), table_shapes(TEST_ENV))
    meter.watch(aws["dynamodb"])
    store = ConnectionStore(TEST_ENV["CONNECTIONS_TABLE"], aws["dynamodb"])
    connection = Connection("c1=", "alice", 1_700_000_000_000)

    def spent() -> tuple[float, float, int]:
        write, read, stored, _ = meter.reading()
        return write, read, stored

    store.add(connection)  # the row (1 KB or less) and its entry in the user index
    item = aws["dynamodb"].get_item(
        TableName=TEST_ENV["CONNECTIONS_TABLE"], Key={"connection_id": {"S": "c1="}}
    )
    index = next(
        i for i in table_shapes(TEST_ENV)[TEST_ENV["CONNECTIONS_TABLE"]].indexes if i.name == "by_user"
    )
    row_bytes = costmodel.stored_bytes(item["Item"], [index])
    assert spent() == (2, 0.5, row_bytes)  # the test's own GetItem: an eventually consistent read
    assert store.confirm(connection)  # the same row again: the index entry is unchanged
    assert spent() == (3, 0.5, row_bytes)
    assert store.connection_ids_of("alice") == ["c1="]  # a Query on the index, eventually consistent
    assert spent() == (3, 1.0, row_bytes)
    store.remove("c1=")  # the row and its index entry
    assert spent() == (5, 1.0, 0)
    assert not store.confirm(connection)  # a failed conditional write still bills a unit
    assert spent() == (6, 1.0, 0)


def test_the_generated_section_replaces_only_itself_in_the_docs_page() -> None:
    from bench.cost import SECTION_END, SECTION_HEADING, SECTION_START, with_section

    first = with_section("# Performance\n\nprose\n", "$1 a month")
    assert first.startswith("# Performance\n\nprose\n\n" + SECTION_HEADING)
    assert f"{SECTION_START}\n\n$1 a month\n\n{SECTION_END}" in first
    page = first + "\n## Later section\n"
    second = with_section(page, "$2 a month")
    assert "$1 a month" not in second and "$2 a month" in second
    assert second.count(SECTION_HEADING) == 1 and second.endswith("## Later section\n")


def test_the_clients_ping_interval_and_connection_age_are_read_from_its_source(tmp_path: Any) -> None:
    from bench.cost import client_minutes

    assert client_minutes("pingIntervalMs") > 0 and client_minutes("maxConnectionAgeMs") <= 120
    source = tmp_path / "realtime.js"
    source.write_text("const DEFAULTS = {\n  pingIntervalMs: 4 * 60_000, // idle limit\n  other: 1,\n};\n")
    assert client_minutes("pingIntervalMs", source) == 4
    with pytest.raises(RuntimeError, match="maxConnectionAgeMs"):
        client_minutes("maxConnectionAgeMs", source)


def test_other_choices_are_priced_from_the_same_measurements() -> None:
    from bench.cost import SOCKET_SIDE, render_what_ifs

    memory = {"api_handler": 512, "run_job": 512}
    bill = Bill(costmodel.operations(Traffic(), measurements(), memory, 0), PRICES)
    total = bill.total()
    rest = bill.by_component()["API Gateway REST requests"]
    sockets = sum(bill.by_component()[c] for c in SOCKET_SIDE)
    lines = render_what_ifs(bill, Traffic(), measurements(), memory, 0).splitlines()[4:]
    changes = {line.split("|")[1].strip()[:12]: line.split("|")[3].strip() for line in lines}
    http_api = -rest * (1 - 1.00 / 3.50)
    assert changes["an HTTP API "] == f"{http_api:+,.2f} ({http_api / total:+.0%})"
    assert changes["3 tabs per b"].startswith(f"{2 * sockets:+,.2f}")
    assert changes["pings every "].startswith("-")  # fewer pings: fewer messages and runs


def test_the_capacity_meter_bills_the_items_read_not_the_projection(aws: dict[str, Any]) -> None:
    import boto3

    from bench.cost import CapacityMeter, table_shapes
    from tests.conftest import TEST_ENV

    meter = CapacityMeter(boto3.client("dynamodb", region_name="us-east-1"), table_shapes(TEST_ENV))
    table = TEST_ENV["MESSAGES_TABLE"]
    items = [{"pk": {"S": "conv#a#b"}, "sk": {"S": f"msg#{n}"}, "text": {"S": "x" * 2000}} for n in range(3)]
    for item in items:
        aws["dynamodb"].put_item(TableName=table, Item=item)
    meter.watch(aws["dynamodb"])
    page = aws["dynamodb"].query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "conv#a#b"}},
        ProjectionExpression="#sk",
        ExpressionAttributeNames={"#sk": "sk"},
    )
    assert [item.keys() for item in page["Items"]] == [{"sk"}] * 3  # what the caller gets back
    size = sum(costmodel.item_size(item) for item in items)  # about 6 KB read: 2 units, halved
    assert meter.reading()[1] == costmodel.read_units(size, consistent=False) == 1.0
