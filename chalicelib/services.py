"""The app's features (jobs, chat, payments), built once per process on top of the realtime core.

Handlers in `app.py` and plain Python alike get them from `current()`; tests
install their own with `use(...)` instead of patching modules. The features reach
browsers through the core's notifier only, as any app adopting the core would.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import chalice_realtime as realtime_core
from chalice_realtime import ManagementTransport, Notifies, Realtime, TokenVerifier

from chalicelib import aws
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.jobs import KINDS, JobKinds, JobQueue, JobRunner, JobStore
from chalicelib.limits import CHANGE_ROOMS, SEND_MESSAGE, SEND_ROOM_MESSAGE, SUBMIT_JOB, RequestRates
from chalicelib.messages import Chat
from chalicelib.payments import PaymentStore, StripeWebhooks
from chalicelib.rooms import Rooms
from chalicelib.secrets import SecretSetting
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sns.client import SNSClient
    from types_boto3_ssm.client import SSMClient


class Services:
    """Lazily built features; each is created on first use only.

    services = Services(settings)
    services.jobs.submit("uid-1", {"kind": "report", "params": {"seconds": 5}})

    `realtime` is the core the features notify through; without it, one is built from
    `settings.realtime` (with `dynamodb`, `transport` and `verifier` if given).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        realtime: Realtime | None = None,
        dynamodb: DynamoDBClient | None = None,
        sns: SNSClient | None = None,
        transport: ManagementTransport | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.realtime = realtime or Realtime(
            settings.realtime, dynamodb=dynamodb, transport=transport, verifier=verifier
        )
        self._dynamodb = dynamodb
        self._sns = sns

    @property
    def notifier(self) -> Notifies:
        return self.realtime.notifier

    @functools.cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb or aws.client("dynamodb", max_pool_connections=32)

    @functools.cached_property
    def sns(self) -> SNSClient:
        return self._sns or aws.client("sns")

    @functools.cached_property
    def clock(self) -> Clock:
        """The features' clock; tests assign a fake one before first use, so jobs run without waiting."""
        return SYSTEM_CLOCK

    @functools.cached_property
    def request_rates(self) -> RequestRates:
        """Per-user rates of the routes that create things, counted in `RATE_LIMITS_TABLE`."""
        return RequestRates(
            self.settings.rate_limits_table,
            self.dynamodb,
            self.clock,
            {
                SUBMIT_JOB: self.settings.jobs_rate_limit,
                SEND_MESSAGE: self.settings.messages_rate_limit,
                CHANGE_ROOMS: self.settings.rooms_rate_limit,
                SEND_ROOM_MESSAGE: self.settings.room_messages_rate_limit,
            },
        )

    # ------------------------------------------------------------ jobs

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
            self.clock,
            max_active=self.settings.max_active_jobs_per_user,
            max_stage_active=self.settings.max_active_jobs,
        )

    @functools.cached_property
    def job_runner(self) -> JobRunner:
        return JobRunner(self.job_store, self.notifier, self.job_kinds, self.clock)

    # ------------------------------------------------------------ chat

    @functools.cached_property
    def chat(self) -> Chat:
        return Chat(self.settings.messages_table, self.dynamodb, self.notifier, clock=self.clock)

    # ------------------------------------------------------------ rooms

    @functools.cached_property
    def rooms(self) -> Rooms:
        return Rooms(self.settings.rooms_table, self.dynamodb, self.realtime.topics, clock=self.clock)

    # ------------------------------------------------------------ payments

    @functools.cached_property
    def ssm(self) -> SSMClient:
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
        return PaymentStore(self.settings.payments_table, self.dynamodb, clock=self.clock)

    @functools.cached_property
    def stripe_webhooks(self) -> StripeWebhooks:
        return StripeWebhooks(self.stripe_webhook_secret, self.payments, self.notifier)


def may_subscribe(user_id: str, topic: str) -> bool:
    """The app's topic authorizer (`TOPIC_AUTHORIZER=chalicelib.services:may_subscribe`): members of room 42
    may subscribe to `room:42`, and nobody may subscribe to anything else."""
    return current().rooms.may_subscribe(user_id, topic)


_current: Services | None = None
_lock = threading.Lock()


def current() -> Services:
    """The process's services, built from the environment's settings on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                # The core's components are the process's, shared with the blueprint's handlers.
                _current = Services(get_settings(), realtime=realtime_core.current())
    return _current


def use(services: Services | None) -> None:
    """Install `services` and the core they notify through for this process (tests, scripts);
    `None` rebuilds both from settings."""
    global _current
    _current = services
    realtime_core.use(services.realtime if services is not None else None)
