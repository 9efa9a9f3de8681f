"""The core's components, built lazily from its settings once per process and reused while warm.

The blueprint's handlers and `notify()` get them from `current()`; tests and scripts
install their own with `use(...)` instead of patching modules:

    realtime = Realtime(RealtimeSettings.from_env(environ), dynamodb=moto_client)
    runtime.use(realtime)
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from . import aws
from .auth import FirebaseVerifier, TokenVerifier
from .connections import ConnectionStore
from .fanout import FanoutQueue, FanoutWorker, ShardLedger
from .metrics import NotifyMetrics, NotifyObserver
from .notifier import Notifier
from .oidc import OidcVerifier
from .settings import RealtimeSettings, get_settings
from .subscriptions import SubscriptionStore
from .topics import TopicAuthorizer, Topics, load_authorizer, registered_authorizer
from .transports import ManagementTransport, transport_for
from .websocket import WebsocketSessions

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sqs.client import SQSClient


class Realtime:
    """Lazily built core components; each is created on first use only.

    realtime = Realtime(settings)
    realtime.notifier.notify("uid-1", "jobs-updated")

    Every collaborator can be passed in; what is not is built from `settings`. The
    transport is the one `settings.transport` names unless one is given: injecting a
    DynamoDB client never changes it.
    """

    def __init__(
        self,
        settings: RealtimeSettings,
        *,
        dynamodb: DynamoDBClient | None = None,
        transport: ManagementTransport | None = None,
        verifier: TokenVerifier | None = None,
        observer: NotifyObserver | None = None,
        topic_authorizer: TopicAuthorizer | None = None,
        sqs: SQSClient | None = None,
    ) -> None:
        self.settings = settings
        self._topic_authorizer = topic_authorizer
        self._sqs = sqs
        self._dynamodb = dynamodb
        self._transport = transport
        self._verifier = verifier
        self._observer = observer

    @functools.cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb or aws.client("dynamodb", max_pool_connections=32)

    @functools.cached_property
    def transport(self) -> ManagementTransport:
        return self._transport or transport_for(
            self.settings.transport,
            self.settings.websocket_endpoint,
            max_posts_per_second=self.settings.max_posts_per_second,
        )

    @functools.cached_property
    def verifier(self) -> TokenVerifier:
        return self._verifier or verifier_for(self.settings)

    @functools.cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self.settings.connections_table, self.dynamodb)

    @functools.cached_property
    def sqs(self) -> SQSClient:
        return self._sqs or aws.client("sqs")

    @functools.cached_property
    def fanout_queue(self) -> FanoutQueue | None:
        """The fan-out workers' queue, None when `FANOUT_QUEUE_URL` is not set (every notify inline)."""
        url = self.settings.fanout_queue_url
        return FanoutQueue(url, self.sqs) if url else None

    @functools.cached_property
    def notifier(self) -> Notifier:
        observer = self._observer or NotifyMetrics(self.settings.stage)
        return Notifier(
            self.connections,
            self.transport,
            observer=observer,
            fanout=self.fanout_queue,
            budget_seconds=self.settings.notify_budget_seconds,
        )

    @functools.cached_property
    def fanout_worker(self) -> FanoutWorker:
        observer = self._observer or NotifyMetrics(self.settings.stage)
        ledger = ShardLedger(self.settings.connections_table, self.dynamodb)
        return FanoutWorker(
            self.connections, self.transport, ledger, self.fanout_queue, topics=self.topics, observer=observer
        )

    @functools.cached_property
    def websocket(self) -> WebsocketSessions:
        return WebsocketSessions(
            self.verifier,
            self.connections,
            self.transport,
            max_connections_per_user=self.settings.max_connections_per_user,
            topics=self.topics,
        )

    @functools.cached_property
    def topics(self) -> Topics:
        return Topics(
            SubscriptionStore(self.settings.topics_table, self.dynamodb),
            self.connections,
            self.transport,
            authorizer=self.topic_authorizer,
            max_topics_per_connection=self.settings.max_topics_per_connection,
            subscribe_rate=self.settings.subscribe_rate_limit,
            observer=self._observer or NotifyMetrics(self.settings.stage),
            fanout=self.fanout_queue,
            budget_seconds=self.settings.notify_budget_seconds,
        )

    def topic_authorizer(self) -> TopicAuthorizer | None:
        """Who decides subscriptions: the one passed in, else `authorize_topics`'s, else the setting's."""
        if self._topic_authorizer is not None:
            return self._topic_authorizer
        registered = registered_authorizer()
        if registered is not None or not self.settings.topic_authorizer:
            return registered
        return load_authorizer(self.settings.topic_authorizer)

    def close(self) -> None:
        """Stop what was started for this instance: the transport's loop and pooled connections (tests,
        scripts; a Lambda process never needs it)."""
        transport = self.__dict__.get("transport")  # only if it was built
        close = getattr(transport, "close", None)
        if callable(close):
            close()


def verifier_for(settings: RealtimeSettings) -> TokenVerifier:
    """The verifier `AUTH_PROVIDER` names: Firebase ID tokens, or any OpenID Connect issuer's tokens.

    verifier = verifier_for(RealtimeSettings.from_env(os.environ))
    """
    if settings.auth_provider == "oidc":
        return OidcVerifier(
            settings.oidc_issuer,
            settings.oidc_audiences,
            jwks_url=settings.oidc_jwks_url,
            token_uses=settings.oidc_token_uses,
        )
    return FirebaseVerifier(
        settings.firebase_project_id,
        check_revoked=settings.check_revoked_tokens,
        allow_emulator=settings.is_local,
    )


_current: Realtime | None = None
_lock = threading.Lock()


def current() -> Realtime:
    """The process's core components, built from the environment's settings on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Realtime(get_settings())
    return _current


def use(realtime: Realtime | None) -> None:
    """Install `realtime` for this process (tests, scripts); `None` rebuilds from settings on next use."""
    global _current
    _current = realtime
