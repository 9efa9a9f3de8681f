"""The app's components, built once per process from settings and reused while warm.

Handlers in `app.py` and plain Python alike get them from `current()`; tests
install their own with `use(...)` instead of patching modules.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from chalicelib import aws
from chalicelib.auth import TokenVerifier
from chalicelib.connections import ConnectionStore
from chalicelib.jobs import KINDS, Clock, JobKinds, JobQueue, JobRunner, JobStore, SystemClock
from chalicelib.messages import Chat
from chalicelib.notifier import Notifier
from chalicelib.observability import NotifyMetrics
from chalicelib.payments import PaymentStore, StripeWebhooks
from chalicelib.secrets import SecretSetting
from chalicelib.settings import Settings, get_settings
from chalicelib.transport import Boto3ThreadPoolTransport, ManagementTransport
from chalicelib.websocket import WebsocketSessions


class Services:
    """Lazily built components; each is created on first use only.

    services = Services(settings)
    services.notifier.notify("uid-1", "jobs-updated")
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dynamodb: Any = None,
        sns: Any = None,
        transport: ManagementTransport | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._sns = sns
        self._transport = transport
        self._verifier = verifier

    @functools.cached_property
    def dynamodb(self) -> Any:
        return self._dynamodb or aws.client("dynamodb", max_pool_connections=32)

    @functools.cached_property
    def sns(self) -> Any:
        return self._sns or aws.client("sns")

    @functools.cached_property
    def transport(self) -> ManagementTransport:
        from chalicelib.curl_transport import CurlTransport

        if self._transport is not None:
            return self._transport
        if self._dynamodb is not None:
            # Injected boto3 clients (moto in-process, Stubber, a custom session) are honoured only by a
            # transport that goes through botocore too; built from settings, the libcurl one (a small
            # fraction of the CPU per frame of botocore's or aiohttp's: `python -m bench.fanout`).
            return Boto3ThreadPoolTransport(self.settings.websocket_endpoint)
        return CurlTransport(self.settings.websocket_endpoint)

    @functools.cached_property
    def verifier(self) -> TokenVerifier:
        return self._verifier or TokenVerifier(
            self.settings.firebase_project_id, check_revoked=self.settings.check_revoked_tokens
        )

    @functools.cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self.settings.connections_table, self.dynamodb)

    @functools.cached_property
    def notifier(self) -> Notifier:
        return Notifier(self.connections, self.transport, observer=NotifyMetrics(self.settings.stage))

    @functools.cached_property
    def websocket(self) -> WebsocketSessions:
        return WebsocketSessions(
            self.verifier,
            self.connections,
            self.transport,
            max_connections_per_user=self.settings.max_connections_per_user,
        )

    # ------------------------------------------------------------ jobs

    @functools.cached_property
    def job_clock(self) -> Clock:
        """The jobs' clock; tests assign a fake one before first use so jobs run without waiting."""
        return SystemClock()

    @functools.cached_property
    def job_kinds(self) -> JobKinds:
        return KINDS

    @functools.cached_property
    def job_store(self) -> JobStore:
        return JobStore(self.settings.jobs_table, self.dynamodb)

    @functools.cached_property
    def jobs(self) -> JobQueue:
        return JobQueue(
            self.job_store,
            self.job_kinds,
            self.sns,
            self.settings.jobs_topic_arn,
            self.notifier,
            self.job_clock,
        )

    @functools.cached_property
    def job_runner(self) -> JobRunner:
        return JobRunner(self.job_store, self.notifier, self.job_kinds, self.job_clock)

    # ------------------------------------------------------------ chat

    @functools.cached_property
    def chat(self) -> Chat:
        return Chat(self.settings.messages_table, self.dynamodb, self.notifier)

    # ------------------------------------------------------------ payments

    @functools.cached_property
    def ssm(self) -> Any:
        return aws.client("ssm")

    @functools.cached_property
    def stripe_webhook_secret(self) -> SecretSetting:
        return SecretSetting(
            "STRIPE_WEBHOOK_SECRET",
            self.settings.stripe_webhook_secret,
            "STRIPE_WEBHOOK_SECRET_PARAM",
            self.settings.stripe_webhook_secret_param,
            # The SSM client is built only when a parameter is named (tests may set `.ssm` to moto's).
            ssm=None if not self.settings.stripe_webhook_secret_param else self.ssm,
        )

    @functools.cached_property
    def payments(self) -> PaymentStore:
        return PaymentStore(self.settings.payments_table, self.dynamodb)

    @functools.cached_property
    def stripe_webhooks(self) -> StripeWebhooks:
        return StripeWebhooks(self.stripe_webhook_secret, self.payments, self.notifier)


_current: Services | None = None
_lock = threading.Lock()


def current() -> Services:
    """The process's services, built from the environment's settings on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Services(get_settings())
    return _current


def use(services: Services | None) -> None:
    """Install `services` for this process (tests, scripts); `None` rebuilds from settings."""
    global _current
    _current = services
