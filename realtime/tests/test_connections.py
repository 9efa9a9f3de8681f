"""ConnectionStore: connection id -> user id in DynamoDB (moto), with TTL and no Scan."""

from __future__ import annotations

from typing import Any

import pytest
from chalice_realtime.connections import (
    MAX_CONNECTION_SECONDS,
    TTL_SLACK_SECONDS,
    Connection,
    ConnectionStore,
)
from chalice_realtime.testing.dynamodb import CountingDynamoDB
from fakes.env import TEST_ENV

TABLE = TEST_ENV["CONNECTIONS_TABLE"]
NOW_MS = 1_700_000_000_000


@pytest.fixture
def dynamodb(aws: dict[str, Any]) -> CountingDynamoDB:
    return CountingDynamoDB(aws["dynamodb"])


@pytest.fixture
def store(dynamodb: CountingDynamoDB) -> ConnectionStore:
    return ConnectionStore(TABLE, dynamodb)


def row(dynamodb: CountingDynamoDB, connection_id: str) -> dict[str, Any] | None:
    item = dynamodb.inner.get_item(TableName=TABLE, Key={"connection_id": {"S": connection_id}})
    return item.get("Item")


def test_a_connection_is_stored_with_an_expiry_past_the_two_hour_limit(
    store: ConnectionStore, dynamodb: CountingDynamoDB
) -> None:
    store.add(Connection("c1=", "alice", NOW_MS))
    assert row(dynamodb, "c1=") == {
        "connection_id": {"S": "c1="},
        "user_id": {"S": "alice"},
        "connected_at": {"N": str(NOW_MS)},
        "expires_at": {"N": str(NOW_MS // 1000 + MAX_CONNECTION_SECONDS + TTL_SLACK_SECONDS)},
    }
    assert dynamodb.calls == ["put_item"]


def test_a_users_connections_are_one_query_oldest_first_and_nobody_elses(
    store: ConnectionStore, dynamodb: CountingDynamoDB
) -> None:
    store.add(Connection("late", "alice", NOW_MS + 2))
    store.add(Connection("early", "alice", NOW_MS))
    store.add(Connection("bobs", "bob", NOW_MS + 1))
    dynamodb.clear()
    assert store.connection_ids_of("alice") == ["early", "late"]
    assert [c.connection_id for c in store.connections_of("alice")] == ["early", "late"]
    assert dynamodb.calls_on("by_user") == ["query", "query"]
    assert "scan" not in dynamodb.calls
    assert store.connection_ids_of("nobody") == []


def test_every_page_of_a_users_connections_is_read(aws: dict[str, Any]) -> None:
    small_pages = CountingDynamoDB(aws["dynamodb"], page_size=2)
    store = ConnectionStore(TABLE, small_pages)
    for n in range(5):
        store.add(Connection(f"c{n}", "alice", NOW_MS + n))
    small_pages.clear()
    assert store.connection_ids_of("alice") == [f"c{n}" for n in range(5)]
    assert small_pages.calls == ["query"] * 3


def test_confirm_rewrites_a_stored_row_and_refuses_a_deleted_one(
    store: ConnectionStore, dynamodb: CountingDynamoDB
) -> None:
    connection = Connection("c1=", "alice", NOW_MS)
    store.add(connection)
    assert store.confirm(connection) is True
    store.remove("c1=")
    assert store.confirm(connection) is False
    assert row(dynamodb, "c1=") is None  # not written back


def test_removing_a_row_already_gone_is_fine(store: ConnectionStore, dynamodb: CountingDynamoDB) -> None:
    store.remove("never-stored")
    store.add(Connection("c1=", "alice", NOW_MS))
    store.remove("c1=")
    store.remove("c1=")
    assert row(dynamodb, "c1=") is None


def test_many_rows_are_removed_25_per_batch(store: ConnectionStore, dynamodb: CountingDynamoDB) -> None:
    ids = [f"c{n}" for n in range(60)]
    for n, cid in enumerate(ids):
        store.add(Connection(cid, "alice", NOW_MS + n))
    store.add(Connection("kept", "alice", NOW_MS + 99))
    dynamodb.clear()
    store.remove_many(ids)
    assert dynamodb.calls == ["batch_write_item"] * 3
    assert store.connection_ids_of("alice") == ["kept"]
