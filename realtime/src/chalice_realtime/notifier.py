"""notify(user_id, event_key): one frame `{"event": key}` to every live connection of a user."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Protocol

from .clock import SYSTEM_CLOCK, Clock, epoch_ms
from .connections import IN_FLIGHT_MS, ConnectionStore
from .delivery import DeliveryReport
from .identifiers import validate_event_key
from .metrics import NotifyObserver, log_notify
from .transports import ManagementTransport, Outcome, SubmittingTransport

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
    """

    def __init__(
        self,
        store: ConnectionStore,
        transport: ManagementTransport,
        *,
        lookup_concurrency: int = 16,
        observer: NotifyObserver = log_notify,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
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
        settled = [cid for cid in gone if connected_at[cid] < settled_before]
        if len(settled) < len(gone):
            kept = len(gone) - len(settled)
            logger.info("kept the rows of connections that may still be connecting", extra={"count": kept})
        if settled:
            try:
                self._store.remove_many(settled)  # 25 rows per BatchWriteItem
            except Exception:
                logger.exception("could not delete gone connections", extra={"count": len(settled)})
        delivered = sum(outcome is Outcome.DELIVERED for _, outcomes in sent for outcome in outcomes)
        failed = sum(outcome is Outcome.FAILED for _, outcomes in sent for outcome in outcomes)
        report = DeliveryReport(delivered=delivered, gone=len(gone), failed=failed_lookups + failed)
        self._observer(event_key, len(users), report, (time.perf_counter() - started) * 1000)
        return report

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
