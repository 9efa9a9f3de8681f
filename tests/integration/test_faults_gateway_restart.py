"""The WebSocket gateway crashes (kill -9) with clients connected: they reconnect, and notify finds its way.

A crash delivers no `$disconnect`, so the old rows stay behind: they carry the TTL attribute
(DynamoDB deletes them a little after API Gateway's 2-hour limit at the latest) and the first
notify that meets them gets 410 from the new gateway and deletes them. The frame goes to the
new connections only, once each, and the report counts both.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest
import websockets
from chalice_realtime.connections import MAX_CONNECTION_SECONDS, TTL_ATTRIBUTE
from chalice_realtime.notifier import DeliveryReport

from chalicelib.services import Services
from tests.integration.faults_support import (
    FRAME_WAIT,
    NOTIFY_BOUND_SECONDS,
    Client,
    connect,
    connection_rows,
    live_ids,
    notifier_later,
    open_clients,
    shipped_services,
    wait_for_frames,
)
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

RECONNECT_WITHIN = 60.0


@pytest.fixture(scope="module")
def shipped(local_stack: LocalStack) -> Iterator[Services]:
    with shipped_services(local_stack) as built:
        yield built


async def reconnect(stack: LocalStack, client: Client, token: str) -> Client:
    """What the browser library does on a dropped socket: retry with full-jitter backoff until admitted."""
    deadline = time.monotonic() + RECONNECT_WITHIN
    attempt = 0
    while True:
        try:
            return Client(client.user_id, await connect(stack, token))
        except (OSError, websockets.exceptions.InvalidHandshake, TimeoutError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))
        attempt += 1


def test_after_a_gateway_crash_clients_reconnect_and_notify_reaches_only_the_new_connections(
    local_stack: LocalStack, shipped: Services
) -> None:
    (ann, ann_token), (ben, ben_token) = local_stack.sign_up(), local_stack.sign_up()
    tokens = {ann: ann_token, ben: ben_token}

    async def scenario() -> None:
        old = await open_clients(local_stack, ann, ann_token, 2) + await open_clients(
            local_stack, ben, ben_token, 1
        )
        old_rows = {uid: connection_rows(local_stack, uid) for uid in tokens}
        old_ids = {row["connection_id"]["S"] for rows in old_rows.values() for row in rows}
        assert len(old_ids) == 3

        await asyncio.to_thread(local_stack.restart_gateway)
        assert [await client.closed() for client in old] == [1006] * 3  # dropped, no close frame

        new = [await reconnect(local_stack, client, tokens[client.user_id]) for client in old]
        new_ids = live_ids(local_stack) & {
            row["connection_id"]["S"] for uid in tokens for row in connection_rows(local_stack, uid)
        }
        assert len(new_ids) == 3 and not new_ids & old_ids

        # No $disconnect came for the old connections: their rows remain, each with its TTL.
        stale = [row for uid in tokens for row in connection_rows(local_stack, uid)]
        stale = [row for row in stale if row["connection_id"]["S"] in old_ids]
        assert len(stale) == 3
        for row in stale:
            lifetime = int(row[TTL_ATTRIBUTE]["N"]) - int(row["connected_at"]["N"]) // 1000
            assert MAX_CONNECTION_SECONDS < lifetime <= MAX_CONNECTION_SECONDS + 15 * 60

        started = time.monotonic()
        # Half a minute on: rows of connections this young could still be connecting, and would be kept.
        later = notifier_later(shipped)
        first = await asyncio.to_thread(later.notify_users, [ann, ben], "after-the-crash")
        assert time.monotonic() - started < NOTIFY_BOUND_SECONDS
        assert first == DeliveryReport(delivered=3, gone=3, failed=0)
        remaining = {row["connection_id"]["S"] for uid in tokens for row in connection_rows(local_stack, uid)}
        assert remaining == new_ids  # every old row deleted on its first 410

        second = await asyncio.to_thread(shipped.notifier.notify_users, [ann, ben], "and-again")
        assert second == DeliveryReport(delivered=3, gone=0, failed=0)
        await wait_for_frames(new, [2, 2, 2], FRAME_WAIT)
        assert [c.frames for c in new] == [[{"event": "after-the-crash"}, {"event": "and-again"}]] * 3
        assert [c.frames for c in old] == [[]] * 3
        for client in new:
            await client.close()

    asyncio.run(scenario())


def test_the_connections_table_expires_rows_by_the_ttl_attribute(local_stack: LocalStack) -> None:
    """The attribute is only useful if the table's TTL reads it (set from infra/resources.json)."""
    described = local_stack.aws_client("dynamodb").describe_time_to_live(
        TableName=local_stack.environment["CONNECTIONS_TABLE"]
    )["TimeToLiveDescription"]
    assert described == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
