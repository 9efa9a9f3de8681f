"""No deaf sockets over real sockets: parallel connects of one user race a stream of notifications to them.

On the local stack, as on AWS, the gateway answers 410 for a connection until its `$connect` returned,
so notifications flowing while a user connects meet 410s for rows just stored. Those rows must stay:
after the race every open socket gets the next frame, and every connection the gateway holds has a
row. Every interleaving of the steps, one by one: `realtime/tests/test_faults_connect_race.py`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from chalicelib.services import Services
from tests.integration.faults_support import Client, connect, live_ids, shipped_services, wait_for_frames
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

ROUNDS = 4
PARALLEL_CONNECTS = 8  # under the stack's cap of 10: none is refused or evicted


@pytest.fixture(scope="module")
def shipped(local_stack: LocalStack) -> Iterator[Services]:
    with shipped_services(local_stack) as built:
        yield built


class NotificationStream:
    """Notifies `user_id` back to back on a thread until stopped; counts the 410s it met."""

    def __init__(self, services: Services, user_id: str) -> None:
        self._services = services
        self._user_id = user_id
        self._stop = threading.Event()
        self.sent = 0
        self.gone = 0
        self._thread = threading.Thread(target=self._run, name="notification-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            report = self._services.notifier.notify(self._user_id, "race-tick")
            self.sent += 1
            self.gone += report.gone

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def stored_ids(stack: LocalStack) -> set[str]:
    table = stack.environment["CONNECTIONS_TABLE"]
    items = stack.aws_client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["connection_id"]["S"] for item in items}


def test_parallel_connects_racing_notifications_leave_no_deaf_socket(
    local_stack: LocalStack, shipped: Services
) -> None:
    user, token = local_stack.sign_up()
    gone_met = 0

    async def one_round() -> None:
        nonlocal gone_met
        stream = NotificationStream(shipped, user)
        try:
            sockets = await asyncio.gather(*(connect(local_stack, token) for _ in range(PARALLEL_CONNECTS)))
        finally:
            await asyncio.to_thread(stream.stop)
        gone_met += stream.gone
        clients = [Client(user, socket) for socket in sockets]
        open_now = await asyncio.to_thread(live_ids, local_stack)
        rows = await asyncio.to_thread(stored_ids, local_stack)
        assert open_now <= rows, f"open on the gateway with no row: {sorted(open_now - rows)}"
        # Every open socket hears the next frame (behind any of the stream's still on their way).
        before = [len(client.frames) for client in clients]
        report = await asyncio.to_thread(shipped.notifier.notify, user, "after-the-race")
        await wait_for_frames(clients, [n + 1 for n in before])
        after = {"event": "after-the-race"}
        assert [client.frames.count(after) for client in clients] == [1] * len(clients)
        assert [client.frames[-1] for client in clients] == [after] * len(clients)
        assert report.delivered == PARALLEL_CONNECTS
        for client in clients:
            await client.close()

    async def scenario() -> None:
        for _ in range(ROUNDS):
            await one_round()

    asyncio.run(scenario())
    # The race happened: notifications met connections whose $connect had not returned yet.
    assert gone_met > 0
