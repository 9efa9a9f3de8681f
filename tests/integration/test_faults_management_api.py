"""Management API faults over real sockets: 410, 429 (with and without Retry-After), 5xx, dropped TCP.

The local stack's gateway injects the faults (`PUT /_faults`, a `chalice_realtime.testing.faults.FaultPlan`);
real `websockets` clients count every frame they receive. The notifier under test is the one
the app ships: `Services(settings).realtime.transport` built from settings is the libcurl transport
(`chalice_realtime.transports.curl.CurlTransport`), signed with SigV4, retrying with full jitter.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice_realtime.connections import Connection
from chalice_realtime.notifier import DeliveryReport

from chalicelib.services import Services
from tests.integration.faults_support import (
    NOTIFY_BOUND_SECONDS,
    clear_faults,
    connection_ids,
    faults_applied,
    notifier_later,
    open_clients,
    set_faults,
    shipped_services,
    wait_for_frames,
)
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

# What the notify scenario expects, counted by `python -m tests.figures` into docs/reliability.md.
# Faults the gateway applies per round: 1 + 2 + 2 + 2 + 5 (every attempt of a[4]) + 1 (b[0], first
# round only) + 1 + 2.
FAULTS_PER_ROUND = (16, 15, 15)
# Frames each of the 10 sockets gets over the three rounds: alice's 4, bob's 2 and carol's 2 get every
# round's frame; a[4] (failing for good) and b[0] (410 although open) get none.
FRAMES_PER_SOCKET = (3, 3, 3, 3, 0, 0, 3, 3, 3, 3)


@pytest.fixture(scope="module")
def shipped(local_stack: LocalStack) -> Iterator[Services]:
    with shipped_services(local_stack) as built:
        yield built


@pytest.fixture(autouse=True)
def no_faults_after(local_stack: LocalStack) -> Iterator[None]:
    yield
    clear_faults(local_stack)


def test_every_live_connection_gets_each_frame_exactly_once_through_a_mix_of_faults(
    local_stack: LocalStack, shipped: Services
) -> None:
    users = {name: local_stack.sign_up() for name in ("alice", "bob", "carol")}
    uid = {name: user[0] for name, user in users.items()}
    store = shipped.realtime.connections

    async def scenario() -> dict[str, Any]:
        alice = await open_clients(local_stack, uid["alice"], users["alice"][1], 5)
        bob = await open_clients(local_stack, uid["bob"], users["bob"][1], 3)
        carol = await open_clients(local_stack, uid["carol"], users["carol"][1], 2)
        clients = alice + bob + carol
        ids = {name: connection_ids(local_stack, uid[name]) for name in uid}
        a, b = ids["alice"], ids["bob"]
        # Rows whose sockets are long gone ($disconnect lost): the gateway answers them 410 by itself.
        # The notifies run as half a minute on (`notifier_later`), so the 410 for b[0], a young row,
        # deletes it too.
        notifier = notifier_later(shipped)
        now_ms = int(time.time() * 1000)
        stale = [f"Stale{uuid.uuid4().hex[:10]}=" for _ in range(3)]
        for connection_id, owner in zip(stale, (uid["alice"], uid["alice"], uid["bob"]), strict=True):
            store.add(Connection(connection_id, owner, now_ms))

        def post(connection_id: str, **fault: Any) -> dict[str, Any]:
            return {"connection_id": connection_id, "operations": ["post"], **fault}

        plan = [
            post(a[0], status=429, retry_after=1, times=1),  # throttled, asked to wait a second
            post(a[1], status=429, times=2),  # throttled without Retry-After: jittered backoff
            post(a[2], status=500, times=2),
            post(a[3], drop=True, times=2),  # TCP connection reset before any answer
            post(a[4], status=500),  # failing for good: reported, row kept
            post(b[0], status=410),  # gone although its socket is open (AWS is closing it)
            post(b[1], status=503, times=1),
            post(b[2], drop=True, times=1),
            post(b[2], status=429, times=1),
        ]
        reports: list[DeliveryReport] = []
        durations: list[float] = []
        for round_number, faults in enumerate(FAULTS_PER_ROUND, start=1):
            set_faults(local_stack, plan)  # re-armed: every round meets every fault again
            started = time.monotonic()
            if round_number == 2:
                # One user alone takes the notifier's single-user path; bob and carol follow in one call.
                report = await asyncio.to_thread(notifier.notify, uid["alice"], "fault-round-2")
                report += await asyncio.to_thread(
                    notifier.notify_users, [uid["bob"], uid["carol"]], "fault-round-2"
                )
            else:
                report = await asyncio.to_thread(
                    notifier.notify_users, list(uid.values()), f"fault-round-{round_number}"
                )
            durations.append(time.monotonic() - started)
            reports.append(report)
            assert faults_applied(local_stack) == faults, f"round {round_number}"
        await wait_for_frames(clients, list(FRAMES_PER_SOCKET))
        frames = [c.frames for c in clients]
        rows = {name: connection_ids(local_stack, uid[name]) for name in uid}
        for client in clients:
            await client.close()
        return {"reports": reports, "durations": durations, "frames": frames, "rows": rows, "ids": ids}

    result = asyncio.run(scenario())
    rounds = [[{"event": f"fault-round-{n}"} for n in (1, 2, 3)]]
    a, b, c = result["ids"]["alice"], result["ids"]["bob"], result["ids"]["carol"]
    assert result["frames"] == rounds * 4 + [[], []] + rounds * 2 + rounds * 2
    assert result["reports"] == [
        DeliveryReport(delivered=8, gone=4, failed=1),  # gone: 3 stale rows and b[0]
        DeliveryReport(delivered=8, gone=0, failed=1),
        DeliveryReport(delivered=8, gone=0, failed=1),
    ]
    # Every 410 row was deleted; the failing connection's row stays (it may recover).
    assert result["rows"] == {"alice": a, "bob": b[1:], "carol": c}
    assert max(result["durations"]) < NOTIFY_BOUND_SECONDS, result["durations"]


def test_a_chat_message_reaches_every_socket_once_through_faults_in_the_rest_process(
    local_stack: LocalStack,
) -> None:
    """The REST process notifies with its own shipped transport, built from the stack's settings."""
    sender, sender_token = local_stack.sign_up()
    recipient, recipient_token = local_stack.sign_up()

    async def scenario() -> tuple[list[list[dict[str, Any]]], int, float]:
        receiving = await open_clients(local_stack, recipient, recipient_token, 2)
        sending = await open_clients(local_stack, sender, sender_token, 1)
        r = connection_ids(local_stack, recipient)
        s = connection_ids(local_stack, sender)
        set_faults(
            local_stack,
            [
                {"connection_id": r[0], "operations": ["post"], "status": 429, "retry_after": 1, "times": 1},
                {"connection_id": r[1], "operations": ["post"], "drop": True, "times": 1},
                {"connection_id": r[1], "operations": ["post"], "status": 500, "times": 1},
                {"connection_id": s[0], "operations": ["post"], "status": 502, "times": 2},
            ],
        )
        started = time.monotonic()
        sent = await asyncio.to_thread(
            requests.post,
            local_stack.rest_url + "/messages",
            json={"to": recipient, "text": "through the faults"},
            headers={"Authorization": f"Bearer {sender_token}"},
            timeout=60,
        )
        took = time.monotonic() - started
        assert sent.status_code == 201, sent.text
        clients = receiving + sending
        await wait_for_frames(clients, [1, 1, 1])
        applied = faults_applied(local_stack)
        for client in clients:
            await client.close()
        return [client.frames for client in clients], applied, took

    frames, applied, took = asyncio.run(scenario())
    assert frames == [[{"event": "chat-messages-updated"}]] * 3
    assert applied == 5
    assert took < NOTIFY_BOUND_SECONDS
