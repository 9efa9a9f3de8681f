"""Stripe payments: verified webhooks become payment records and a `payments-updated` notification.

Flow: `StripeWebhooks.handle(raw_body, signature)` verifies the `Stripe-Signature`
header with `stripe.Webhook.construct_event` (stripe is imported on first use),
turns a handled event into a `Payment` for the user named by
`client_reference_id` or `metadata.user_id`, records it with `PaymentStore.record`
(one DynamoDB transaction: an event-id marker that may not exist yet, plus the
payment item), and notifies that user only when something was recorded.

Table layout (`PAYMENTS_TABLE`, keys `pk`/`sk`, LSI `by_created` on `created_key`):
- a payment: `pk=USER#<uid>`, `sk=PAYMENT#<payment id>`; one item per payment, so
  `payment_intent.payment_failed` followed by `payment_intent.succeeded` for the
  same PaymentIntent updates one record, and a Checkout Session is filed under its
  PaymentIntent's id so its `payment_intent.*` events land on the same record.
- a processed event: `pk=EVENT#<event id>`, `sk=EVENT`, expiring by TTL after 90 days
  (Stripe retries for 3 days; a replay after that still only rewrites the same values).

Events that are signed but can never be processed (no or invalid user reference,
missing amount) are acknowledged with 200 and logged, not refused: Stripe retries
non-2xx answers for days and the answer would never change.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalice_realtime import Notifies, validate_user_id

from chalicelib import aws
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import RequestRefused
from chalicelib.pagination import Listing, Page, query_page
from chalicelib.settings import ConfigurationError

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodb.type_defs import PutTypeDef, UpdateTypeDef

logger = logging.getLogger(__name__)

EVENT_KEY = "payments-updated"
HANDLED_EVENT_TYPES = frozenset(
    {"checkout.session.completed", "payment_intent.succeeded", "payment_intent.payment_failed"}
)
SUCCEEDED = "succeeded"
FAILED = "failed"
EVENT_MARKER_TTL_SECONDS = 90 * 24 * 3600
BY_CREATED_INDEX = "by_created"
# `GET /payments`: a user's payments on the `by_created` index (its key: the table's and `created_key`).
PAYMENTS_OF_USER = Listing(("pk", "sk", "created_key"))

# Stripe ids (`evt_...`, `pi_...`, `cs_test_...`) end up in DynamoDB keys: letters, digits and '_' only.
STRIPE_ID_PATTERN = re.compile(r"[A-Za-z0-9_]{1,255}")
CURRENCY_PATTERN = re.compile(r"[a-z]{3}")
MAX_AMOUNT = 10**15


class InvalidWebhook(RequestRefused):
    """The request is not a Stripe-signed event (bad or missing signature, old timestamp, not JSON): 400."""


class UnprocessableEvent(ValueError):
    """A signed, handled event that names no valid user or payment; acknowledged and logged, not recorded."""


class Outcome(enum.StrEnum):
    RECORDED = "recorded"  # stored (new or changed) and the owner notified
    DUPLICATE = "duplicate"  # this event id was processed before: nothing written, nobody notified
    STALE = "stale"  # older than what is stored (a failure after success): nothing written
    IGNORED = "ignored"  # unhandled type, or unprocessable: nothing written


@dataclass(frozen=True)
class Payment:
    """One payment of one user, as the latest handled Stripe event describes it."""

    user_id: str
    payment_id: str
    stripe_object_id: str
    amount: int
    currency: str
    status: str
    created: int
    event_id: str
    event_created: int

    def to_json(self) -> dict[str, Any]:
        """The shape `GET /payments` returns for each payment."""
        return {
            "payment_id": self.payment_id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "stripe_object_id": self.stripe_object_id,
            "event_id": self.event_id,
            "created": self.created,
        }


@dataclass(frozen=True)
class WebhookResult:
    outcome: Outcome
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The webhook's 200 body (Stripe shows it in the dashboard's delivery log)."""
        return {"received": True, "outcome": self.outcome.value}


class SecretSource(Protocol):
    def get(self) -> str: ...


# ---------------------------------------------------------------- events -> payments


def payment_from_event(event: Mapping[str, Any]) -> Payment:
    """The payment a handled, verified event describes; `UnprocessableEvent` says why there is none.

    payment_from_event({"id": "evt_1", "type": "payment_intent.succeeded", "created": 1700000000,
                        "data": {"object": {"id": "pi_1", "amount": 500, "currency": "eur",
                                            "created": 1700000000, "metadata": {"user_id": "alice"}}}})
    """
    event_type = event.get("type")
    if event_type not in HANDLED_EVENT_TYPES:
        raise UnprocessableEvent(f"event type {str(event_type)[:80]!r} is not handled")
    event_id = _stripe_id(event.get("id"), "event id")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise UnprocessableEvent("event has no data.object")
    object_id = _stripe_id(obj.get("id"), "object id")
    user_id = _user_reference(obj)
    if event_type == "checkout.session.completed":
        payment_status = obj.get("payment_status")
        if payment_status != "paid":
            # 'unpaid' (a delayed method: its payment_intent.* events follow) or 'no_payment_required'.
            raise UnprocessableEvent(f"checkout session payment_status is {str(payment_status)[:40]!r}")
        status = SUCCEEDED
        amount = obj.get("amount_total")
        payment_id = _payment_intent_id(obj.get("payment_intent")) or object_id
    else:
        status = SUCCEEDED if event_type == "payment_intent.succeeded" else FAILED
        amount = obj.get("amount")
        payment_id = object_id
    currency = obj.get("currency")
    if isinstance(currency, str):
        currency = currency.lower()
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount < MAX_AMOUNT:
        raise UnprocessableEvent("amount is missing or not a non-negative integer")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise UnprocessableEvent("currency is missing or not a 3-letter code")
    created = _timestamp(obj.get("created"), "object created")
    return Payment(
        user_id=user_id,
        payment_id=payment_id,
        stripe_object_id=object_id,
        amount=amount,
        currency=currency,
        status=status,
        created=created,
        event_id=event_id,
        event_created=_timestamp(event.get("created", created), "event created"),
    )


def _user_reference(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    reference = obj.get("client_reference_id") or (
        metadata.get("user_id") if isinstance(metadata, Mapping) else None
    )
    if reference is None or reference == "":
        raise UnprocessableEvent("no user reference (client_reference_id or metadata.user_id)")
    try:
        return validate_user_id(reference, "the user reference")
    except ValueError as exc:
        raise UnprocessableEvent(str(exc)) from None


def _payment_intent_id(value: object) -> str | None:
    # A Checkout Session names its PaymentIntent by id, or embeds it when the event was expanded.
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, str) and STRIPE_ID_PATTERN.fullmatch(value):
        return value
    return None


def _stripe_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not STRIPE_ID_PATTERN.fullmatch(value):
        raise UnprocessableEvent(f"{field} is missing or malformed")
    return value


def _timestamp(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UnprocessableEvent(f"{field} is missing or not a Unix timestamp")
    return value


# ---------------------------------------------------------------- storage


class PaymentStore:
    """Payments per user in DynamoDB, written idempotently per Stripe event id.

    store = PaymentStore("realtime-payments", dynamodb_client)
    store.record(payment)                      # Outcome.RECORDED, then Outcome.DUPLICATE for the same event
    store.payments_of("alice", limit="20")     # Page(items=(...newest first), next_cursor=None)
    """

    def __init__(self, table_name: str, dynamodb: DynamoDBClient, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._clock = clock

    def record(self, payment: Payment) -> Outcome:
        """Store `payment` unless its event id was seen before or it is a failure after a success.

        One transaction: the event marker (`attribute_not_exists`) and the payment
        update succeed together or not at all, so concurrent or repeated deliveries
        of one event write once, with no read-then-write race.
        """
        from botocore.exceptions import ClientError

        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": self._event_marker(payment)},
                    {"Update": self._payment_update(payment)},
                ]
            )
        except ClientError as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return Outcome.DUPLICATE
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return Outcome.STALE
            raise  # a conflicting concurrent write: the caller answers 5xx and Stripe retries
        return Outcome.RECORDED

    def payments_of(
        self, user_id: str, *, limit: str | None = None, cursor: str | None = None
    ) -> Page[Payment]:
        """The user's payments, newest first, one page (`?limit=`, `?cursor=`; `InvalidPage` if bad)."""
        try:
            partition = {"pk": {"S": _user_pk(user_id)}}
        except ValueError as exc:  # a token whose uid cannot be a key: nothing of it is stored
            raise RequestRefused(str(exc)) from exc
        query = {
            "TableName": self._table,
            "IndexName": BY_CREATED_INDEX,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": partition["pk"]},
            "ScanIndexForward": False,
        }
        page = query_page(self._dynamodb, query, PAYMENTS_OF_USER, partition, limit=limit, cursor=cursor)
        return page.map(_payment_from_item)

    def _event_marker(self, payment: Payment) -> PutTypeDef:
        return {
            "TableName": self._table,
            "Item": {
                "pk": {"S": f"EVENT#{payment.event_id}"},
                "sk": {"S": "EVENT"},
                "user_id": {"S": payment.user_id},
                "payment_id": {"S": payment.payment_id},
                "expires_at": {"N": str(int(self._clock.now()) + EVENT_MARKER_TTL_SECONDS)},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def _payment_update(self, payment: Payment) -> UpdateTypeDef:
        from boto3.dynamodb.types import TypeSerializer

        fields: dict[str, str | int] = {
            "user_id": payment.user_id,
            "payment_id": payment.payment_id,
            "stripe_object_id": payment.stripe_object_id,
            "amount": payment.amount,
            "currency": payment.currency,
            "status": payment.status,
            "event_id": payment.event_id,
            "event_created": payment.event_created,
        }
        # The first event fixes when the payment was created, hence its place in the newest-first list.
        first_only: dict[str, str | int] = {
            "created": payment.created,
            "created_key": f"{payment.created:012d}#{payment.payment_id}",
        }
        assignments = [f"#{name} = :{name}" for name in fields] + [
            f"#{name} = if_not_exists(#{name}, :{name})" for name in first_only
        ]
        values = {**fields, **first_only}
        condition = None
        if payment.status == FAILED:
            # Success is final for a PaymentIntent, and Stripe does not order deliveries: a failure
            # only lands on a payment that has not succeeded and was not updated by a newer event.
            condition = (
                "attribute_not_exists(pk) OR (#status <> :succeeded AND #event_created <= :event_created)"
            )
            values["succeeded"] = SUCCEEDED
        serialize = TypeSerializer().serialize
        update: UpdateTypeDef = {
            "TableName": self._table,
            "Key": {"pk": {"S": _user_pk(payment.user_id)}, "sk": {"S": f"PAYMENT#{payment.payment_id}"}},
            "UpdateExpression": "SET " + ", ".join(assignments),
            "ExpressionAttributeNames": {f"#{name}": name for name in [*fields, *first_only]},
            "ExpressionAttributeValues": {f":{name}": serialize(value) for name, value in values.items()},
        }
        if condition:
            update["ConditionExpression"] = condition
        return update


def _user_pk(user_id: str) -> str:
    return f"USER#{validate_user_id(user_id)}"


def _payment_from_item(item: Mapping[str, Any]) -> Payment:
    return Payment(
        user_id=item["user_id"]["S"],
        payment_id=item["payment_id"]["S"],
        stripe_object_id=item["stripe_object_id"]["S"],
        amount=int(item["amount"]["N"]),
        currency=item["currency"]["S"],
        status=item["status"]["S"],
        created=int(item["created"]["N"]),
        event_id=item["event_id"]["S"],
        event_created=int(item["event_created"]["N"]),
    )


# ---------------------------------------------------------------- the webhook


class StripeWebhooks:
    """Verifies, records and notifies for `POST /webhooks/stripe`.

    webhooks = StripeWebhooks(secret, store, notifier)
    webhooks.handle(raw_body, request.headers.get("Stripe-Signature")).to_json()
    # {"received": True, "outcome": "recorded"}
    """

    def __init__(
        self,
        secret: SecretSource,
        store: PaymentStore,
        notifier: Notifies,
        *,
        tolerance_seconds: int = 300,
    ) -> None:
        self._secret = secret
        self._store = store
        self._notifier = notifier
        self._tolerance = tolerance_seconds

    def handle(self, raw_body: bytes | str, signature: str | None) -> WebhookResult:
        """Process one delivery. Raises `InvalidWebhook` (answer 400, nothing written) when it is
        not a genuine, recent Stripe event, and `ConfigurationError` (answer 500, logged) when the
        secret is not configured; anything else is acknowledged with its `Outcome`."""
        try:
            secret = self._secret.get()
        except ConfigurationError as exc:
            logger.error("stripe webhook secret unavailable: %s", exc)
            raise
        event = self._verified_event(raw_body, signature, secret)
        event_type = str(event.get("type"))[:80]
        event_id = event.get("id") if isinstance(event.get("id"), str) else None
        context = {"event_id": (event_id or "")[:255], "event_type": event_type}
        if event_type not in HANDLED_EVENT_TYPES:
            logger.info("stripe event ignored: type not handled", extra=context)
            return WebhookResult(Outcome.IGNORED, event_id)
        try:
            payment = payment_from_event(event)
        except UnprocessableEvent as exc:
            # Acknowledged, not refused: Stripe would retry it for days and it would never succeed.
            logger.warning("stripe event acknowledged but not recorded: %s", exc, extra=context)
            return WebhookResult(Outcome.IGNORED, event_id)
        outcome = self._store.record(payment)
        logger.info("stripe event %s", outcome.value, extra={**context, "payment_id": payment.payment_id})
        if outcome is Outcome.RECORDED:
            self._notifier.notify(payment.user_id, EVENT_KEY)
        return WebhookResult(outcome, event_id)

    def _verified_event(self, raw_body: bytes | str, signature: str | None, secret: str) -> dict[str, Any]:
        import stripe  # about 100 ms to import: only the webhook's cold start pays it

        try:
            event = stripe.Webhook.construct_event(raw_body, signature, secret, tolerance=self._tolerance)
        except stripe.SignatureVerificationError as exc:
            # The message names the problem (no header, no match, old timestamp), never the header or secret.
            logger.warning("stripe webhook refused: %s", exc.user_message or "invalid signature")
            raise InvalidWebhook("invalid Stripe-Signature: not a recent event signed by Stripe") from None
        except (ValueError, AttributeError, TypeError):
            # Signed but not a JSON object: json raises ValueError, stripe AttributeError for a JSON array.
            logger.warning("stripe webhook refused: body is not a JSON event object")
            raise InvalidWebhook("the body is not a Stripe event (a JSON object)") from None
        return dict(event.to_dict())
