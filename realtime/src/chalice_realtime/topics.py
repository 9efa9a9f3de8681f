"""Topics: everyone watching something gets its event keys; the app decides who may watch.

    topics.subscribe("abc=", "room:42")         # replies {"event": "subscribed", "topic": "room:42"}
    topics.notify_topic("room:42", "room-messages-updated")  # DeliveryReport(delivered=3, ...)
    topics.unsubscribe_user("room:42", "uid-7")  # their connections get "unsubscribed"
    topics.members("room:42")                    # ['uid-1', 'uid-3']

A subscribe is answered `subscribed` once stored, or `subscribe-refused` when the name is invalid,
the user's subscribe rate or the connection's topic cap is used up, or the app's authorizer says no
(none registered: every subscribe is refused). The authorizer runs on every subscribe, re-subscribes
after a reconnect included, so access removed meanwhile is enforced.

Large topics: with a fan-out queue, `notify_topic` spends at most the notify budget
(`chalice_realtime.budget`) posting, reading only as many subscribers as it can post in the time
left, and hands the rest of the topic to the fan-out workers (`chalice_realtime.fanout`) as one
shard with the Query cursor; the workers read it a page at a time, each page handing the next one
on. Without a queue every page is posted inline.

Presence: when a user's first subscription to a topic is stored, or their last one ends (unsubscribe,
`$disconnect`, `unsubscribe_user`, a 410), the topic gets `presence-updated`, at most one per topic per
second: a change claims the current second (or, taken, the next one, waiting for it) in a conditional
write; if both are taken, the frame of the next second is sent after this change anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .budget import DEFAULT_BUDGET_SECONDS, MIN_POST_SECONDS, notify_budget, posting_rate
from .clock import SYSTEM_CLOCK, Clock, epoch_ms
from .connections import IN_FLIGHT_MS, ConnectionStore
from .delivery import DeliveryReport
from .fanout import (
    FanoutQueue,
    Shard,
    new_notify_id,
    rest_of_topic_shard,
    subscriber_shards,
)
from .identifiers import validate_event_key, validate_topic
from .metrics import NotifyObserver, log_notify
from .subscriptions import Subscription, SubscriptionStore
from .transports import ManagementTransport, Outcome

logger = logging.getLogger(__name__)

SUBSCRIBED = "subscribed"
SUBSCRIBE_REFUSED = "subscribe-refused"
UNSUBSCRIBED = "unsubscribed"
PRESENCE_UPDATED = "presence-updated"
# Keys only the core sends: an app's notify_topic may not imitate an answer to a subscribe.
RESERVED_KEYS = frozenset({"pong", SUBSCRIBED, SUBSCRIBE_REFUSED, UNSUBSCRIBED})
# A refused name is echoed back only if it is a string this short (never a client's megabyte).
MAX_ECHOED_TOPIC = 256

TopicAuthorizer = Callable[[str, str], bool]
"""`authorizer(user_id, topic) -> bool`: may this verified user subscribe to this topic?"""

_registered: TopicAuthorizer | None = None


def authorize_topics(authorizer: TopicAuthorizer) -> TopicAuthorizer:
    """Register the process's topic authorizer (usable as a decorator); it replaces any earlier one.

    @authorize_topics
    def may_subscribe(user_id: str, topic: str) -> bool:
        return topic == f"user:{user_id}"

    A Lambda that never imports the module doing this (the blueprint's WebSocket functions do not
    import `app.py`) finds the authorizer through `TOPIC_AUTHORIZER=package.module:function` instead.
    """
    global _registered
    _registered = authorizer
    return authorizer


def registered_authorizer() -> TopicAuthorizer | None:
    """What `authorize_topics` registered in this process, if anything."""
    return _registered


@functools.cache
def load_authorizer(path: str) -> TopicAuthorizer:
    """The function `package.module:function` names, imported once per process."""
    module_name, _, attribute = path.partition(":")
    authorizer: TopicAuthorizer = getattr(importlib.import_module(module_name), attribute)
    return authorizer


def topic_frame(event_key: str, topic: str) -> bytes:
    """The exact bytes sent for `event_key` on `topic`: `{"event": ..., "topic": ...}`."""
    return json.dumps({"event": event_key, "topic": topic}, separators=(",", ":")).encode()


class Topics:
    """Subscriptions, topic notifications and presence over one `SubscriptionStore`.

    topics = Topics(store, connections, transport, authorizer=lambda: may_subscribe)
    topics.notify_topic("room:42", "room-messages-updated")

    `authorizer` is called for the authorizer on each subscribe (None: refuse), so one registered
    after this object was built still counts. With a `fanout` queue, a topic notify (presence
    included) spends at most `budget_seconds` posting and hands the rest to the fan-out workers.
    """

    def __init__(
        self,
        store: SubscriptionStore,
        connections: ConnectionStore,
        transport: ManagementTransport,
        *,
        authorizer: Callable[[], TopicAuthorizer | None],
        max_topics_per_connection: int,
        subscribe_rate: tuple[int, int],
        clock: Clock = SYSTEM_CLOCK,
        observer: NotifyObserver = log_notify,
        fanout: FanoutQueue | None = None,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        posts_per_second: Callable[[], float] | None = None,
    ) -> None:
        self._fanout = fanout
        self._budget_seconds = budget_seconds
        self._posts_per_second = posts_per_second
        self._store = store
        self._connections = connections
        self._transport = transport
        self._authorizer = authorizer
        self._cap = max_topics_per_connection
        self._rate = subscribe_rate
        self._clock = clock
        self._observer = observer

    # ------------------------------------------------------------ browser -> server

    def subscribe(self, connection_id: str, topic: object) -> None:
        """Handle `{"action": "subscribe", "topic": topic}`: store and answer `subscribed`, or answer
        `subscribe-refused`. A topic that is not a short string gets no answer. Never raises."""
        if not isinstance(topic, str) or len(topic) > MAX_ECHOED_TOPIC:
            return
        try:
            accepted, joined = self._subscribe(connection_id, topic)
        except Exception:
            logger.exception("subscribe failed", extra={"connection_id": connection_id})
            accepted, joined = False, None
        self._reply(connection_id, SUBSCRIBED if accepted else SUBSCRIBE_REFUSED, topic)
        if joined is not None:
            self._presence_changed(topic)

    def _subscribe(self, connection_id: str, topic: str) -> tuple[bool, str | None]:
        """(stored?, the user id if this was their first subscription to the topic)."""
        try:
            validate_topic(topic)
        except ValueError:
            return False, None
        connection = self._connections.get(connection_id)
        if connection is None:  # forgotten meanwhile ($disconnect, eviction): nothing may be stored for it
            return False, None
        user_id = connection.user_id
        limit, window = self._rate
        if not self._store.count_subscribe(user_id, limit, window, self._clock.now()):
            logger.info("subscribe refused: rate", extra={"connection_id": connection_id, "user_id": user_id})
            return False, None
        if not self._authorized(user_id, topic):
            logger.info("subscribe refused", extra={"connection_id": connection_id, "user_id": user_id})
            return False, None
        subscribed = {name for name, _ in self._store.topics_of_connection(connection_id)}
        if topic in subscribed:
            return True, None
        if len(subscribed) >= self._cap:
            logger.info("subscribe refused: topic cap", extra={"connection_id": connection_id})
            return False, None
        first = not self._store.has_subscription(topic, user_id)  # read before writing: see `unsubscribe`
        self._store.add(Subscription(topic, user_id, connection_id, connection.connected_at))
        return True, user_id if first else None

    def _authorized(self, user_id: str, topic: str) -> bool:
        authorizer = self._authorizer()
        if authorizer is None:
            return False
        try:
            return authorizer(user_id, topic) is True
        except Exception:
            logger.exception("the topic authorizer failed; refusing", extra={"user_id": user_id})
            return False

    def unsubscribe(self, connection_id: str, topic: object) -> None:
        """Handle `{"action": "unsubscribe", "topic": topic}`: forget the subscription (if any) and answer
        `unsubscribed`. Never raises."""
        if not isinstance(topic, str) or len(topic) > MAX_ECHOED_TOPIC:
            return
        left: list[str] = []
        try:
            validate_topic(topic)
            mine = [
                (name, user)
                for name, user in self._store.topics_of_connection(connection_id)
                if name == topic
            ]
            subscriptions = [Subscription(topic, user, connection_id, 0) for _, user in mine]
            self._store.remove(subscriptions)
            # Counted after deleting: of two last subscriptions ending at once, at least one sees none left.
            left = [s.user_id for s in subscriptions if not self._store.has_subscription(topic, s.user_id)]
        except ValueError:
            pass
        except Exception:
            logger.exception("unsubscribe failed", extra={"connection_id": connection_id})
        self._reply(connection_id, UNSUBSCRIBED, topic)
        if left:
            self._presence_changed(topic)

    def forget_connection(self, connection_id: str) -> None:
        """Remove every subscription of a connection (`$disconnect`): one Query on the connection index."""
        found = self._store.topics_of_connection(connection_id)
        self._store.remove([Subscription(topic, user, connection_id, 0) for topic, user in found])
        for topic in sorted({topic for topic, _ in found}):
            if not any(self._store.has_subscription(topic, user) for t, user in found if t == topic):
                self._presence_changed(topic)

    # ------------------------------------------------------------ the app's API

    def notify_topic(self, topic: str, event_key: str) -> DeliveryReport:
        """Send `{"event": event_key, "topic": topic}` to every connection subscribed to `topic`.

        Subscribers are read one Query page at a time and each page is posted before the next is read,
        so a topic of any size never sits in memory whole; with a fan-out queue, what the notify budget
        does not allow is handed to the workers (the report's `deferred_topics`). Never raises for
        delivery problems; a bad topic or key (or a key the core reserves) raises `ValueError` before
        any I/O.
        """
        validate_topic(topic)
        if validate_event_key(event_key) in RESERVED_KEYS:
            raise ValueError(f"{event_key!r} is a key the core sends itself")
        return self._notify(topic, event_key)

    def _notify(self, topic: str, event_key: str) -> DeliveryReport:
        started = time.perf_counter()
        # Taken before any frame is posted: a row older than the window now was older when its 410 came.
        settled_before = epoch_ms(self._clock.now()) - IN_FLIGHT_MS
        data = topic_frame(event_key, topic)
        if self._fanout is not None:
            report = self._deliver_within_budget(topic, event_key, data, settled_before, self._fanout)
        else:
            report = DeliveryReport()
            try:
                for page in self._store.subscriber_pages(topic):
                    outcomes = self.post_to_subscribers(topic, page, data, settled_before=settled_before)
                    report += _report_of(outcomes)
            except Exception:
                logger.exception("reading a topic's subscribers failed", extra={"topic": topic})
                report += DeliveryReport(failed=1)
        self._observer(event_key, 0, report, (time.perf_counter() - started) * 1000)
        return report

    def _deliver_within_budget(
        self, topic: str, event_key: str, data: bytes, settled_before: int, fanout: FanoutQueue
    ) -> DeliveryReport:
        """Read and post pages while the budget lasts, each page only as long as can be posted in the time
        left; hand on the rest of the topic (from the next page's cursor) and the frames that failed."""
        budget = notify_budget(self._budget_seconds)
        deadline = time.monotonic() + budget
        notify_id = new_notify_id()
        report = DeliveryReport()
        cursor: Mapping[str, Any] | None = None
        retries = 0
        while True:
            left = deadline - time.monotonic()
            capacity = min(
                self._store.page_size, int(left * posting_rate(self._transport, self._posts_per_second))
            )
            if capacity <= 0:
                report += self._hand_on(
                    fanout, [rest_of_topic_shard(notify_id, event_key, data, topic, cursor)]
                )
                return report
            try:
                page, cursor = self._store.subscriber_page(topic, capacity, cursor)
            except Exception:
                # After botocore's retries: a worker reads the rest, from the page that failed.
                logger.exception("reading a topic's subscribers failed; handed on", extra={"topic": topic})
                report += self._hand_on(
                    fanout, [rest_of_topic_shard(notify_id, event_key, data, topic, cursor)]
                )
                return report
            if page:
                seconds = max(MIN_POST_SECONDS, deadline - time.monotonic())
                outcomes = self.post_to_subscribers(
                    topic, page, data, settled_before=settled_before, deadline=seconds
                )
                report += dataclasses.replace(_report_of(outcomes), failed=0)  # failed frames: handed on
                unsent = [s for s, o in zip(page, outcomes, strict=True) if o is Outcome.FAILED]
                if unsent:
                    retry = subscriber_shards(notify_id, event_key, data, topic, unsent, first=retries)
                    retries += len(retry)
                    report += self._hand_on(fanout, retry, frames=len(unsent))
            if cursor is None:
                return report

    def _hand_on(self, fanout: FanoutQueue, shards: list[Shard], *, frames: int = 0) -> DeliveryReport:
        """Put shards on the fan-out queue: `frames` deferred (0: the rest of a topic, `deferred_topics`);
        failed if the queue cannot take them."""
        if not fanout.try_hand_on(shards):
            return DeliveryReport(failed=frames or 1)
        return DeliveryReport(deferred=frames) if frames else DeliveryReport(deferred_topics=1)

    def subscriber_page(
        self, topic: str, limit: int, cursor: Mapping[str, Any] | None
    ) -> tuple[list[Subscription], dict[str, Any] | None]:
        """One page of the topic's subscriptions after `cursor`, and the next cursor (a worker's read)."""
        return self._store.subscriber_page(topic, limit, cursor)

    def post_to_subscribers(
        self,
        topic: str,
        page: Sequence[Subscription],
        data: bytes,
        *,
        settled_before: int,
        deadline: float | None = None,
    ) -> list[Outcome]:
        """Post `data` (a `topic_frame`) to one page of subscriptions and settle what answered 410.

        A 410 from a connection stored before `settled_before` (epoch ms) removes the subscription and the
        connection's row, as a plain notify does; a younger one may be a `$connect` still in flight and
        stays. A user left without a subscription to the topic sets off `presence-updated`. This is the
        unit a fan-out worker runs for a page handed to it; `deadline` (seconds) bounds the posts.
        """
        ids = [s.connection_id for s in page]
        outcomes = self._transport.post_to_connections(ids, data, deadline=deadline)
        gone = [s for s, outcome in zip(page, outcomes, strict=True) if outcome is Outcome.GONE]
        settled = [s for s in gone if s.connected_at < settled_before]
        if settled:
            try:
                self._store.remove(settled)
                self._connections.remove_many([s.connection_id for s in settled])
                left = {s.user_id for s in settled if not self._store.has_subscription(topic, s.user_id)}
            except Exception:
                logger.exception("could not delete gone subscriptions", extra={"count": len(settled)})
                left = set()
            if left:
                self._presence_changed(topic)
        return outcomes

    def unsubscribe_user(self, topic: str, user_id: str) -> int:
        """End every subscription of `user_id` to `topic`; each of those connections gets `unsubscribed`.

        Returns how many subscriptions ended. Call it when the user loses access (a member removed), after
        the authorizer already refuses them, so a re-subscribe racing this is refused.
        """
        validate_topic(topic)
        subscriptions = self._store.subscriptions_of(topic, user_id)
        if not subscriptions:
            return 0
        self._store.remove(subscriptions)
        self._transport.post_to_connections(
            [s.connection_id for s in subscriptions], topic_frame(UNSUBSCRIBED, topic)
        )
        self._presence_changed(topic)
        return len(subscriptions)

    def members(self, topic: str) -> list[str]:
        """The user ids subscribed to `topic` now, each once, sorted (rows past their TTL excluded)."""
        validate_topic(topic)
        return list(self._store.members(topic, self._clock.now()))

    # ------------------------------------------------------------ internals

    def _reply(self, connection_id: str, event_key: str, topic: str) -> None:
        try:
            self._transport.post_to_connections([connection_id], topic_frame(event_key, topic))
        except Exception:
            logger.exception("could not answer a subscription", extra={"connection_id": connection_id})

    def _presence_changed(self, topic: str) -> None:
        """Send `presence-updated` to the topic, at most once per topic per second (see the module)."""
        try:
            now_ms = epoch_ms(self._clock.now())
            slot = now_ms // 1000
            if not self._store.claim_presence_slot(topic, slot):
                if not self._store.claim_presence_slot(topic, slot + 1):
                    return  # the frame of the next second is sent after this change: it covers it
                self._clock.sleep(((slot + 1) * 1000 - now_ms) / 1000)
            self._notify_presence(topic)
        except Exception:
            logger.exception("presence update failed", extra={"topic": topic})

    def _notify_presence(self, topic: str) -> None:
        self._notify(topic, PRESENCE_UPDATED)  # a large topic's presence frame goes to the workers too


def _report_of(outcomes: Sequence[Outcome]) -> DeliveryReport:
    return DeliveryReport(
        delivered=sum(o is Outcome.DELIVERED for o in outcomes),
        gone=sum(o is Outcome.GONE for o in outcomes),
        failed=sum(o is Outcome.FAILED for o in outcomes),
    )
