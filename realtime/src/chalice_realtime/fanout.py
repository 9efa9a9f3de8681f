"""Audiences larger than the caller can wait for: shards on an SQS queue, delivered by a fan-out worker.

A notify that cannot deliver its whole audience within its budget (`chalice_realtime.budget`)
hands the rest to `FanoutQueue` in shards of at most `SHARD_CONNECTIONS` connections (ids
already read), `SHARD_USERS` users (read by the worker), one user's connections from a
cursor, or a topic's subscribers: those already read (`SHARD_SUBSCRIBERS`), or the rest from a
cursor. A cursor shard is read a page of `SHARD_CONNECTIONS` at a time, each page handing the
next one on before it is posted, so a topic or user of any size is posted by as many workers
at once as its pages. The blueprint's `fanout_worker` Lambda receives one shard per
invocation and `FanoutWorker.deliver`s it with the same transport as the notifier.

Idempotent per shard: a shard record (`ShardLedger`) in the connections table collects the
connections each checkpoint settled (delivered or gone), and the shard is marked finished at
the end. A redelivered shard skips what its record holds, so the retry of a shard that had
finished sends nothing, and the retry of one that died midway resends at most the frames of
the checkpoint that was in flight (a duplicate `{"event": key}` costs one refetch). Frames
that still fail raise `ShardIncomplete`: SQS redelivers the shard after its visibility
timeout, and after `maxReceiveCount` receives moves it to the dead-letter queue.

    worker = FanoutWorker(store, transport, ShardLedger(table, dynamodb), queue, topics=topics)
    worker.deliver(Shard.from_message(record.body))
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .aws import error_code
from .clock import SYSTEM_CLOCK, Clock, epoch_ms
from .connections import IN_FLIGHT_MS, ConnectionStore
from .delivery import DeliveryReport
from .metrics import NotifyObserver, log_notify
from .subscriptions import Subscription
from .transports import ManagementTransport, Outcome

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = logging.getLogger(__name__)

# A shard's size: 5,000 connection ids (about 180 KB of message, under SQS's 256 KB), or 500 users.
SHARD_CONNECTIONS = 5_000
SHARD_USERS = 500
# Subscribers already read, as (connection id, user id, connected_at): a page of them fits in one SQS message.
SHARD_SUBSCRIBERS = 1_000
# A shard's record is updated after this many frames: what a worker that dies may send twice.
CHECKPOINT_CONNECTIONS = 500
# Shard records sit in the connections table under keys no API Gateway connection id can have.
SHARD_RECORD_PREFIX = "fanout-shard#"
# Kept as long as a shard can come back: the dead-letter queue's 14 days of retention, redriven.
SHARD_RECORD_TTL_SECONDS = 15 * 24 * 3600
# How long an attempt holds its shard after each write (its record renews it every checkpoint): more than a
# checkpoint can take, less than SQS's visibility timeout (180 s), so a killed attempt's retry finds it free.
LEASE_SECONDS = 60.0
# SQS's limit is 262,144 bytes per message and per batch; the rest is attribute and framing overhead.
MAX_BATCH_BYTES = 250_000
MAX_BATCH_ENTRIES = 10
FORMAT_VERSION = 1


class ShardIncomplete(RuntimeError):
    """Some frames of a shard could not be delivered: raised so that SQS delivers the shard again."""


class ShardBusy(ShardIncomplete):
    """Another attempt holds the shard (SQS delivered it again while the first still runs)."""


class FanoutUnavailable(RuntimeError):
    """Shards could not be put on the fan-out queue."""


@dataclass(frozen=True)
class Shard:
    """One unit of a fan-out worker's work: a frame and whom to send it to.

    Exactly one audience: `connections` (id -> connected_at, epoch ms), `users`, `user` with
    `cursor` (the rest of that user's connections, from a `ConnectionStore.connection_page`
    cursor), or `topic`: its `subscribers` ((connection id, user id, connected_at) already read),
    or else the rest of its subscribers from `cursor` (a `SubscriptionStore.subscriber_page`
    cursor; None: from the first). `page` counts the links of a cursor's chain.
    """

    shard_id: str
    event_key: str
    frame: str  # the exact text posted to each connection
    connections: Mapping[str, int] = field(default_factory=dict)
    users: tuple[str, ...] = ()
    user: str = ""
    cursor: Mapping[str, Any] | None = None
    page: int = 0
    topic: str = ""
    subscribers: tuple[tuple[str, str, int], ...] = ()

    def to_message(self) -> str:
        body: dict[str, Any] = {"v": FORMAT_VERSION, "id": self.shard_id, "key": self.event_key}
        body["frame"] = self.frame
        if self.connections:
            body["connections"] = dict(self.connections)
        if self.users:
            body["users"] = list(self.users)
        if self.user:
            body.update(user=self.user, cursor=self.cursor, page=self.page)
        if self.topic:
            body["topic"] = self.topic
            if self.subscribers:
                body["subscribers"] = [list(subscriber) for subscriber in self.subscribers]
            else:
                body.update(cursor=self.cursor, page=self.page)
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: str) -> Shard:
        """The shard a message carries; `ValueError` for anything else."""
        try:
            raw = json.loads(body)
            if raw.get("v") != FORMAT_VERSION:
                raise ValueError(f"unknown shard format {raw.get('v')!r}")
            shard = cls(
                shard_id=str(raw["id"]),
                event_key=str(raw["key"]),
                frame=str(raw["frame"]),
                connections={str(k): int(v) for k, v in dict(raw.get("connections") or {}).items()},
                users=tuple(str(u) for u in raw.get("users") or ()),
                user=str(raw.get("user") or ""),
                cursor=raw.get("cursor"),
                page=int(raw.get("page") or 0),
                topic=str(raw.get("topic") or ""),
                subscribers=tuple((str(c), str(u), int(at)) for c, u, at in raw.get("subscribers") or ()),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a fan-out shard: {exc}") from exc
        audiences = (shard.connections, shard.users, shard.user, shard.topic)
        if not shard.shard_id or sum(map(bool, audiences)) != 1:
            raise ValueError("a shard names exactly one audience: connections, users, a user or a topic")
        if shard.cursor is not None and not isinstance(shard.cursor, dict):
            raise ValueError("a shard's cursor is a DynamoDB key")
        return shard


def new_notify_id() -> str:
    """The prefix of one notify's shard ids."""
    return uuid.uuid4().hex


def connection_shards(
    notify_id: str, event_key: str, frame: bytes, connections: Sequence[tuple[str, int]], *, first: int = 0
) -> list[Shard]:
    """`connections` ((id, connected_at) pairs) in shards of `SHARD_CONNECTIONS`, numbered from `first`."""
    text = frame.decode()
    return [
        Shard(
            f"{notify_id}:c{first + n}", event_key, text, dict(connections[start : start + SHARD_CONNECTIONS])
        )
        for n, start in enumerate(range(0, len(connections), SHARD_CONNECTIONS))
    ]


def user_shards(notify_id: str, event_key: str, frame: bytes, users: Sequence[str]) -> list[Shard]:
    """`users` cut into shards of `SHARD_USERS`, whose connections the worker reads."""
    text = frame.decode()
    return [
        Shard(f"{notify_id}:u{n}", event_key, text, users=tuple(users[start : start + SHARD_USERS]))
        for n, start in enumerate(range(0, len(users), SHARD_USERS))
    ]


def rest_of_user_shard(
    notify_id: str, event_key: str, frame: bytes, user_id: str, cursor: Mapping[str, Any]
) -> Shard:
    """The connections of `user_id` after `cursor`, read by the worker page by page."""
    return Shard(f"{notify_id}:r:{user_id}", event_key, frame.decode(), user=user_id, cursor=cursor)


def subscriber_shards(
    notify_id: str,
    event_key: str,
    frame: bytes,
    topic: str,
    subscribers: Sequence[Subscription],
    *,
    first: int = 0,
) -> list[Shard]:
    """Subscriptions of `topic` already read, in shards of `SHARD_SUBSCRIBERS`, numbered from `first`."""
    text = frame.decode()
    rows = [(s.connection_id, s.user_id, s.connected_at) for s in subscribers]
    return [
        Shard(
            f"{notify_id}:s{first + n}",
            event_key,
            text,
            topic=topic,
            subscribers=tuple(rows[start : start + SHARD_SUBSCRIBERS]),
        )
        for n, start in enumerate(range(0, len(rows), SHARD_SUBSCRIBERS))
    ]


def rest_of_topic_shard(
    notify_id: str, event_key: str, frame: bytes, topic: str, cursor: Mapping[str, Any] | None
) -> Shard:
    """The subscribers of `topic` after `cursor` (None: all of them), read by the workers page by page."""
    return Shard(f"{notify_id}:t", event_key, frame.decode(), topic=topic, cursor=cursor)


class TopicDelivery(Protocol):
    """What a worker needs of the topics (`chalice_realtime.topics.Topics`) to deliver a topic shard."""

    def subscriber_page(
        self, topic: str, limit: int, cursor: Mapping[str, Any] | None
    ) -> tuple[list[Subscription], dict[str, Any] | None]: ...

    def post_to_subscribers(
        self,
        topic: str,
        page: Sequence[Subscription],
        data: bytes,
        *,
        settled_before: int,
        deadline: float | None = None,
    ) -> list[Outcome]: ...


class FanoutQueue:
    """The SQS queue the fan-out workers read.

    queue = FanoutQueue(queue_url, sqs_client)
    queue.hand_on(connection_shards(notify_id, "jobs-updated", data, rows))
    """

    def __init__(self, queue_url: str, sqs: SQSClient) -> None:
        self.queue_url = queue_url
        self._sqs = sqs

    def hand_on(self, shards: Iterable[Shard]) -> None:
        """Put each shard on the queue (SendMessageBatch, as few calls as SQS's size limits allow).

        Raises `FanoutUnavailable` if some shard could not be sent after botocore's retries and two
        more tries of the entries SQS refused.
        """
        for batch in _batches([(shard.shard_id, shard.to_message()) for shard in shards]):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(n), "MessageBody": body} for n, (_, body) in enumerate(batch)
            ]
            for _attempt in range(3):
                try:
                    answer = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                except (BotoCoreError, ClientError) as exc:
                    raise FanoutUnavailable(f"could not send {len(entries)} shards: {exc}") from exc
                refused = {failure["Id"] for failure in answer.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in refused]
                if not entries:
                    break
            else:
                ids = [batch[int(entry["Id"])][0] for entry in entries]
                raise FanoutUnavailable(f"SQS refused shards {ids}")

    def try_hand_on(self, shards: Sequence[Shard]) -> bool:
        """`hand_on`, False (logged) instead of `FanoutUnavailable`: for a notify, which never raises."""
        try:
            self.hand_on(shards)
        except FanoutUnavailable:
            logger.exception("could not hand shards to the fan-out workers", extra={"count": len(shards)})
            return False
        return True


def first_connection_page(
    store: ConnectionStore, user_id: str
) -> tuple[list[tuple[str, int]], dict[str, Any] | None] | None:
    """The user's first `SHARD_CONNECTIONS` connections and the cursor of the rest; None (logged) if the
    lookup failed after botocore's retries, so one user's failure costs the others nothing."""
    try:
        return store.connection_page(user_id, SHARD_CONNECTIONS)
    except Exception:
        logger.exception("connection lookup failed", extra={"user_id": user_id})
        return None


def _batches(messages: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    size = 0
    for shard_id, body in messages:
        length = len(body.encode())
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((shard_id, body))
        size += length
    if batch:
        yield batch


@dataclass(frozen=True)
class ShardProgress:
    finished: bool = False
    done: frozenset[str] = frozenset()  # connections settled (delivered or gone) by earlier attempts


class ShardLedger:
    """Each shard's progress, one item per shard in the connections table (`fanout-shard#<id>`).

    ledger = ShardLedger(table_name, dynamodb_client)
    attempt = new_attempt_id()
    ledger.claim("ab12:c0", attempt)                # ShardProgress(finished=False, done=frozenset())
    ledger.settled("ab12:c0", attempt, ["id1=", "id2="])
    ledger.finish("ab12:c0", attempt)

    An attempt holds its shard for `LEASE_SECONDS` from its last write (`lease_owner`, `lease_until`):
    SQS may deliver a message again while its first receiver still runs, and the second attempt then
    waits its turn (`claim` answers None); an attempt that lost its lease stops (`ShardBusy`) at its
    next write instead of sending what the other sends. Every write is one conditional UpdateItem.

    The items carry no `user_id`, so they never appear in the `by_user` index, and expire by TTL.
    """

    def __init__(self, table_name: str, dynamodb: DynamoDBClient, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._clock = clock

    def claim(self, shard_id: str, attempt: str) -> ShardProgress | None:
        """Hold the shard and read what earlier attempts did; None while another attempt holds it."""
        answer = self._update(
            shard_id,
            "SET lease_owner = :me, lease_until = :until, expires_at = :ttl",
            "attribute_not_exists(lease_until) OR lease_until < :now",
            {":me": {"S": attempt}, ":now": {"N": f"{self._clock.now():.3f}"}},
            returning=True,
        )
        if answer is None:
            return None
        return ShardProgress(
            finished=bool(answer.get("finished", {}).get("BOOL")),
            done=frozenset(answer.get("done", {}).get("SS", ())),
        )

    def renew(self, shard_id: str, attempt: str) -> None:
        """Hold the shard `LEASE_SECONDS` more; `ShardBusy` if another attempt took it meanwhile."""
        self._held(shard_id, attempt, "SET lease_until = :until, expires_at = :ttl", {})

    def settled(self, shard_id: str, attempt: str, connection_ids: Sequence[str]) -> None:
        """Add `connection_ids` to the shard's settled set; renews the lease."""
        ids = list(dict.fromkeys(connection_ids))
        if not ids:
            self.renew(shard_id, attempt)
            return
        self._held(
            shard_id,
            attempt,
            "ADD done :ids SET lease_until = :until, expires_at = :ttl",
            {":ids": {"SS": ids}},
        )

    def finish(self, shard_id: str, attempt: str) -> None:
        """Mark the shard finished and let it go; its settled set is no longer needed."""
        self._held(
            shard_id,
            attempt,
            "SET finished = :yes, expires_at = :ttl REMOVE done, lease_owner, lease_until",
            {":yes": {"BOOL": True}},
        )

    def release(self, shard_id: str, attempt: str) -> None:
        """Let the next attempt take the shard at once (this one is giving up); a no-op if not held."""
        self._update(
            shard_id, "REMOVE lease_owner, lease_until", "lease_owner = :me", {":me": {"S": attempt}}
        )

    def _held(self, shard_id: str, attempt: str, update: str, values: dict[str, Any]) -> None:
        if self._update(shard_id, update, "lease_owner = :me", {**values, ":me": {"S": attempt}}) is None:
            raise ShardBusy(f"shard {shard_id}: another attempt took it over; this one stops")

    def _update(
        self, shard_id: str, update: str, condition: str, values: dict[str, Any], *, returning: bool = False
    ) -> dict[str, Any] | None:
        """The item after a conditional update ({} unless `returning`); None if the condition failed."""
        now = self._clock.now()
        if ":until" in update:
            values = {**values, ":until": {"N": f"{now + LEASE_SECONDS:.3f}"}}
        if ":ttl" in update:
            values = {**values, ":ttl": {"N": str(int(now) + SHARD_RECORD_TTL_SECONDS)}}
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table,
                Key={"connection_id": {"S": SHARD_RECORD_PREFIX + shard_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW" if returning else "NONE",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return dict(answer.get("Attributes", {}))


def new_attempt_id() -> str:
    """Who holds a shard: one id per delivery attempt."""
    return uuid.uuid4().hex


def remove_settled_gone(
    store: ConnectionStore, gone: Sequence[str], connected_at: Mapping[str, int], settled_before: int
) -> None:
    """Delete the rows of gone connections older than `settled_before` (epoch ms); keep younger ones.

    A 410 for a row younger than `IN_FLIGHT_MS` when the posts started may come from a `$connect`
    still running: deleting its row would leave that socket deaf. The next notify or the TTL settles it.
    """
    settled = [cid for cid in gone if connected_at[cid] < settled_before]
    if len(settled) < len(gone):
        kept = len(gone) - len(settled)
        logger.info("kept the rows of connections that may still be connecting", extra={"count": kept})
    if settled:
        try:
            store.remove_many(settled)  # 25 rows per BatchWriteItem
        except Exception:
            logger.exception("could not delete gone connections", extra={"count": len(settled)})


class FanoutWorker:
    """Delivers shards: the fan-out Lambda's logic.

    worker = FanoutWorker(store, transport, ledger, queue, topics=topics)
    report = worker.deliver(shard)   # raises ShardIncomplete if some frames failed

    Topic shards need `topics`: their 410s are settled as `notify_topic` settles them (the subscription
    and the connection's row go, and presence follows).
    """

    def __init__(
        self,
        store: ConnectionStore,
        transport: ManagementTransport,
        ledger: ShardLedger,
        queue: FanoutQueue | None,
        *,
        topics: TopicDelivery | None = None,
        checkpoint: int = CHECKPOINT_CONNECTIONS,
        lookup_concurrency: int = 16,
        observer: NotifyObserver = log_notify,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._lookup_concurrency = lookup_concurrency  # a user shard's Queries, as many at once
        self._pool: ThreadPoolExecutor | None = None
        self._store = store
        self._transport = transport
        self._ledger = ledger
        self._queue = queue
        self._topics = topics
        self._checkpoint = checkpoint
        self._observer = observer
        self._clock = clock

    def deliver(self, shard: Shard) -> DeliveryReport:
        """Post the shard's frame to each of its connections not settled by an earlier attempt.

        Gone connections' rows are deleted as the notifier deletes them (a topic's gone subscriptions as
        `notify_topic` does). Raises `ShardIncomplete` when some frames failed (their connections stay
        unsettled, for the redelivery).
        """
        started = time.perf_counter()
        attempt = new_attempt_id()
        progress = self._ledger.claim(shard.shard_id, attempt)
        if progress is None:
            raise ShardBusy(f"shard {shard.shard_id} is being delivered by another attempt")
        if progress.finished:
            logger.info("shard already delivered; nothing sent", extra={"shard_id": shard.shard_id})
            return DeliveryReport()
        try:
            return self._deliver(shard, attempt, progress, started)
        except ShardBusy:
            raise  # the lease is another attempt's now
        except Exception:
            self._ledger.release(shard.shard_id, attempt)  # the redelivery need not wait for the lease
            raise

    def _deliver(self, shard: Shard, attempt: str, progress: ShardProgress, started: float) -> DeliveryReport:
        # Taken before any frame is posted: a row older than the window now was older when its 410 came.
        settled_before = epoch_ms(self._clock.now()) - IN_FLIGHT_MS
        data = shard.frame.encode()
        post: Callable[[list[str]], Sequence[Outcome]]
        if shard.topic:
            subscribers = {s.connection_id: s for s in self._subscribers(shard)}
            audience, failed_lookups = list(subscribers), 0
            topics, topic = self._require_topics(), shard.topic

            def post(ids: list[str]) -> Sequence[Outcome]:
                page = [subscribers[cid] for cid in ids]
                return topics.post_to_subscribers(topic, page, data, settled_before=settled_before)

        else:
            connected_at, failed_lookups = self._audience(shard)
            audience = list(connected_at)

            def post(ids: list[str]) -> Sequence[Outcome]:
                outcomes = self._transport.post_to_connections(ids, data)
                gone = [cid for cid, o in zip(ids, outcomes, strict=True) if o is Outcome.GONE]
                remove_settled_gone(self._store, gone, connected_at, settled_before)
                return outcomes

        pending = [cid for cid in audience if cid not in progress.done]
        delivered = gone = failed = 0
        self._ledger.renew(shard.shard_id, attempt)  # the lookups may have taken a while
        for start in range(0, len(pending), self._checkpoint):
            chunk = pending[start : start + self._checkpoint]
            # The transport's own deadline (25 s, under the worker's 30 s timeout) bounds each chunk: a
            # shorter one would report posts still in flight as failed, and the redelivery would send
            # those frames again. What is still throttled then stays unsettled for the redelivery.
            outcomes = post(chunk)
            settled = [
                cid for cid, o in zip(chunk, outcomes, strict=True) if o in (Outcome.DELIVERED, Outcome.GONE)
            ]
            self._ledger.settled(shard.shard_id, attempt, settled)
            delivered += sum(o is Outcome.DELIVERED for o in outcomes)
            gone += sum(o is Outcome.GONE for o in outcomes)
            failed += len(chunk) - len(settled)
        report = DeliveryReport(delivered=delivered, gone=gone, failed=failed + failed_lookups)
        users = len(shard.users) or (1 if shard.user else 0)
        self._observer(shard.event_key, users, report, (time.perf_counter() - started) * 1000)
        if report.failed:
            raise ShardIncomplete(
                f"shard {shard.shard_id}: {failed} frames failed and {failed_lookups} lookups failed; "
                "SQS delivers it again"
            )
        self._ledger.finish(shard.shard_id, attempt)
        return report

    def _subscribers(self, shard: Shard) -> list[Subscription]:
        """The topic shard's subscriptions: those it carries, or a page read from its cursor (the next page
        handed on first). A failed read raises: SQS delivers the shard again."""
        if shard.subscribers:
            return [Subscription(shard.topic, uid, cid, at) for cid, uid, at in shard.subscribers]
        topics = self._require_topics()
        found: list[Subscription] = []
        cursor = shard.cursor
        while True:  # Query answers at most 1 MB: a shard's worth may take more than one
            page, cursor = topics.subscriber_page(shard.topic, SHARD_CONNECTIONS - len(found), cursor)
            found += page
            if cursor is None or len(found) >= SHARD_CONNECTIONS:
                break
        if cursor is not None:
            self._hand_on_next_link(shard, cursor)
        return found

    def _hand_on_next_link(self, shard: Shard, cursor: Mapping[str, Any]) -> None:
        """Hand on the next page of a cursor's chain, before this page is posted: if this worker dies, the
        redelivery hands it on again under the same id, and its record makes the second copy a no-op."""
        base = shard.shard_id.rsplit("/", 1)[0] if shard.page else shard.shard_id
        link = replace(shard, shard_id=f"{base}/{shard.page + 1}", cursor=cursor, page=shard.page + 1)
        self._require_queue().hand_on([link])

    def _audience(self, shard: Shard) -> tuple[dict[str, int], int]:
        """connection id -> connected_at of the shard's connections, and the number of failed lookups."""
        if shard.connections:
            return dict(shard.connections), 0
        if shard.user:
            rows, cursor = self._store.connection_page(shard.user, SHARD_CONNECTIONS, shard.cursor)
            if cursor:
                self._hand_on_next_link(shard, cursor)
            return dict(rows), 0
        connected_at: dict[str, int] = {}
        failed = 0
        rest: list[Shard] = []
        pages = self._lookups().map(lambda user_id: first_connection_page(self._store, user_id), shard.users)
        for user_id, page in zip(shard.users, pages, strict=True):
            if page is None:
                failed += 1
                continue
            rows, cursor = page
            connected_at.update(rows)
            if cursor:
                rest.append(
                    rest_of_user_shard(shard.shard_id, shard.event_key, shard.frame.encode(), user_id, cursor)
                )
        if len(connected_at) > SHARD_CONNECTIONS:
            # Users with many connections each: this worker keeps a shard's worth and hands the rest to
            # others, so the audience is posted in parallel. The same ids on a redelivery: no-op copies.
            rows = list(connected_at.items())
            connected_at = dict(rows[:SHARD_CONNECTIONS])
            rest += connection_shards(
                shard.shard_id, shard.event_key, shard.frame.encode(), rows[SHARD_CONNECTIONS:]
            )
        if rest:
            self._require_queue().hand_on(rest)
        return connected_at, failed

    def _lookups(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._lookup_concurrency, thread_name_prefix="shard-lookup")
        return self._pool

    def _require_queue(self) -> FanoutQueue:
        if self._queue is None:
            raise FanoutUnavailable("FANOUT_QUEUE_URL is not set: the rest of an audience cannot go on")
        return self._queue

    def _require_topics(self) -> TopicDelivery:
        if self._topics is None:
            raise FanoutUnavailable("this worker was built without topics: it cannot deliver a topic shard")
        return self._topics
