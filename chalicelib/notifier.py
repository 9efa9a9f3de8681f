"""notify(user_id, event_key): one frame `{"event": key}` to every live connection of a user."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.connections import ConnectionStore
from chalicelib.transport import ManagementTransport, Outcome

logger = logging.getLogger(__name__)

EVENT_KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9.:-]{0,63}")


def validate_event_key(event_key: object) -> str:
    """Return `event_key` if it matches `^[a-z0-9][a-z0-9.:-]{0,63}$`, else raise `ValueError`."""
    if not isinstance(event_key, str) or not EVENT_KEY_PATTERN.fullmatch(event_key):
        raise ValueError(f"invalid event key {event_key!r}: expected ^[a-z0-9][a-z0-9.:-]{{0,63}}$")
    return event_key


def frame(event_key: str) -> bytes:
    """The exact bytes sent to browsers for `event_key`."""
    return json.dumps({"event": validate_event_key(event_key)}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DeliveryReport:
    """What became of one notify: frames delivered, connections found gone (and
    deleted), and frames that still failed after retries."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.delivered + other.delivered, self.gone + other.gone, self.failed + other.failed
        )

    @property
    def connections(self) -> int:
        return self.delivered + self.gone + self.failed


class Notifier:
    """Fans an event key out to users' live connections.

    notifier = Notifier(store, transport)
    report = notifier.notify("uid-1", "jobs-updated")
    report.delivered, report.gone, report.failed
    """

    def __init__(self, store: ConnectionStore, transport: ManagementTransport) -> None:
        self._store = store
        self._transport = transport

    def notify(self, user_id: str, event_key: str) -> DeliveryReport:
        """Send `{"event": event_key}` to each of the user's connections."""
        return self.notify_users([user_id], event_key)

    def notify_users(self, user_ids: Iterable[str], event_key: str) -> DeliveryReport:
        """Send `{"event": event_key}` to each connection of each user (duplicates ignored).

        Never raises for delivery problems: gone connections are deleted and
        counted, failures are counted and logged. A bad key raises `ValueError`
        before any I/O.
        """
        data = frame(event_key)
        connection_ids: list[str] = []
        failed_lookups = 0
        for user_id in dict.fromkeys(user_ids):
            try:
                connection_ids.extend(self._store.connection_ids_of(user_id))
            except Exception:
                # One user's lookup failing (after botocore's retries) must not cost the others their frames.
                logger.exception("connection lookup failed", extra={"user_id": user_id})
                failed_lookups += 1
        outcomes = self._transport.post_to_connections(connection_ids, data)
        gone = [cid for cid, outcome in zip(connection_ids, outcomes, strict=True) if outcome is Outcome.GONE]
        if gone:
            try:
                self._store.remove_many(gone)
            except Exception:
                logger.exception("could not delete gone connections", extra={"count": len(gone)})
        report = DeliveryReport(
            delivered=sum(outcome is Outcome.DELIVERED for outcome in outcomes),
            gone=len(gone),
            failed=failed_lookups + sum(outcome is Outcome.FAILED for outcome in outcomes),
        )
        logger.info(
            "notified",
            extra={
                "event_key": event_key,
                "delivered": report.delivered,
                "gone": report.gone,
                "failed": report.failed,
            },
        )
        return report
