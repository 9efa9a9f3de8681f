"""Realtime notifications for a Chalice app: push event keys, refetch over REST.

from chalicelib import notify
report = notify("uid-1", "jobs-updated")  # DeliveryReport(delivered=2, gone=0, failed=0)
"""

from __future__ import annotations

from collections.abc import Iterable

from chalicelib.notifier import DeliveryReport


def notify(user_id: str, event_key: str) -> DeliveryReport:
    """Send `{"event": event_key}` to every live connection of `user_id`.

    Works from any Lambda of the app and from plain Python; the Management API
    endpoint comes from `WEBSOCKET_ENDPOINT`.
    """
    from chalicelib import services

    return services.current().notifier.notify(user_id, event_key)


def notify_users(user_ids: Iterable[str], event_key: str) -> DeliveryReport:
    """Send `{"event": event_key}` to every live connection of each user."""
    from chalicelib import services

    return services.current().notifier.notify_users(user_ids, event_key)


__all__ = ["DeliveryReport", "notify", "notify_users"]
