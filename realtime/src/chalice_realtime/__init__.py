"""Realtime notifications for a Chalice app: push event keys over a WebSocket, refetch over REST.

    from chalice_realtime import caller_id, notify, realtime, realtime_auth

    app.experimental_feature_flags.update(["WEBSOCKETS"])
    app.register_blueprint(realtime)          # $connect, $disconnect, $default (ping, subscriptions)

    @app.route("/orders", methods=["POST"], authorizer=realtime_auth)
    def create_order():
        ...
        notify(caller_id(), "orders-updated")  # DeliveryReport(delivered=2, gone=0, failed=0)

What this module exports (`__all__`) is the package's public API, documented in its README;
its submodules are internal and may change in any release.
"""

from __future__ import annotations

from collections.abc import Iterable

from .auth import AuthUnavailable, FirebaseVerifier, InvalidToken, TokenVerifier
from .blueprint import caller_id, realtime, realtime_auth
from .delivery import DeliveryReport
from .identifiers import validate_event_key, validate_topic, validate_user_id
from .notifier import Notifier, Notifies
from .observability import configure_logging, correlated, correlation_id, sns_attributes
from .oidc import OidcVerifier
from .runtime import Realtime, current, use
from .settings import ConfigurationError, RealtimeSettings
from .topics import TopicAuthorizer, Topics, authorize_topics
from .transports import ManagementTransport, Outcome

__version__ = "0.1.0"


def notify(user_id: str, event_key: str) -> DeliveryReport:
    """Send `{"event": event_key}` to every live connection of `user_id`.

    Works from any Lambda of the app and from plain Python; the Management API
    endpoint comes from `WEBSOCKET_ENDPOINT`. Never raises for delivery problems;
    a malformed key raises `ValueError` before any I/O.

        notify("uid-1", "jobs-updated")  # DeliveryReport(delivered=2, gone=0, failed=0)
    """
    return current().notifier.notify(user_id, event_key)


def notify_users(user_ids: Iterable[str], event_key: str) -> DeliveryReport:
    """Send `{"event": event_key}` to every live connection of each user (duplicates once).

    notify_users(["uid-1", "uid-2"], "chat-messages-updated")
    """
    return current().notifier.notify_users(user_ids, event_key)


def notify_topic(topic: str, event_key: str) -> DeliveryReport:
    """Send `{"event": event_key, "topic": topic}` to every connection subscribed to `topic`.

    Subscribers are read and posted one Query page at a time. Never raises for delivery problems;
    a malformed topic or key raises `ValueError` before any I/O.

        notify_topic("room:42", "room-messages-updated")  # DeliveryReport(delivered=5, gone=0, failed=0)
    """
    return current().topics.notify_topic(topic, event_key)


def unsubscribe_user(topic: str, user_id: str) -> int:
    """End `user_id`'s subscriptions to `topic` (each connection gets `unsubscribed`); how many ended.

    unsubscribe_user("room:42", "uid-7")  # after the authorizer stopped letting them in
    """
    return current().topics.unsubscribe_user(topic, user_id)


def topic_members(topic: str) -> list[str]:
    """The user ids subscribed to `topic` right now, each once, sorted (presence).

    topic_members("room:42")  # ['uid-1', 'uid-3']
    """
    return current().topics.members(topic)


__all__ = [
    "AuthUnavailable",
    "ConfigurationError",
    "DeliveryReport",
    "FirebaseVerifier",
    "InvalidToken",
    "ManagementTransport",
    "Notifier",
    "Notifies",
    "OidcVerifier",
    "Outcome",
    "Realtime",
    "RealtimeSettings",
    "TokenVerifier",
    "TopicAuthorizer",
    "Topics",
    "__version__",
    "authorize_topics",
    "caller_id",
    "configure_logging",
    "correlated",
    "correlation_id",
    "current",
    "notify",
    "notify_topic",
    "notify_users",
    "realtime",
    "realtime_auth",
    "sns_attributes",
    "topic_members",
    "unsubscribe_user",
    "use",
    "validate_event_key",
    "validate_topic",
    "validate_user_id",
]
