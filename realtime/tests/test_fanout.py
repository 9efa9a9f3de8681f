"""Large notifies go to the fan-out workers: sharded onto SQS, delivered once per connection, idempotent.

moto's DynamoDB and SQS in-process through boto3; the Management API is a recording transport
passed in (the transports have their own tests), which can answer 410, fail, or die midway as a
Lambda killed by its timeout would.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from chalice_realtime import DeliveryReport, Outcome, Realtime, RealtimeSettings, use
from chalice_realtime.blueprint import fanout_worker
from chalice_realtime.budget import answering_within, notify_budget
from chalice_realtime.connections import Connection, ConnectionStore
from chalice_realtime.fanout import (
    CHECKPOINT_CONNECTIONS,
    LEASE_SECONDS,
    SHARD_CONNECTIONS,
    FanoutQueue,
    FanoutWorker,
    Shard,
    ShardBusy,
    ShardIncomplete,
    ShardLedger,
    connection_shards,
    user_shards,
)
from chalice_realtime.notifier import Notifier, frame
from moto import mock_aws

TABLE = "fanout-test-connections"
FRAME = b'{"event":"jobs-updated"}'
HOUR_MS = 3_600_000


class Killed(BaseException):
    """What a Lambda killed mid-invocation looks like from inside: nothing after it runs."""


class RecordingTransport:
    """The Management API as the core sees it: records each frame posted; 410 for `gone`, FAILED for
    `failing`; raises `Killed` once `die_after` frames were posted."""

    def __init__(
        self, gone: Sequence[str] = (), failing: Sequence[str] = (), die_after: int | None = None
    ) -> None:
        self.frames: Counter[str] = Counter()
        self.gone = set(gone)
        self.failing = set(failing)
        self.die_after = die_after
        self._lock = threading.Lock()

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        outcomes = []
        for cid in connection_ids:
            with self._lock:
                if self.die_after is not None and sum(self.frames.values()) >= self.die_after:
                    raise Killed
                if cid in self.gone:
                    outcomes.append(Outcome.GONE)
                elif cid in self.failing:
                    outcomes.append(Outcome.FAILED)
                else:
                    assert data == FRAME
                    self.frames[cid] += 1
                    outcomes.append(Outcome.DELIVERED)
        return outcomes

    def delete_connection(self, connection_id: str) -> Outcome:
        return Outcome.GONE


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "connection_id", "AttributeType": "S"},
                {"AttributeName": "user_id", "AttributeType": "S"},
                {"AttributeName": "connected_at", "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_user",
                    "KeySchema": [
                        {"AttributeName": "user_id", "KeyType": "HASH"},
                        {"AttributeName": "connected_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="fanout-test")["QueueUrl"]
        yield {"dynamodb": dynamodb, "sqs": sqs, "queue": FanoutQueue(url, sqs)}


def store_of(aws: dict[str, Any]) -> ConnectionStore:
    return ConnectionStore(TABLE, aws["dynamodb"])


def add_rows(aws: dict[str, Any], user_id: str, count: int, connected_at: int | None = None) -> list[str]:
    """`count` connection rows of `user_id` (BatchWriteItem), an hour old by default; their ids."""
    at = connected_at or int(time.time() * 1000) - HOUR_MS
    ids = [f"{user_id}-{n:06d}" for n in range(count)]
    for start in range(0, count, 25):
        aws["dynamodb"].batch_write_item(
            RequestItems={
                TABLE: [
                    {
                        "PutRequest": {
                            "Item": {
                                "connection_id": {"S": cid},
                                "user_id": {"S": user_id},
                                "connected_at": {"N": str(at + n)},
                                "expires_at": {"N": str(at // 1000 + 7800)},
                            }
                        }
                    }
                    for n, cid in enumerate(ids[start : start + 25], start)
                ]
            }
        )
    return ids


class SteppedClock:
    """The real time, plus what a test skips with `advance` (a visibility timeout, a lease)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def now(self) -> float:
        return time.time() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += seconds

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


def worker_for(
    aws: dict[str, Any], transport: RecordingTransport, clock: SteppedClock | None = None
) -> FanoutWorker:
    clock = clock or SteppedClock()
    ledger = ShardLedger(TABLE, aws["dynamodb"], clock=clock)
    return FanoutWorker(store_of(aws), transport, ledger, aws["queue"], clock=clock)


def drain(aws: dict[str, Any], worker: FanoutWorker) -> list[DeliveryReport]:
    """Run the worker on every message of the queue, as Lambda's event source mapping would, one by one."""
    reports = []
    while True:
        answer = aws["sqs"].receive_message(QueueUrl=aws["queue"].queue_url, MaxNumberOfMessages=10)
        messages = answer.get("Messages", [])
        if not messages:
            return reports
        for message in messages:
            reports.append(worker.deliver(Shard.from_message(message["Body"])))
            aws["sqs"].delete_message(QueueUrl=aws["queue"].queue_url, ReceiptHandle=message["ReceiptHandle"])


def queued(aws: dict[str, Any]) -> list[Shard]:
    """The shards on the queue, left on it (visible again at once)."""
    answer = aws["sqs"].receive_message(
        QueueUrl=aws["queue"].queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [Shard.from_message(m["Body"]) for m in answer.get("Messages", [])]


def test_an_audience_larger_than_the_budget_is_sharded_handed_on_and_delivered_once_each(
    aws: dict[str, Any],
) -> None:
    ids = add_rows(aws, "star", 2 * SHARD_CONNECTIONS + 1_000)
    transport = RecordingTransport()
    notifier = Notifier(
        store_of(aws), transport, fanout=aws["queue"], budget_seconds=25.0, posts_per_second=lambda: 10
    )

    started = time.monotonic()
    report = notifier.notify("star", "jobs-updated")
    answered_in = time.monotonic() - started

    # One page of the user's connections was read (the rest is behind a cursor, for the workers);
    # of it, what the budget allows was posted and the remainder handed on.
    assert report.delivered + report.deferred == SHARD_CONNECTIONS
    assert 0 < report.delivered <= 250 and report.deferred >= SHARD_CONNECTIONS - 250
    assert (report.gone, report.failed, report.deferred_users) == (0, 0, 1)
    assert answered_in < 25.0  # its budget: half for the lookup, the rest for posting
    assert sum(transport.frames.values()) == report.delivered

    drain(aws, worker_for(aws, transport))

    assert set(transport.frames) == set(ids)
    assert set(transport.frames.values()) == {1}  # every connection once, no more


def test_many_users_beyond_the_lookup_budget_go_on_as_user_shards(aws: dict[str, Any]) -> None:
    users = [f"fan{n:04d}" for n in range(1_200)]
    for user_id in users:
        add_rows(aws, user_id, 1)
    transport = RecordingTransport()
    notifier = Notifier(store_of(aws), transport, fanout=aws["queue"], budget_seconds=0.1)

    report = notifier.notify_users(users, "jobs-updated")

    assert report.deferred_users >= 1_200 - 80  # 16 lookup threads x 50/s x half of 0.1 s read inline
    assert report.delivered + report.deferred + report.deferred_users == 1_200
    drain(aws, worker_for(aws, transport))
    assert sorted(transport.frames) == sorted(f"{u}-000000" for u in users)
    assert set(transport.frames.values()) == {1}


def test_a_user_shard_finding_more_than_a_shards_worth_hands_the_rest_to_other_workers(
    aws: dict[str, Any],
) -> None:
    ids = add_rows(aws, "big1", 3_000) + add_rows(aws, "big2", 3_000)
    transport = RecordingTransport()
    (shard,) = user_shards("n6", "jobs-updated", FRAME, ["big1", "big2"])

    first = worker_for(aws, transport).deliver(shard)

    assert first.delivered == SHARD_CONNECTIONS
    (rest,) = queued(aws)
    assert len(rest.connections) == 6_000 - SHARD_CONNECTIONS
    drain(aws, worker_for(aws, transport))
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_frames_that_fail_inline_are_handed_on_not_dropped(aws: dict[str, Any]) -> None:
    ids = add_rows(aws, "ann", 3)
    transport = RecordingTransport(failing=[ids[1]])
    notifier = Notifier(store_of(aws), transport, fanout=aws["queue"])

    report = notifier.notify("ann", "jobs-updated")

    assert report == DeliveryReport(delivered=2, deferred=1)
    (shard,) = queued(aws)
    assert dict(shard.connections).keys() == {ids[1]}
    transport.failing.clear()  # the throttle passed
    drain(aws, worker_for(aws, transport))
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_a_killed_worker_is_redelivered_and_no_connection_gets_a_finished_checkpoint_twice(
    aws: dict[str, Any],
) -> None:
    rows = [(f"k-{n:05d}", 1) for n in range(3 * CHECKPOINT_CONNECTIONS)]
    (shard,) = connection_shards("n1", "jobs-updated", FRAME, rows)
    dying = RecordingTransport(die_after=2 * CHECKPOINT_CONNECTIONS + 10)
    clock = SteppedClock()

    with pytest.raises(Killed):
        worker_for(aws, dying, clock).deliver(shard)
    healthy = RecordingTransport()
    with pytest.raises(ShardBusy):  # delivered again while the killed attempt's lease still runs
        worker_for(aws, healthy, clock).deliver(shard)
    clock.advance(LEASE_SECONDS + 1)  # SQS's visibility timeout is longer than the lease
    worker_for(aws, healthy, clock).deliver(shard)
    worker_for(aws, healthy, clock).deliver(shard)  # and once more, after the shard had finished

    # The two checkpointed chunks are never sent again; only the chunk in flight when it died is.
    assert set(healthy.frames) == {cid for cid, _ in rows[2 * CHECKPOINT_CONNECTIONS :]}
    assert set(healthy.frames.values()) == {1}
    assert set(dying.frames) | set(healthy.frames) == {cid for cid, _ in rows}


def test_an_attempt_that_outlived_its_lease_stops_at_its_next_checkpoint(aws: dict[str, Any]) -> None:
    rows = [(f"s-{n:05d}", 1) for n in range(3 * CHECKPOINT_CONNECTIONS)]
    (shard,) = connection_shards("n7", "jobs-updated", FRAME, rows)
    clock = SteppedClock()
    second = RecordingTransport()

    class StalledTransport(RecordingTransport):
        """Its first chunk takes longer than the lease: SQS delivers the shard again meanwhile."""

        def post_to_connections(
            self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
        ) -> list[Outcome]:
            outcomes = super().post_to_connections(connection_ids, data, deadline=deadline)
            if sum(self.frames.values()) == CHECKPOINT_CONNECTIONS:
                clock.advance(LEASE_SECONDS + 1)
                worker_for(aws, second, clock).deliver(shard)
            return outcomes

    first = StalledTransport()
    with pytest.raises(ShardBusy):
        worker_for(aws, first, clock).deliver(shard)

    assert set(second.frames) == {cid for cid, _ in rows}  # the second attempt delivered the shard
    assert sum(first.frames.values()) == CHECKPOINT_CONNECTIONS  # the first sent no chunk after it lost it


def test_the_retry_of_a_finished_shard_sends_nothing(aws: dict[str, Any]) -> None:
    ids = add_rows(aws, "bo", 7)
    (shard,) = connection_shards("n2", "jobs-updated", FRAME, [(cid, 1) for cid in ids])
    transport = RecordingTransport()
    worker = worker_for(aws, transport)

    assert worker.deliver(shard) == DeliveryReport(delivered=7)
    assert worker.deliver(shard) == DeliveryReport()
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_failed_frames_raise_for_redelivery_which_sends_only_those(aws: dict[str, Any]) -> None:
    ids = add_rows(aws, "cy", 4)
    (shard,) = connection_shards("n3", "jobs-updated", FRAME, [(cid, 1) for cid in ids])
    transport = RecordingTransport(failing=[ids[2]])

    with pytest.raises(ShardIncomplete):
        worker_for(aws, transport).deliver(shard)
    transport.failing.clear()
    assert worker_for(aws, transport).deliver(shard) == DeliveryReport(delivered=1)
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_the_worker_removes_a_gone_connections_row_as_the_notifier_does(aws: dict[str, Any]) -> None:
    store = store_of(aws)
    now = int(time.time() * 1000)
    old, young, live = "dee-old", "dee-young", "dee-live"
    store.add(Connection(old, "dee", now - HOUR_MS))
    store.add(Connection(young, "dee", now - 5_000))  # its $connect may still be running
    store.add(Connection(live, "dee", now - HOUR_MS + 1))
    transport = RecordingTransport(gone=[old, young])
    rows = store.connection_times_of("dee")

    (shard,) = connection_shards("n4", "jobs-updated", FRAME, rows)
    report = worker_for(aws, transport).deliver(shard)

    assert report == DeliveryReport(delivered=1, gone=2)
    assert sorted(store.connection_ids_of("dee")) == sorted([young, live])

    # The notifier, given the same rows, keeps and removes the same ones.
    store.add(Connection(old, "dee", now - HOUR_MS))
    inline = Notifier(store, transport, fanout=aws["queue"]).notify("dee", "jobs-updated")
    assert inline == DeliveryReport(delivered=1, gone=2)
    assert sorted(store.connection_ids_of("dee")) == sorted([young, live])


def test_the_blueprints_worker_delivers_an_sqs_record_and_refuses_what_is_not_a_shard(
    aws: dict[str, Any],
) -> None:
    ids = add_rows(aws, "eve", 2)
    transport = RecordingTransport()
    settings = RealtimeSettings(connections_table=TABLE, fanout_queue_url=aws["queue"].queue_url)
    use(Realtime(settings, dynamodb=aws["dynamodb"], sqs=aws["sqs"], transport=transport))
    try:
        (shard,) = connection_shards("n5", "jobs-updated", FRAME, [(cid, 1) for cid in ids])
        fanout_worker(sqs_event(shard.to_message()), None)
        with pytest.raises(ValueError, match="shard"):  # raised: SQS retries it, then dead-letters it
            fanout_worker(sqs_event('{"event": "jobs-updated"}'), None)
    finally:
        use(None)
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_without_a_queue_every_frame_is_posted_inline_as_before(aws: dict[str, Any]) -> None:
    add_rows(aws, "fay", 3)
    transport = RecordingTransport(failing=["fay-000001"])
    report = Notifier(store_of(aws), transport).notify("fay", "jobs-updated")
    assert report == DeliveryReport(delivered=2, failed=1)


def test_a_notify_spends_less_than_its_budget_when_the_caller_must_answer_sooner() -> None:
    assert notify_budget(3.0) == 3.0
    with answering_within(1.5):
        assert 0.4 < notify_budget(3.0) <= 0.5  # 1.5 s left, less the 1 s margin
    with answering_within(0.2):
        assert notify_budget(3.0) == 0.0


def test_a_shard_survives_its_message_and_fits_sqs() -> None:
    rows = [(f"AbCdEfGhIjKlMn{n:02d}=", 1_714_564_800_123) for n in range(SHARD_CONNECTIONS)]
    (shard,) = connection_shards(
        "0123456789abcdef0123456789abcdef", "jobs-updated", frame("jobs-updated"), rows
    )
    body = shard.to_message()
    assert len(body.encode()) < 256 * 1024
    assert Shard.from_message(body) == shard
    assert json.loads(shard.frame) == {"event": "jobs-updated"}


def sqs_event(body: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:realtime-fanout",
                "awsRegion": "us-east-1",
            }
        ]
    }


def test_the_fanout_settings_are_read_and_checked() -> None:
    from chalice_realtime import ConfigurationError
    from chalice_realtime.settings import fanout_queue_name

    url = "https://sqs.eu-west-1.amazonaws.com/111122223333/app-dev-fanout"
    settings = RealtimeSettings.from_env({"FANOUT_QUEUE_URL": url, "REALTIME_NOTIFY_BUDGET_SECONDS": "2.5"})
    assert (settings.fanout_queue_url, settings.notify_budget_seconds) == (url, 2.5)
    assert RealtimeSettings.from_env({}).notify_budget_seconds == 0.5
    assert (fanout_queue_name({"FANOUT_QUEUE_URL": url}), fanout_queue_name({})) == (
        "app-dev-fanout",
        "realtime-fanout",
    )
    for bad in ("-1", "soon", "26"):
        with pytest.raises(ConfigurationError, match="REALTIME_NOTIFY_BUDGET_SECONDS"):
            RealtimeSettings.from_env({"REALTIME_NOTIFY_BUDGET_SECONDS": bad})
