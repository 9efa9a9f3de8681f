"""notify(user_id, event_key): one frame `{"event": key}` to every live connection of a user."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, Protocol

from .budget import DEFAULT_BUDGET_SECONDS, MIN_POST_SECONDS, notify_budget, posting_rate
from .clock import SYSTEM_CLOCK, Clock, epoch_ms
from .connections import IN_FLIGHT_MS, ConnectionStore
from .delivery import DeliveryReport
from .fanout import (
    FanoutQueue,
    Shard,
    connection_shards,
    first_connection_page,
    new_notify_id,
    remove_settled_gone,
    rest_of_user_shard,
    user_shards,
)
from .identifiers import validate_event_key
from .metrics import NotifyObserver, log_notify
from .transports import ManagementTransport, Outcome, SubmittingTransport

# Connection lookups (one Query each) one notify is assumed to finish per second on its lookup threads.
LOOKUPS_PER_SECOND_PER_THREAD = 50.0

__all__ = ["DeliveryReport", "Notifier", "Notifies", "frame"]

logger = logging.getLogger(__name__)


def frame(event_key: str) -> bytes:
    """The exact bytes sent to browsers for `event_key`."""
    return json.dumps({"event": validate_event_key(event_key)}, separators=(",", ":")).encode()


class Notifies(Protocol):
    """What a feature needs to tell browsers to refetch: a `Notifier`, or a test's stand-in.

    class Chat:
        def __init__(self, ..., notifier: Notifies) -> None: ...
    """

    def notify(self, user_id: str, event_key: str) -> DeliveryReport: ...

    def notify_users(self, user_ids: Iterable[str], event_key: str) -> DeliveryReport: ...


class Notifier:
    """Fans an event key out to users' live connections.

    notifier = Notifier(store, transport)
    report = notifier.notify("uid-1", "jobs-updated")
    report.delivered, report.gone, report.failed

    With several users, their connection lookups (one DynamoDB Query each) run on
    `lookup_concurrency` threads, and with a transport that can `submit`, each user's
    frames are on their way while later lookups are still being read.

    A connection answering 410 has its row deleted only if the row is older than `IN_FLIGHT_MS`
    when the notify starts: a younger one may belong to a `$connect` still running, which the
    gateway does not know yet. Deleting that row would leave the socket open with no row, deaf to
    every later notify; kept, the next notify or the TTL settles it.

    With a `fanout` queue, a notify spends at most its budget (`budget_seconds`, less when the
    caller's Lambda must answer sooner: `chalice_realtime.budget`) delivering: users it cannot
    look up in time, connections it cannot post to in time at `posts_per_second`, and frames that
    failed are handed to the fan-out workers in shards, and the report counts them as deferred.
    """

    def __init__(
        self,
        store: ConnectionStore,
        transport: ManagementTransport,
        *,
        lookup_concurrency: int = 16,
        observer: NotifyObserver = log_notify,
        clock: Clock = SYSTEM_CLOCK,
        fanout: FanoutQueue | None = None,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        posts_per_second: Callable[[], float] | None = None,
    ) -> None:
        self._fanout = fanout
        self._budget_seconds = budget_seconds
        self._posts_per_second = posts_per_second
        self._store = store
        self._clock = clock
        self._observer = observer  # told of each notify's report and duration (logs, metrics)
        self._transport = transport
        self._lookup_concurrency = lookup_concurrency
        self._lookups: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def notify(self, user_id: str, event_key: str) -> DeliveryReport:
        """Send `{"event": event_key}` to each of the user's connections."""
        return self.notify_users([user_id], event_key)

    def notify_users(self, user_ids: Iterable[str], event_key: str) -> DeliveryReport:
        """Send `{"event": event_key}` to each connection of each user (duplicates ignored).

        Never raises for delivery problems: gone connections are counted and their rows
        deleted (unless young enough to be still connecting), failures are counted and
        logged. A bad key raises `ValueError` before any I/O.
        """
        data = frame(event_key)
        if self._fanout is not None:
            return self._deliver_within_budget(list(dict.fromkeys(user_ids)), event_key, data, self._fanout)
        started = time.perf_counter()
        # Taken before any frame is posted: a row older than the window now was older when its 410 came.
        settled_before = epoch_ms(self._clock.now()) - IN_FLIGHT_MS
        users = list(dict.fromkeys(user_ids))
        sent: list[tuple[list[str], Sequence[Outcome]]] = []
        connected_at: dict[str, int] = {}
        failed_lookups = 0
        if len(users) == 1:
            found = self._lookup(users[0])
            if found is None:
                failed_lookups = 1
            else:
                connected_at.update(found)
                ids = [cid for cid, _ in found]
                sent.append((ids, self._transport.post_to_connections(ids, data)))
        elif users:
            failed_lookups = self._fan_out(users, data, sent, connected_at)
        gone = [
            cid
            for ids, outcomes in sent
            for cid, outcome in zip(ids, outcomes, strict=True)
            if outcome is Outcome.GONE
        ]
        remove_settled_gone(self._store, gone, connected_at, settled_before)
        delivered = sum(outcome is Outcome.DELIVERED for _, outcomes in sent for outcome in outcomes)
        failed = sum(outcome is Outcome.FAILED for _, outcomes in sent for outcome in outcomes)
        report = DeliveryReport(delivered=delivered, gone=len(gone), failed=failed_lookups + failed)
        self._observer(event_key, len(users), report, (time.perf_counter() - started) * 1000)
        return report

    def _deliver_within_budget(
        self, users: list[str], event_key: str, data: bytes, fanout: FanoutQueue
    ) -> DeliveryReport:
        """Deliver `data` to `users`' connections for at most the notify's budget; hand the rest on.

        Users beyond what the lookup threads can read in half the budget go on as user shards at once;
        the connections found beyond what the transport can post in the time left, and the frames that
        failed, go on as connection shards. If the queue cannot take them, they count as failed (logged).
        """
        started = time.perf_counter()
        budget = notify_budget(self._budget_seconds)
        deadline = time.monotonic() + budget
        settled_before = epoch_ms(self._clock.now()) - IN_FLIGHT_MS
        notify_id = new_notify_id()
        lookup_rate = LOOKUPS_PER_SECOND_PER_THREAD * self._lookup_concurrency
        inline_users = max(1, int(lookup_rate * budget / 2))
        later = users[inline_users:]
        shards: list[Shard] = user_shards(notify_id, event_key, data, later)
        deferred_users = len(later)
        found, cursors, unread = self._lookup_until(users[:inline_users], deadline - budget / 2)
        if unread:
            shards += user_shards(notify_id + "-late", event_key, data, unread)
            deferred_users += len(unread)
        for user_id, cursor in cursors.items():
            shards.append(rest_of_user_shard(notify_id, event_key, data, user_id, cursor))
        deferred_users += len(cursors)
        capacity = max(
            0, int((deadline - time.monotonic()) * posting_rate(self._transport, self._posts_per_second))
        )
        rows = list(found.items())
        inline, surplus = rows[:capacity], rows[capacity:]
        shards += connection_shards(notify_id, event_key, data, surplus)
        deferred = len(surplus)
        failed = 0
        if shards and not fanout.try_hand_on(shards):
            failed += len(surplus) + deferred_users
            deferred = deferred_users = 0
        ids = [cid for cid, _ in inline]
        # Bounded by the budget: what the throttle still holds back then is handed on below, not waited for.
        left = max(MIN_POST_SECONDS, deadline - time.monotonic())
        outcomes = self._transport.post_to_connections(ids, data, deadline=left) if ids else []
        gone = [cid for cid, o in zip(ids, outcomes, strict=True) if o is Outcome.GONE]
        remove_settled_gone(self._store, gone, found, settled_before)
        unsent = [
            (cid, found[cid])
            for cid, o in zip(ids, outcomes, strict=True)
            if o not in (Outcome.DELIVERED, Outcome.GONE)
        ]
        if unsent:
            retry = connection_shards(notify_id, event_key, data, unsent, first=len(shards) + 1)
            if fanout.try_hand_on(retry):
                deferred += len(unsent)
            else:
                failed += len(unsent)
        delivered = sum(o is Outcome.DELIVERED for o in outcomes)
        report = DeliveryReport(delivered, len(gone), failed, deferred, deferred_users)
        self._observer(event_key, len(users), report, (time.perf_counter() - started) * 1000)
        return report

    def _lookup_until(
        self, users: list[str], deadline: float
    ) -> tuple[dict[str, int], dict[str, dict[str, Any]], list[str]]:
        """Read users' connections until `deadline` (monotonic): connection id -> connected_at, the cursor
        of each user with more than a shard's worth, and the users not read (late, or failed lookups)."""
        found: dict[str, int] = {}
        cursors: dict[str, dict[str, Any]] = {}
        unread: list[str] = []
        pool = self._lookup_pool()
        lookups = {user_id: pool.submit(first_connection_page, self._store, user_id) for user_id in users}
        try:
            for _ in as_completed(lookups.values(), timeout=max(0.0, deadline - time.monotonic())):
                pass
        except FuturesTimeout:
            pass
        for user_id, future in lookups.items():
            if not future.done():
                # Late: handed on. One still running finishes in the background and its answer is dropped,
                # so the caller never waits past the deadline for a slow Query.
                future.cancel()
                unread.append(user_id)
                continue
            page = future.result()
            if page is None:
                unread.append(user_id)  # failed after botocore's retries: a worker tries again
                continue
            rows, cursor = page
            found.update(rows)
            if cursor:
                cursors[user_id] = cursor
        return found, cursors, unread

    def _fan_out(
        self,
        users: list[str],
        data: bytes,
        sent: list[tuple[list[str], Sequence[Outcome]]],
        connected_at: dict[str, int],
    ) -> int:
        """Look users up concurrently, posting each user's frames as soon as their ids are known."""
        transport = self._transport
        submitter = transport if isinstance(transport, SubmittingTransport) else None
        in_flight: list[tuple[list[str], Future[list[Outcome]]]] = []
        waiting: list[str] = []
        failed_lookups = 0
        lookups = [self._lookup_pool().submit(self._lookup, user_id) for user_id in users]
        for done in as_completed(lookups):
            found = done.result()
            if found is None:
                failed_lookups += 1
                continue
            connected_at.update(found)
            ids = [cid for cid, _ in found]
            if ids and submitter is not None:
                in_flight.append((ids, submitter.submit(ids, data)))
            else:
                waiting.extend(ids)
        if waiting:
            sent.append((waiting, transport.post_to_connections(waiting, data)))
        for ids, future in in_flight:
            sent.append((ids, future.result()))
        return failed_lookups

    def _lookup(self, user_id: str) -> list[tuple[str, int]] | None:
        try:
            return self._store.connection_times_of(user_id)
        except Exception:
            # One user's lookup failing (after botocore's retries) must not cost the others their frames.
            logger.exception("connection lookup failed", extra={"user_id": user_id})
            return None

    def _lookup_pool(self) -> ThreadPoolExecutor:
        if self._lookups is None:
            with self._lock:
                if self._lookups is None:
                    self._lookups = ThreadPoolExecutor(self._lookup_concurrency, thread_name_prefix="lookup")
        return self._lookups
