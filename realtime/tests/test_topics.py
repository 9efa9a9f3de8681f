"""Topics: subscribe / unsubscribe frames, notify_topic page by page, unsubscribe_user, presence, cleanup.

The core on moto's DynamoDB with a recording Management API (`chalice_realtime.testing.frames`), except
the last tests, which post through the shipped transport to moto's Management API over a socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice_realtime import DeliveryReport, Realtime, RealtimeSettings, authorize_topics
from chalice_realtime.connections import Connection, ConnectionStore
from chalice_realtime.subscriptions import Subscription, SubscriptionStore
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.frames import RecordingTransport
from chalice_realtime.testing.store import create_topics_table
from chalice_realtime.topics import Topics
from fakes.env import TEST_ENV

TOPICS_TABLE = "test-topics"
HOUR_MS = 3_600_000


@dataclass
class World:
    """The core's topics over moto, with a fake clock and a recording Management API."""

    dynamodb: Any
    clock: FakeClock
    transport: RecordingTransport
    members: dict[str, set[str]] = field(default_factory=dict)  # topic -> who may subscribe
    cap: int = 50
    rate: tuple[int, int] = (1000, 60)
    page_size: int = 1000

    @property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(TEST_ENV["CONNECTIONS_TABLE"], self.dynamodb)

    @property
    def store(self) -> SubscriptionStore:
        return SubscriptionStore(TOPICS_TABLE, self.dynamodb, page_size=self.page_size)

    def topics(self, authorizer: Callable[[str, str], bool] | None = None) -> Topics:
        may = authorizer or (lambda user, topic: user in self.members.get(topic, set()))
        return Topics(
            self.store,
            self.connections,
            self.transport,
            authorizer=lambda: may,
            max_topics_per_connection=self.cap,
            subscribe_rate=self.rate,
            clock=self.clock,
        )

    def connect(self, user_id: str, connection_id: str, *, age_ms: int = HOUR_MS) -> None:
        connected_at = int(self.clock.now() * 1000) - age_ms
        self.connections.add(Connection(connection_id, user_id, connected_at))

    def frames(self, connection_id: str) -> list[dict[str, str]]:
        return [sent.frame for sent in self.transport.sent if sent.connection_id == connection_id]

    def subscription_rows(self) -> list[dict[str, Any]]:
        items = self.dynamodb.scan(TableName=TOPICS_TABLE)["Items"]
        return [item for item in items if item["sk"]["S"].startswith("sub#")]


@pytest.fixture
def world(aws: dict[str, Any]) -> World:
    create_topics_table(aws["dynamodb"], TOPICS_TABLE)
    return World(aws["dynamodb"], FakeClock(), RecordingTransport())


def subscribed(topic: str) -> dict[str, str]:
    return {"event": "subscribed", "topic": topic}


def refused(topic: str) -> dict[str, str]:
    return {"event": "subscribe-refused", "topic": topic}


def presence(topic: str) -> dict[str, str]:
    return {"event": "presence-updated", "topic": topic}


# ---------------------------------------------------------------- subscribe


def test_a_member_is_subscribed_and_hears_the_topic_a_stranger_is_refused_and_hears_nothing(
    world: World,
) -> None:
    world.members["room:42"] = {"alice"}
    world.connect("alice", "a1")
    world.connect("mallory", "m1")
    topics = world.topics()

    topics.subscribe("a1", "room:42")
    topics.subscribe("m1", "room:42")
    report = topics.notify_topic("room:42", "room-messages-updated")

    assert world.frames("a1") == [
        subscribed("room:42"),
        presence("room:42"),
        {"event": "room-messages-updated", "topic": "room:42"},
    ]
    assert world.frames("m1") == [refused("room:42")]
    assert report == DeliveryReport(delivered=1)


def test_with_no_authorizer_every_subscribe_is_refused(world: World) -> None:
    world.connect("alice", "a1")
    topics = Topics(
        world.store,
        world.connections,
        world.transport,
        authorizer=lambda: None,
        max_topics_per_connection=50,
        subscribe_rate=(100, 60),
        clock=world.clock,
    )
    topics.subscribe("a1", "room:1")
    assert world.frames("a1") == [refused("room:1")]
    assert world.subscription_rows() == []


@pytest.mark.parametrize("topic", ["Room:1", "room 1", "", "-room", "r" * 129, "room/1", "róom"])
def test_an_invalid_topic_name_is_refused_without_asking_the_authorizer(world: World, topic: str) -> None:
    asked: list[str] = []
    world.connect("alice", "a1")
    world.topics(lambda user, name: asked.append(name) is None).subscribe("a1", topic)
    assert world.frames("a1") == [refused(topic)]
    assert asked == []


@pytest.mark.parametrize("topic", [None, 42, ["room:1"], {"t": 1}, "r" * 300])
def test_a_topic_that_is_not_a_short_string_gets_no_answer(world: World, topic: Any) -> None:
    world.connect("alice", "a1")
    world.topics(lambda user, name: True).subscribe("a1", topic)
    assert world.frames("a1") == []


def test_an_authorizer_that_raises_refuses(world: World) -> None:
    world.connect("alice", "a1")

    def broken(user_id: str, topic: str) -> bool:
        raise RuntimeError("membership lookup failed")

    world.topics(broken).subscribe("a1", "room:1")
    assert world.frames("a1") == [refused("room:1")]


def test_a_truthy_answer_that_is_not_true_refuses(world: World) -> None:
    world.connect("alice", "a1")
    world.topics(lambda user, topic: "yes").subscribe("a1", "room:1")  # type: ignore[arg-type, return-value]
    assert world.frames("a1") == [refused("room:1")]


def test_a_connection_that_is_not_stored_cannot_subscribe(world: World) -> None:
    world.topics(lambda user, topic: True).subscribe("ghost", "room:1")
    assert world.frames("ghost") == [refused("room:1")]
    assert world.subscription_rows() == []


def test_the_authorizer_runs_on_every_subscribe_so_access_removed_meanwhile_is_enforced(world: World) -> None:
    world.members["room:1"] = {"alice"}
    world.connect("alice", "a1")
    topics = world.topics()
    topics.subscribe("a1", "room:1")
    topics.unsubscribe("a1", "room:1")
    world.members["room:1"] = set()  # removed while the browser was offline
    topics.subscribe("a1", "room:1")  # its re-subscribe after a reconnect
    keys = [frame["event"] for frame in world.frames("a1")]
    assert keys[0] == "subscribed" and keys[-1] == "subscribe-refused"


def test_subscribing_twice_is_one_subscription(world: World) -> None:
    world.connect("alice", "a1")
    topics = world.topics(lambda user, topic: True)
    topics.subscribe("a1", "room:1")
    topics.subscribe("a1", "room:1")
    assert [f["event"] for f in world.frames("a1")] == ["subscribed", "presence-updated", "subscribed"]
    assert len(world.subscription_rows()) == 1


def test_at_most_the_cap_of_topics_per_connection(world: World) -> None:
    world.cap = 3
    world.connect("alice", "a1")
    topics = world.topics(lambda user, topic: True)
    for n in range(4):
        topics.subscribe("a1", f"t{n}")
    answers = [f for f in world.frames("a1") if f["event"] != "presence-updated"]
    assert answers == [subscribed("t0"), subscribed("t1"), subscribed("t2"), refused("t3")]
    topics.unsubscribe("a1", "t0")
    topics.subscribe("a1", "t3")
    assert world.frames("a1")[-2:] == [subscribed("t3"), presence("t3")]


def test_subscribes_beyond_the_users_rate_are_refused_and_write_nothing(world: World) -> None:
    world.rate = (2, 60)
    world.connect("alice", "a1")
    topics = world.topics(lambda user, topic: True)
    for n in range(3):
        topics.subscribe("a1", f"t{n}")
    assert [f for f in world.frames("a1") if f["event"] != "presence-updated"][-1] == refused("t2")
    assert len(world.subscription_rows()) == 2
    world.clock.advance(60)  # the next window
    topics.subscribe("a1", "t2")
    assert subscribed("t2") in world.frames("a1")


def test_a_subscription_expires_with_its_connection_row(world: World) -> None:
    world.connect("alice", "a1", age_ms=0)
    world.topics(lambda user, topic: True).subscribe("a1", "room:1")
    (row,) = world.subscription_rows()
    connection = world.dynamodb.get_item(
        TableName=TEST_ENV["CONNECTIONS_TABLE"], Key={"connection_id": {"S": "a1"}}
    )["Item"]
    assert row["expires_at"] == connection["expires_at"]
    ttl = world.dynamodb.describe_time_to_live(TableName=TOPICS_TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"


# ---------------------------------------------------------------- unsubscribe, disconnect, revocation


def test_an_unsubscribed_connection_hears_nothing_more(world: World) -> None:
    world.connect("alice", "a1")
    world.connect("bob", "b1")
    topics = world.topics(lambda user, topic: True)
    topics.subscribe("a1", "room:1")
    topics.subscribe("b1", "room:1")
    topics.unsubscribe("a1", "room:1")
    before = len(world.frames("a1"))
    topics.notify_topic("room:1", "room-messages-updated")
    assert world.frames("a1")[before - 1] == {"event": "unsubscribed", "topic": "room:1"}
    assert len(world.frames("a1")) == before
    assert world.frames("b1")[-1] == {"event": "room-messages-updated", "topic": "room:1"}


def test_unsubscribe_of_a_topic_never_subscribed_is_answered_and_writes_nothing(world: World) -> None:
    world.connect("alice", "a1")
    world.topics(lambda user, topic: True).unsubscribe("a1", "room:9")
    assert world.frames("a1") == [{"event": "unsubscribed", "topic": "room:9"}]


def test_unsubscribe_user_ends_every_connection_of_that_user_and_tells_them(world: World) -> None:
    world.connect("bob", "b1")
    world.connect("bob", "b2")
    world.connect("alice", "a1")
    topics = world.topics(lambda user, topic: True)
    for cid in ("b1", "b2", "a1"):
        topics.subscribe(cid, "room:1")

    assert topics.unsubscribe_user("room:1", "bob") == 2
    topics.notify_topic("room:1", "room-messages-updated")

    for cid in ("b1", "b2"):
        assert {"event": "unsubscribed", "topic": "room:1"} in world.frames(cid)
        assert {"event": "room-messages-updated", "topic": "room:1"} not in world.frames(cid)
    assert topics.members("room:1") == ["alice"]
    assert world.frames("a1")[-1] == {"event": "room-messages-updated", "topic": "room:1"}


def test_disconnect_removes_every_subscription_of_the_connection_without_a_scan(world: World) -> None:
    world.connect("alice", "a1")
    world.connect("bob", "b1")
    topics = world.topics(lambda user, topic: True)
    for topic in ("t1", "t2", "t3"):
        topics.subscribe("a1", topic)
    topics.subscribe("b1", "t1")
    scans: list[str] = []
    world.dynamodb.meta.events.register("before-call.dynamodb.Scan", lambda **kw: scans.append("scan"))

    topics.forget_connection("a1")

    assert scans == []
    assert {row["connection_id"]["S"] for row in world.subscription_rows()} == {"b1"}
    assert world.frames("b1")[-1] == presence("t1")  # alice left t1


# ---------------------------------------------------------------- presence


def test_members_are_each_user_once_and_leave_when_their_last_connection_does(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    for user, cid in (("alice", "a1"), ("alice", "a2"), ("bob", "b1")):
        world.connect(user, cid)
        topics.subscribe(cid, "room:1")
    assert topics.members("room:1") == ["alice", "bob"]
    topics.forget_connection("a1")
    assert topics.members("room:1") == ["alice", "bob"]
    topics.forget_connection("a2")
    assert topics.members("room:1") == ["bob"]


def test_presence_is_sent_when_a_user_arrives_or_leaves_not_for_their_second_tab(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    world.connect("bob", "b1")
    topics.subscribe("b1", "room:1")
    seen = lambda: [f for f in world.frames("b1") if f["event"] == "presence-updated"]  # noqa: E731
    assert len(seen()) == 1  # bob's own arrival
    world.clock.advance(2)
    world.connect("alice", "a1")
    topics.subscribe("a1", "room:1")
    assert len(seen()) == 2
    world.clock.advance(2)
    world.connect("alice", "a2")
    topics.subscribe("a2", "room:1")  # alice was here already
    assert len(seen()) == 2
    world.clock.advance(2)
    topics.unsubscribe("a1", "room:1")  # alice is still here through a2
    assert len(seen()) == 2
    world.clock.advance(2)
    topics.unsubscribe("a2", "room:1")
    assert len(seen()) == 3


class ParallelClock(FakeClock):
    """Handlers running side by side: one handler's wait for the next second does not delay the others."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def presence_sent_at(world: World, connection_id: str) -> list[float]:
    """Installs a recorder: the clock's time of each `presence-updated` posted to `connection_id`."""
    sent_at: list[float] = []
    original = world.transport.post_to_connections

    def recording(ids: Any, data: bytes, **options: Any) -> Any:
        if json.loads(data)["event"] == "presence-updated" and connection_id in ids:
            sent_at.append(world.clock.now())
        return original(ids, data, **options)

    world.transport.post_to_connections = recording  # type: ignore[method-assign]
    return sent_at


def test_presence_changes_in_one_second_are_told_by_at_most_two_frames_the_second_a_second_later(
    world: World,
) -> None:
    world.clock = ParallelClock()
    topics = world.topics(lambda user, topic: True)
    world.connect("watcher", "w1")
    topics.subscribe("w1", "room:1")
    world.clock.advance(5.2)
    sent_at = presence_sent_at(world, "w1")

    for n in range(5):  # five arrivals handled side by side within one second
        world.connect(f"user{n}", f"c{n}")
        topics.subscribe(f"c{n}", "room:1")

    assert len(sent_at) == 2  # this second's, and the next second's (which covers the later arrivals)
    assert world.clock.slept == [pytest.approx(0.8)]  # the second one waited for the next second to start
    assert topics.members("room:1") == ["user0", "user1", "user2", "user3", "user4", "watcher"]


def test_presence_frames_in_a_row_are_a_second_apart(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    world.connect("watcher", "w1")
    topics.subscribe("w1", "room:1")
    world.clock.advance(5.2)
    sent_at = presence_sent_at(world, "w1")
    for n in range(4):
        world.connect(f"user{n}", f"c{n}")
        topics.subscribe(f"c{n}", "room:1")
    assert [int(t) for t in sent_at] == [int(sent_at[0]) + n for n in range(4)]


def test_a_dead_socket_leaves_the_member_list_when_its_row_expires(world: World) -> None:
    """No `$disconnect` came: the row (and its subscriptions) expire 2 h 10 min after the connect;
    the member list stops showing it then, whenever DynamoDB's TTL actually deletes the row."""
    topics = world.topics(lambda user, topic: True)
    world.connect("alice", "a1", age_ms=0)
    topics.subscribe("a1", "room:1")
    world.clock.advance(2 * 3600 + 10 * 60 - 1)
    assert topics.members("room:1") == ["alice"]
    world.clock.advance(2)
    assert topics.members("room:1") == []


def test_a_gone_connection_is_removed_by_the_topics_next_notify_and_presence_follows(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    world.connect("alice", "a1")
    world.connect("bob", "b1")
    topics.subscribe("a1", "room:1")
    topics.subscribe("b1", "room:1")
    world.clock.advance(2)
    world.transport.gone.add("a1")

    report = topics.notify_topic("room:1", "room-messages-updated")

    assert report == DeliveryReport(delivered=1, gone=1)
    assert topics.members("room:1") == ["bob"]
    assert world.connections.get("a1") is None
    assert world.frames("b1")[-1] == presence("room:1")


def test_a_young_gone_connection_may_still_be_connecting_and_keeps_its_rows(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    world.connect("alice", "a1", age_ms=5_000)
    topics.subscribe("a1", "room:1")
    world.transport.gone.add("a1")
    assert topics.notify_topic("room:1", "room-messages-updated").gone == 1
    assert world.connections.get("a1") is not None
    assert topics.members("room:1") == ["alice"]


# ---------------------------------------------------------------- notify_topic


def test_notify_topic_refuses_bad_names_and_reserved_keys_before_any_io(world: World) -> None:
    topics = world.topics(lambda user, topic: True)
    bad = (("Bad Topic", "x"), ("room:1", "Bad Key"), ("room:1", "subscribed"), ("room:1", "pong"))
    for topic, key in bad:
        with pytest.raises(ValueError):
            topics.notify_topic(topic, key)
    assert world.transport.sent == []


def test_a_big_topic_is_read_and_posted_page_by_page(world: World) -> None:
    world.page_size = 10
    topics = world.topics(lambda user, topic: True)
    # Rows written directly: 35 subscribes would also send presence frames.
    for n in range(35):
        world.store.add(Subscription("big", f"user{n:02d}", f"c{n:02d}", 0))
    pages: list[int] = []
    original = world.transport.post_to_connections

    def recording(ids: Any, data: bytes, **options: Any) -> Any:
        pages.append(len(ids))
        return original(ids, data, **options)

    world.transport.post_to_connections = recording  # type: ignore[method-assign]
    report = topics.notify_topic("big", "board-updated")
    assert report == DeliveryReport(delivered=35)
    assert pages == [10, 10, 10, 5]


def test_the_core_functions_use_the_installed_runtime_and_its_registered_authorizer(
    world: World, management_api_url: str, management_api: Any
) -> None:
    """notify_topic / topic_members / unsubscribe_user from the package's top level, frames posted by the
    shipped transport to moto's Management API over a socket, the authorizer registered with
    `authorize_topics`."""
    import chalice_realtime as core
    from chalice_realtime.testing.management_api import received

    settings = RealtimeSettings.from_env(
        {**TEST_ENV, "TOPICS_TABLE": TOPICS_TABLE, "WEBSOCKET_ENDPOINT": management_api_url}
    )
    realtime = Realtime(settings, dynamodb=world.dynamodb)  # on the system clock: rows stored now
    world.clock = FakeClock(time.time())
    world.connect("alice", "a1")
    world.connect("bob", "b1")

    @authorize_topics
    def only_alice(user_id: str, topic: str) -> bool:
        return user_id == "alice"

    core.use(realtime)
    try:
        realtime.websocket.receive("a1", json.dumps({"action": "subscribe", "topic": "room:1"}))
        realtime.websocket.receive("b1", json.dumps({"action": "subscribe", "topic": "room:1"}))
        assert core.topic_members("room:1") == ["alice"]
        assert core.notify_topic("room:1", "room-messages-updated") == DeliveryReport(delivered=1)
        assert core.unsubscribe_user("room:1", "alice") == 1
        assert core.topic_members("room:1") == []
    finally:
        core.use(None)
        realtime.close()
    assert received(management_api, "a1") == [
        subscribed("room:1"),
        presence("room:1"),
        {"event": "room-messages-updated", "topic": "room:1"},
        {"event": "unsubscribed", "topic": "room:1"},
    ]
    assert received(management_api, "b1") == [refused("room:1")]


@pytest.fixture(autouse=True)
def no_registered_authorizer() -> Iterator[None]:
    """`authorize_topics` registers for the whole process: forgotten after each test."""
    from chalice_realtime import topics

    yield
    topics._registered = None


# ---------------------------------------------------------------- settings


def test_the_topic_settings_are_read_and_bad_ones_stop_the_process() -> None:
    from chalice_realtime import ConfigurationError

    settings = RealtimeSettings.from_env(
        {
            "TOPICS_TABLE": "t",
            "SUBSCRIBE_RATE_LIMIT": "5/10",
            "MAX_TOPICS_PER_CONNECTION": "3",
            "TOPIC_AUTHORIZER": "chalicelib.services:may_subscribe",
        }
    )
    assert (settings.topics_table, settings.subscribe_rate_limit) == ("t", (5, 10))
    assert (settings.max_topics_per_connection, settings.topic_authorizer) == (
        3,
        "chalicelib.services:may_subscribe",
    )
    defaults = RealtimeSettings.from_env({})
    assert (defaults.max_topics_per_connection, defaults.subscribe_rate_limit, defaults.topic_authorizer) == (
        50,
        (60, 60),
        "",
    )
    for bad in (
        {"SUBSCRIBE_RATE_LIMIT": "0/10"},
        {"SUBSCRIBE_RATE_LIMIT": "many"},
        {"TOPIC_AUTHORIZER": "no_colon"},
        {"TOPIC_AUTHORIZER": "os:system;rm"},
        {"MAX_TOPICS_PER_CONNECTION": "0"},
    ):
        with pytest.raises(ConfigurationError):
            RealtimeSettings.from_env(bad)
