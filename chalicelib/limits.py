"""Per-user request rates, counted in DynamoDB so that every Lambda instance shares one count.

Fixed windows: a request of `user` to `action` at time t falls in window `t // seconds`, and
its counter is the item `pk = <action>#<user>#<window>` of `RATE_LIMITS_TABLE`. Counting a
request is ONE conditional UpdateItem (`ADD n 1` only while `n < limit`): atomic, whatever
the number of instances, and a refused request writes nothing. Every counter carries
`expires_at` (DynamoDB TTL) a little after its window ends, so the table holds only the
current windows.

    rates = RequestRates("rate-limits", dynamodb, clock, {"submit-job": Rate(10, 60)})
    rates.count("uid-1", "submit-job")   # TooManyRequests(retry_after=...) for the 11th in a minute
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import aws
from chalicelib.clock import Clock
from chalicelib.errors import TemporarilyUnavailable, TooManyRequests

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

# A counter outlives its window by this much before DynamoDB's TTL may delete it.
TTL_SLACK_SECONDS = 60
# The limited actions: `POST /jobs` and `POST /messages`.
SUBMIT_JOB = "submit-job"
SEND_MESSAGE = "send-message"
# `POST /rooms` and `POST /rooms/{id}/members` share one rate; `POST /rooms/{id}/messages` has its own.
CHANGE_ROOMS = "change-rooms"
SEND_ROOM_MESSAGE = "send-room-message"
# What a caller is told to wait when the counters cannot be read: botocore has retried already.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


class RatesUnavailable(TemporarilyUnavailable):
    """The request could not be counted (the rate-limits table failed): refused, never let through."""


@dataclass(frozen=True)
class Rate:
    """At most `requests` per fixed window of `seconds`.

    Rate.parse("10/60")  # Rate(requests=10, seconds=60)
    """

    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"<requests>/<seconds>"`, both positive integers; `ValueError` otherwise."""
        match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
        if match is None or int(match[1]) < 1 or int(match[2]) < 1:
            raise ValueError(f"expected <requests>/<seconds> with both at least 1, like 10/60, not {text!r}")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.requests} per {self.seconds} s"


class RequestRates:
    """Counts each user's requests per action against that action's `Rate`.

    rates = RequestRates(table_name, dynamodb_client, clock, {"send-message": Rate(20, 10)})
    rates.count("uid-1", "send-message")
    """

    def __init__(
        self, table_name: str, dynamodb: DynamoDBClient, clock: Clock, rates: Mapping[str, Rate]
    ) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._clock = clock
        self._rates = dict(rates)

    def count(self, user_id: str, action: str) -> None:
        """Count one request of `user_id` to `action`; `TooManyRequests` (nothing counted) past its rate."""
        rate = self._rates[action]
        now = self._clock.now()
        window = int(now // rate.seconds)
        window_end = (window + 1) * rate.seconds
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"{action}#{user_id}#{window}"}},
                UpdateExpression="ADD #n :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(rate.requests)},
                    ":expires": {"N": str(window_end + TTL_SLACK_SECONDS)},
                },
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise self._unavailable(action, exc) from exc
            raise TooManyRequests(
                f"too many requests: at most {rate} for this action; retry after the window ends",
                retry_after=math.ceil(window_end - now),
            ) from None
        except BotoCoreError as exc:  # unreachable, timed out
            raise self._unavailable(action, exc) from exc

    def _unavailable(self, action: str, exc: Exception) -> RatesUnavailable:
        logger.error(
            "cannot count a request: %s: %s", type(exc).__name__, str(exc)[:200], extra={"action": action}
        )
        return RatesUnavailable(
            "requests cannot be counted right now; please try again shortly",
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
