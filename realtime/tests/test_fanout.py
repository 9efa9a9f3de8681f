"""Large notifies go to the fan-out workers: sharded onto SQS, delivered once per connection, idempotent.

Users' connections and topics' subscribers alike.

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
    rest_of_topic_shard,
    subscriber_shards,
    user_shards,
)
from chalice_realtime.notifier import Notifier, frame
from chalice_realtime.subscriptions import Subscription, SubscriptionStore
from chalice_realtime.testing.store import create_connections_table, create_topics_table
from chalice_realtime.topics import PRESENCE_UPDATED, Topics, topic_frame
from moto import mock_aws

TABLE = "fanout-test-connections"
TOPICS_TABLE = "fanout-test-topics"
FRAME = b'{"event":"jobs-updated"}'
HOUR_MS = 3_600_000


class Killed(BaseException):
    """What a Lambda killed mid-invocation looks like from inside: nothing after it runs."""


class RecordingTransport:
    """The Management API as the core sees it: counts each `frame` posted per connection (`frames`) and
    keeps any other frame in `others`; 410 for `gone`, FAILED for `failing`; raises `Killed` once
    `die_after` frames were posted; each post takes `latency` seconds."""

    def __init__(
        self,
        gone: Sequence[str] = (),
        failing: Sequence[str] = (),
        die_after: int | None = None,
        frame: bytes = FRAME,
        latency: float = 0.0,
    ) -> None:
        self.frames: Counter[str] = Counter()
        self.others: list[tuple[str, dict[str, Any]]] = []
        self.frame = frame
        self.latency = latency
        self.gone = set(gone)
        self.failing = set(failing)
        self.die_after = die_after
        self._lock = threading.Lock()

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        outcomes = []
        for cid in connection_ids:
            if self.latency:
                time.sleep(self.latency)
            with self._lock:
                if self.die_after is not None and sum(self.frames.values()) >= self.die_after:
                    raise Killed
                if cid in self.gone:
                    outcomes.append(Outcome.GONE)
                elif cid in self.failing:
                    outcomes.append(Outcome.FAILED)
                else:
                    if data == self.frame:
                        self.frames[cid] += 1
                    else:
                        self.others.append((cid, json.loads(data)))
                    outcomes.append(Outcome.DELIVERED)
        return outcomes

    def delete_connection(self, connection_id: str) -> Outcome:
        return Outcome.GONE


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_connections_table(dynamodb, TABLE)
        create_topics_table(dynamodb, TOPICS_TABLE)
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


def topics_of(aws: dict[str, Any], transport: RecordingTransport, **options: Any) -> Topics:
    """The core's topics over moto, everyone allowed, handing on to the test's queue."""
    return Topics(
        SubscriptionStore(TOPICS_TABLE, aws["dynamodb"]),
        store_of(aws),
        transport,
        authorizer=lambda: lambda user, topic: True,
        max_topics_per_connection=50,
        subscribe_rate=(1000, 60),
        fanout=aws["queue"],
        **options,
    )


def worker_for(
    aws: dict[str, Any], transport: RecordingTransport, clock: SteppedClock | None = None
) -> FanoutWorker:
    clock = clock or SteppedClock()
    ledger = ShardLedger(TABLE, aws["dynamodb"], clock=clock)
    topics = topics_of(aws, transport, clock=clock)
    return FanoutWorker(store_of(aws), transport, ledger, aws["queue"], topics=topics, clock=clock)


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


# ---------------------------------------------------------------- topics


def subscribe_many(
    aws: dict[str, Any], topic: str, count: int, *, connected_at: int | None = None
) -> list[str]:
    """`count` subscriptions of `topic` (one user and one connection row each, an hour old); their ids."""
    at = connected_at or int(time.time() * 1000) - HOUR_MS
    ids = []
    for start in range(0, count, 25):
        batch = [(f"sub-{n:06d}", f"member{n:06d}") for n in range(start, min(count, start + 25))]
        items = [
            {
                "pk": {"S": f"topic#{topic}"},
                "sk": {"S": f"sub#{user}#{cid}"},
                "connection_id": {"S": cid},
                "user_id": {"S": user},
                "connected_at": {"N": str(at)},
                "expires_at": {"N": str(at // 1000 + 7800)},
            }
            for cid, user in batch
        ]
        aws["dynamodb"].batch_write_item(
            RequestItems={TOPICS_TABLE: [{"PutRequest": {"Item": i}} for i in items]}
        )
        for cid, user in batch:
            store_of(aws).add(Connection(cid, user, at))
        ids += [cid for cid, _ in batch]
    return ids


def test_a_topic_larger_than_the_budget_is_handed_on_and_its_pages_delivered_once_each(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chalice_realtime.fanout.SHARD_CONNECTIONS", 200)  # pages of 200: a chain of links
    ids = subscribe_many(aws, "room:big", 1_000)
    data = topic_frame("room-messages-updated", "room:big")
    transport = RecordingTransport(frame=data, latency=0.001)
    # 1,000 posts a second for 0.2 s: one page is posted inline, the notify answers, the rest goes on.
    topics = topics_of(aws, transport, budget_seconds=0.2, posts_per_second=lambda: 1_000)

    started = time.monotonic()
    report = topics.notify_topic("room:big", "room-messages-updated")
    answered_in = time.monotonic() - started

    assert 150 <= report.delivered <= 200  # what 0.2 s allowed, read as one page
    assert report == DeliveryReport(delivered=report.delivered, deferred_topics=1)
    assert answered_in < 1.0
    (rest,) = queued(aws)
    assert (rest.topic, rest.subscribers, rest.cursor is not None) == ("room:big", (), True)
    reports = drain(aws, worker_for(aws, transport))

    # The rest, a worker per page of 200, each handing on the next before posting its own.
    assert [r.delivered for r in reports[:4]] == [200] * 4
    assert sum(r.delivered for r in reports) == 1_000 - report.delivered
    assert transport.frames == Counter({cid: 1 for cid in ids})  # every subscriber once
    assert transport.others == []


def test_a_topic_notify_with_no_time_left_hands_on_the_whole_topic(aws: dict[str, Any]) -> None:
    ids = subscribe_many(aws, "room:late", 30)
    transport = RecordingTransport(frame=topic_frame("room-messages-updated", "room:late"))

    with answering_within(0.5):  # the caller's Lambda must answer in 0.5 s: less than the 1 s margin
        report = topics_of(aws, transport).notify_topic("room:late", "room-messages-updated")

    assert report == DeliveryReport(deferred_topics=1)
    assert not transport.frames
    (rest,) = queued(aws)
    assert (rest.topic, rest.cursor) == ("room:late", None)  # from the first subscriber
    drain(aws, worker_for(aws, transport))
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_a_redelivered_topic_link_hands_on_the_same_next_link_and_sends_nothing_twice(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chalice_realtime.fanout.SHARD_CONNECTIONS", 50)
    ids = subscribe_many(aws, "room:again", 120)
    data = topic_frame("room-messages-updated", "room:again")
    shard = rest_of_topic_shard("n8", "room-messages-updated", data, "room:again", None)
    clock = SteppedClock()
    with pytest.raises(Killed):  # killed after it handed the next page on, before posting its own
        worker_for(aws, RecordingTransport(frame=data, die_after=0), clock).deliver(shard)
    clock.advance(LEASE_SECONDS + 1)
    transport = RecordingTransport(frame=data)
    worker = worker_for(aws, transport, clock)

    assert worker.deliver(shard) == DeliveryReport(delivered=50)  # SQS's redelivery
    assert worker.deliver(shard) == DeliveryReport()  # and once more, after it had finished
    links = queued(aws)
    assert [link.shard_id for link in links] == ["n8:t/1", "n8:t/1"]  # handed on twice, under one id
    drain(aws, worker)

    assert transport.frames == Counter({cid: 1 for cid in ids})  # the second copy of the link sent nothing


def test_a_killed_topic_worker_is_redelivered_and_resends_only_the_checkpoint_in_flight(
    aws: dict[str, Any],
) -> None:
    ids = subscribe_many(aws, "room:kill", 3 * CHECKPOINT_CONNECTIONS)
    data = topic_frame("room-messages-updated", "room:kill")
    shard = rest_of_topic_shard("n9", "room-messages-updated", data, "room:kill", None)
    dying = RecordingTransport(frame=data, die_after=2 * CHECKPOINT_CONNECTIONS + 10)
    clock = SteppedClock()

    with pytest.raises(Killed):
        worker_for(aws, dying, clock).deliver(shard)
    clock.advance(LEASE_SECONDS + 1)
    healthy = RecordingTransport(frame=data)
    worker_for(aws, healthy, clock).deliver(shard)

    assert set(healthy.frames) == set(ids[2 * CHECKPOINT_CONNECTIONS :])
    assert set(dying.frames) | set(healthy.frames) == set(ids)


def test_a_topic_workers_gone_subscriber_loses_its_subscription_and_row_and_presence_follows(
    aws: dict[str, Any],
) -> None:
    now = int(time.time() * 1000)
    old, young = subscribe_many(aws, "room:gone", 3, connected_at=now - HOUR_MS)[:2]
    store = SubscriptionStore(TOPICS_TABLE, aws["dynamodb"])
    store.remove([Subscription("room:gone", "member000001", young, 0)])
    store.add(Subscription("room:gone", "member000001", young, now - 5_000))  # may still be connecting
    data = topic_frame("room-messages-updated", "room:gone")
    transport = RecordingTransport(frame=data, gone=[old, young])
    shard = rest_of_topic_shard("n10", "room-messages-updated", data, "room:gone", None)

    report = worker_for(aws, transport).deliver(shard)

    assert report == DeliveryReport(delivered=1, gone=2)
    members = topics_of(aws, transport).members("room:gone")
    assert members == [
        "member000001",
        "member000002",
    ]  # the old one's subscription went, the young one's stays
    assert store_of(aws).get(old) is None and store_of(aws).get(young) is not None
    # The member who left is told to the others: presence-updated, to the one live subscriber.
    assert transport.others == [("sub-000002", {"event": PRESENCE_UPDATED, "topic": "room:gone"})]


def test_topic_frames_that_fail_inline_go_on_as_subscriber_shards(aws: dict[str, Any]) -> None:
    ids = subscribe_many(aws, "room:flaky", 3)
    data = topic_frame("room-messages-updated", "room:flaky")
    transport = RecordingTransport(frame=data, failing=[ids[1]])

    report = topics_of(aws, transport).notify_topic("room:flaky", "room-messages-updated")

    assert report == DeliveryReport(delivered=2, deferred=1)
    (shard,) = queued(aws)
    assert shard.subscribers == ((ids[1], "member000001", shard.subscribers[0][2]),)
    transport.failing.clear()  # the throttle passed
    drain(aws, worker_for(aws, transport))
    assert transport.frames == Counter({cid: 1 for cid in ids})


def test_a_topic_notify_whose_shards_cannot_be_queued_counts_them_failed(aws: dict[str, Any]) -> None:
    subscribe_many(aws, "room:nowhere", 5)
    transport = RecordingTransport(frame=topic_frame("room-messages-updated", "room:nowhere"))
    aws["sqs"].delete_queue(QueueUrl=aws["queue"].queue_url)

    with answering_within(0.5):
        report = topics_of(aws, transport).notify_topic("room:nowhere", "room-messages-updated")

    assert report == DeliveryReport(failed=1)  # never silent: the rest of the topic is counted and logged


def test_a_topic_shard_survives_its_message_and_fits_sqs() -> None:
    longest = "u" * 128
    page = [
        Subscription("room:42", f"{longest[:-6]}{n:06d}", f"AbCdEfGhIjKlMn{n:02d}=", 1_714_564_800_123)
        for n in range(1_000)
    ]
    data = topic_frame("room-messages-updated", "room:42")
    (shard,) = subscriber_shards(
        "0123456789abcdef0123456789abcdef", "room-messages-updated", data, "room:42", page
    )
    body = shard.to_message()
    assert len(body.encode()) < 250_000  # SQS takes 256 KiB per message and per batch
    assert Shard.from_message(body) == shard
    cursor = {"pk": {"S": "topic#room:42"}, "sk": {"S": "sub#uid-1#abc="}}
    rest = rest_of_topic_shard("n11", "room-messages-updated", data, "room:42", cursor)
    assert Shard.from_message(rest.to_message()) == rest
    for bad in (
        {**json.loads(rest.to_message()), "users": ["uid-1"]},  # two audiences
        {**json.loads(rest.to_message()), "cursor": "page 2"},
        {**json.loads(shard.to_message()), "subscribers": [["abc=", "uid-1"]]},
    ):
        with pytest.raises(ValueError, match="shard"):
            Shard.from_message(json.dumps(bad))
