"""The connections table in a test's DynamoDB (moto, DynamoDB Local), shaped as the deployed one.

dynamodb = boto3.client("dynamodb", region_name="us-east-1")   # inside moto's mock_aws()
create_connections_table(dynamodb, "realtime-connections")
create_topics_table(dynamodb, "realtime-topics")             # for topic subscriptions
add_connections(dynamodb, "realtime-connections", "uid-1", "c1", "c2")
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from ..clock import epoch_ms
from ..connections import Connection, ConnectionStore

_CONNECTED_AT = itertools.count()


def create_connections_table(dynamodb: Any, table: str) -> None:
    """Create `table` as the core expects it: keyed by connection id, the `by_user` index, TTL on
    `expires_at`; returns once it is active."""
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "connection_id", "AttributeType": "S"},
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "connected_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_user",
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "connected_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True}
    )


def create_topics_table(dynamodb: Any, table: str) -> None:
    """Create `table` as the core's topic subscriptions expect it (`TOPICS_TABLE`): string `pk` / `sk`, the
    `by_connection` index, TTL on `expires_at`; returns once it is active."""
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "connection_id", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_connection",
                "KeySchema": [
                    {"AttributeName": "connection_id", "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True}
    )


def add_connections(dynamodb: Any, table: str, user_id: str, *connection_ids: str) -> None:
    """Store a live connection of `user_id` for each id, as `$connect` would have (newest last), so a
    test can notify a user without opening sockets."""
    store = ConnectionStore(table, dynamodb)
    for connection_id in connection_ids:
        # Distinct, increasing times: the store orders a user's connections by when they connected.
        store.add(Connection(connection_id, user_id, epoch_ms(time.time()) + next(_CONNECTED_AT)))
