"""Live WebSocket connections of each user, kept in DynamoDB.

Table: partition key `connection_id`; global secondary index `by_user`
(partition `user_id`, sort `connected_at`, keys only) so a user's connections are
one Query, oldest first. Every row carries `expires_at` (DynamoDB TTL), a little
past API Gateway's 2-hour connection limit, because `$disconnect` is best effort.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from botocore.exceptions import ClientError

from .aws import error_code

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodb.type_defs import WriteRequestUnionTypeDef

USER_INDEX = "by_user"
MAX_CONNECTION_SECONDS = 2 * 60 * 60
TTL_SLACK_SECONDS = 10 * 60
TTL_ATTRIBUTE = "expires_at"
# How long a row may belong to a connection whose `$connect` has not returned yet: API Gateway waits at
# most 29 s for a `$connect` integration. Until it returns, the Management API answers 410 for the
# connection, so a 410 for a row younger than this proves nothing and must not delete it.
IN_FLIGHT_MS = 30_000


class _Condition(TypedDict, total=False):
    ConditionExpression: str


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str
    connected_at: int  # epoch milliseconds


class ConnectionStore:
    """Maps connection id -> user id in one DynamoDB table.

    store = ConnectionStore(table_name, dynamodb_client)
    store.add(Connection("abc=", "uid-1", now_ms))
    store.connection_ids_of("uid-1")  # ['abc=']
    """

    def __init__(self, table_name: str, dynamodb: DynamoDBClient) -> None:
        self._table = table_name
        self._dynamodb = dynamodb

    def add(self, connection: Connection) -> None:
        """Store a connection (one PutItem); its row expires by TTL after the 2-hour limit."""
        self._put(connection)

    def confirm(self, connection: Connection) -> bool:
        """Write the connection's row again only if it is still stored; False if it was deleted meanwhile.

        One conditional PutItem: strongly consistent (the user index is not), and one of the
        writes the connection handlers may already make.
        """
        try:
            self._put(connection, ConditionExpression="attribute_exists(connection_id)")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _put(self, connection: Connection, **condition: Unpack[_Condition]) -> None:
        expires_at = connection.connected_at // 1000 + MAX_CONNECTION_SECONDS + TTL_SLACK_SECONDS
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "connection_id": {"S": connection.connection_id},
                "user_id": {"S": connection.user_id},
                "connected_at": {"N": str(connection.connected_at)},
                TTL_ATTRIBUTE: {"N": str(expires_at)},
            },
            **condition,
        )

    def get(self, connection_id: str) -> Connection | None:
        """The stored connection (one strongly consistent GetItem), or None if it is not stored."""
        item = self._dynamodb.get_item(
            TableName=self._table, Key={"connection_id": {"S": connection_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return Connection(item["connection_id"]["S"], item["user_id"]["S"], int(item["connected_at"]["N"]))

    def remove(self, connection_id: str) -> None:
        """Delete a connection's row (one DeleteItem); a row already gone is fine."""
        self._dynamodb.delete_item(TableName=self._table, Key={"connection_id": {"S": connection_id}})

    def remove_many(self, connection_ids: list[str]) -> None:
        """Delete several rows, 25 per BatchWriteItem, retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(connection_ids), 25):
            requests: Sequence[WriteRequestUnionTypeDef] = [
                {"DeleteRequest": {"Key": {"connection_id": {"S": cid}}}}
                for cid in connection_ids[start : start + 25]
            ]
            for attempt in range(5):
                response = self._dynamodb.batch_write_item(RequestItems={self._table: requests})
                requests = response.get("UnprocessedItems", {}).get(self._table, [])
                if not requests:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                # TTL still removes these rows, and the next notify retries the delete on 410.
                raise RuntimeError(f"{len(requests)} connection rows were left undeleted")

    def connections_of(self, user_id: str) -> Iterator[Connection]:
        """The user's connections, oldest first: one Query per 1 MB page, never a Scan."""
        for item in self._items_of(user_id):
            yield Connection(
                connection_id=item["connection_id"]["S"],
                user_id=item["user_id"]["S"],
                connected_at=int(item["connected_at"]["N"]),
            )

    def connection_times_of(self, user_id: str) -> list[tuple[str, int]]:
        """`(connection id, connected_at)` of the user's connections, oldest first: what a notify reads.

        `connected_at` tells the notifier whether a 410 may come from a connect still in flight
        (`IN_FLIGHT_MS`); it is the index's sort key, so reading it costs no read units.
        """
        return [
            (item["connection_id"]["S"], int(item["connected_at"]["N"]))
            for item in self._items_of(user_id, "connection_id, connected_at")
        ]

    def connection_page(
        self, user_id: str, limit: int, start: Mapping[str, Any] | None = None
    ) -> tuple[list[tuple[str, int]], dict[str, Any] | None]:
        """Up to `limit` of the user's `(connection id, connected_at)`, oldest first, from `start` (a
        cursor this method returned), and the cursor of the rest (None: no more). One Query.

        rows, rest = store.connection_page("uid-1", 5000)
        """
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": USER_INDEX,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ProjectionExpression": "connection_id, connected_at",
            "Limit": limit,
        }
        if start:
            query["ExclusiveStartKey"] = dict(start)
        page = self._dynamodb.query(**query)
        rows = [
            (item["connection_id"]["S"], int(item["connected_at"]["N"])) for item in page.get("Items", [])
        ]
        return rows, page.get("LastEvaluatedKey") or None

    def connection_ids_of(self, user_id: str) -> list[str]:
        """Just the ids of the user's connections, oldest first.

        Only the id is read back: a notify's Query pages carry a third of the attributes for botocore
        to parse (the read units are the same).
        """
        return [item["connection_id"]["S"] for item in self._items_of(user_id, "connection_id")]

    def _items_of(self, user_id: str, projection: str | None = None) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": USER_INDEX,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
        }
        if projection:
            query["ProjectionExpression"] = projection
        while True:
            page = self._dynamodb.query(**query)
            yield from page.get("Items", [])
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                return
            query["ExclusiveStartKey"] = last_key
