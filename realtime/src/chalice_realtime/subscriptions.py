"""Topic subscriptions of live connections, kept in DynamoDB (`TOPICS_TABLE`).

Keys (string `pk` / `sk`):

- a subscription: `pk = topic#<topic>`, `sk = sub#<user id>#<connection id>`, with the
  connection's `connection_id`, `user_id`, `connected_at` and `expires_at` (the connection row's
  own TTL, so a subscription never outlives its connection's row). A topic's subscribers are one
  Query per page, a user's subscriptions to a topic one Query on the `sub#<user id>#` prefix.
- global secondary index `by_connection` (partition `connection_id`, sort `pk`, keys only): a
  connection's subscriptions, read at `$disconnect` and on unsubscribe without a Scan. Only
  subscription rows carry `connection_id`, so the index holds nothing else.
- a topic's presence slot: `pk = topic#<topic>`, `sk = presence`, attribute `slot` (the last
  second a `presence-updated` frame was claimed for), `expires_at` a minute on.
- a subscribe-rate counter: `pk = subscribe-rate#<user id>#<window>`, `sk = rate`, attribute `n`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .aws import error_code
from .connections import MAX_CONNECTION_SECONDS, TTL_SLACK_SECONDS

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodb.type_defs import WriteRequestUnionTypeDef

CONNECTION_INDEX = "by_connection"
TOPIC_PREFIX = "topic#"
SUBSCRIPTION_PREFIX = "sub#"
PRESENCE_SORT_KEY = "presence"
# Subscribers read per Query: a page's connection ids are posted before the next page is read.
PAGE_SIZE = 1000
PRESENCE_SLOT_TTL_SECONDS = 60


@dataclass(frozen=True)
class Subscription:
    topic: str
    user_id: str
    connection_id: str
    connected_at: int  # epoch milliseconds, the connection's (for the 410 in-flight rule)


def expires_at(connected_at_ms: int) -> int:
    """The epoch second a row of a connection made at `connected_at_ms` expires: its connection row's."""
    return connected_at_ms // 1000 + MAX_CONNECTION_SECONDS + TTL_SLACK_SECONDS


class SubscriptionStore:
    """Which connections are subscribed to which topics.

    store = SubscriptionStore(table_name, dynamodb_client)
    store.add(Subscription("room:42", "uid-1", "abc=", connected_at_ms))
    next(store.subscriber_pages("room:42"))  # [Subscription(...)]
    """

    def __init__(self, table_name: str, dynamodb: DynamoDBClient, *, page_size: int = PAGE_SIZE) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._page_size = page_size

    @property
    def page_size(self) -> int:
        """Subscriptions read per Query page."""
        return self._page_size

    def add(self, subscription: Subscription) -> None:
        """Store a subscription (one PutItem; storing it again is harmless)."""
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": TOPIC_PREFIX + subscription.topic},
                "sk": {"S": _sort_key(subscription.user_id, subscription.connection_id)},
                "connection_id": {"S": subscription.connection_id},
                "user_id": {"S": subscription.user_id},
                "connected_at": {"N": str(subscription.connected_at)},
                "expires_at": {"N": str(expires_at(subscription.connected_at))},
            },
        )

    def remove(self, subscriptions: Sequence[Subscription]) -> None:
        """Delete subscriptions, 25 per BatchWriteItem; what DynamoDB leaves unprocessed is tried once more,
        then left to the TTL and the next notify's 410."""
        for start in range(0, len(subscriptions), 25):
            requests: Sequence[WriteRequestUnionTypeDef] = [
                {"DeleteRequest": {"Key": _key(s.topic, s.user_id, s.connection_id)}}
                for s in subscriptions[start : start + 25]
            ]
            for _ in range(2):
                response = self._dynamodb.batch_write_item(RequestItems={self._table: requests})
                requests = response.get("UnprocessedItems", {}).get(self._table, [])
                if not requests:
                    break

    def topics_of_connection(self, connection_id: str) -> list[tuple[str, str]]:
        """`(topic, user id)` of each subscription of a connection: one Query on `by_connection`."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": CONNECTION_INDEX,
            "KeyConditionExpression": "connection_id = :c",
            "ExpressionAttributeValues": {":c": {"S": connection_id}},
        }
        found: list[tuple[str, str]] = []
        for item in _pages(self._dynamodb, query):
            user_id = item["sk"]["S"].removeprefix(SUBSCRIPTION_PREFIX).split("#", 1)[0]
            found.append((item["pk"]["S"].removeprefix(TOPIC_PREFIX), user_id))
        return found

    def subscriptions_of(self, topic: str, user_id: str) -> list[Subscription]:
        """The user's subscriptions to `topic` (strongly consistent: what was just written counts)."""
        query = self._topic_query(topic, SUBSCRIPTION_PREFIX + user_id + "#")
        query["ConsistentRead"] = True
        return [_subscription(topic, item) for item in _pages(self._dynamodb, query)]

    def has_subscription(self, topic: str, user_id: str) -> bool:
        """Whether the user has any subscription to `topic` (one consistent Query of at most one item)."""
        query = self._topic_query(topic, SUBSCRIPTION_PREFIX + user_id + "#")
        query.update(ConsistentRead=True, Limit=1, ProjectionExpression="sk")
        return bool(self._dynamodb.query(**query).get("Items"))

    def subscriber_pages(self, topic: str) -> Iterator[list[Subscription]]:
        """The topic's subscriptions, one list per Query page of at most `page_size`: never all at once."""
        cursor: dict[str, Any] | None = None
        while True:
            page, cursor = self.subscriber_page(topic, self._page_size, cursor)
            if page:
                yield page
            if cursor is None:
                return

    def subscriber_page(
        self, topic: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> tuple[list[Subscription], dict[str, Any] | None]:
        """One Query page of at most `limit` subscriptions of `topic` after `cursor` (None: from the first),
        and the cursor of the next page (None at the end). The cursor is DynamoDB's `LastEvaluatedKey`,
        plain JSON, so a fan-out shard can carry it: `page, cursor = store.subscriber_page("room:42", 500)`.
        """
        query = self._topic_query(topic, SUBSCRIPTION_PREFIX)
        query.update(Limit=limit, ProjectionExpression="pk, sk, connection_id, connected_at")
        if cursor:
            query["ExclusiveStartKey"] = dict(cursor)
        page = self._dynamodb.query(**query)
        subscriptions = [_subscription(topic, item) for item in page.get("Items", [])]
        return subscriptions, dict(page["LastEvaluatedKey"]) if page.get("LastEvaluatedKey") else None

    def members(self, topic: str, now_s: float) -> Iterator[str]:
        """User ids with a subscription to `topic` whose row has not expired at `now_s`, each once, sorted.

        Rows past `expires_at` are skipped here: DynamoDB's TTL may take a while to delete them.
        """
        query = self._topic_query(topic, SUBSCRIPTION_PREFIX)
        query.update(
            ProjectionExpression="user_id",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues={**query["ExpressionAttributeValues"], ":now": {"N": str(int(now_s))}},
        )
        previous = None
        for item in _pages(self._dynamodb, query):
            user_id = item["user_id"]["S"]
            if user_id != previous:  # rows are sorted by user id: duplicates are adjacent
                yield user_id
                previous = user_id

    def claim_presence_slot(self, topic: str, slot: int) -> bool:
        """Claim second `slot` for the topic's next `presence-updated` frame; False if it or a later one
        was claimed already (one conditional UpdateItem)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"pk": {"S": TOPIC_PREFIX + topic}, "sk": {"S": PRESENCE_SORT_KEY}},
                UpdateExpression="SET #slot = :slot, expires_at = :expires",
                ConditionExpression="attribute_not_exists(#slot) OR #slot < :slot",
                ExpressionAttributeNames={"#slot": "slot"},
                ExpressionAttributeValues={
                    ":slot": {"N": str(slot)},
                    ":expires": {"N": str(slot + PRESENCE_SLOT_TTL_SECONDS)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def count_subscribe(self, user_id: str, limit: int, window_seconds: int, now_s: float) -> bool:
        """Count one subscribe of the user in the current window; False (nothing counted) past `limit`."""
        window = int(now_s // window_seconds)
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"subscribe-rate#{user_id}#{window}"}, "sk": {"S": "rate"}},
                UpdateExpression="ADD #n :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str((window + 1) * window_seconds + 60)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _topic_query(self, topic: str, prefix: str) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": TOPIC_PREFIX + topic}, ":prefix": {"S": prefix}},
        }


def _sort_key(user_id: str, connection_id: str) -> str:
    return f"{SUBSCRIPTION_PREFIX}{user_id}#{connection_id}"


def _key(topic: str, user_id: str, connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": TOPIC_PREFIX + topic}, "sk": {"S": _sort_key(user_id, connection_id)}}


def _subscription(topic: str, item: dict[str, Any]) -> Subscription:
    user_id = item["sk"]["S"].removeprefix(SUBSCRIPTION_PREFIX).split("#", 1)[0]
    return Subscription(topic, user_id, item["connection_id"]["S"], int(item["connected_at"]["N"]))


def _pages(dynamodb: DynamoDBClient, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        page = dynamodb.query(**query)
        yield from page.get("Items", [])
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return
        query["ExclusiveStartKey"] = last_key
