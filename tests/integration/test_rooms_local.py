"""Rooms and topics over real sockets: the local stack's WebSocket gateway, emulator tokens, REST.

A member's subscription is acknowledged and hears the room; a stranger's is refused and hears nothing;
an unsubscribed or removed member hears nothing more; closing the page leaves the presence list;
garbage control messages leave the socket open.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import requests
import websockets
from websockets.asyncio.client import ClientConnection

from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

FRAME_WAIT = 10.0
QUIET = 1.5  # how long a socket that must hear nothing is listened to, after the others heard the frame


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def connect(stack: LocalStack, token: str) -> Any:
    return websockets.connect(stack.ws_url, subprotocols=["bearer", token], open_timeout=10)  # type: ignore[list-item]


async def next_frame(ws: ClientConnection, wait: float = FRAME_WAIT) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), wait)))


async def frame_of(ws: ClientConnection, event: str, wait: float = FRAME_WAIT) -> dict[str, Any]:
    """The next frame with key `event` (others, such as presence-updated, are passed over)."""
    deadline = time.monotonic() + wait
    while True:
        frame = await next_frame(ws, max(0.1, deadline - time.monotonic()))
        if frame["event"] == event:
            return frame


async def heard(ws: ClientConnection, wait: float = QUIET) -> list[dict[str, Any]]:
    """Every frame the socket receives within `wait` seconds."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(await next_frame(ws, left))
        except TimeoutError:
            break
    return frames


async def subscribe(ws: ClientConnection, topic: str) -> dict[str, Any]:
    """Send a subscribe and return its answer (`subscribed` or `subscribe-refused`)."""
    await ws.send(json.dumps({"action": "subscribe", "topic": topic}))
    deadline = time.monotonic() + FRAME_WAIT
    while True:
        frame = await next_frame(ws, max(0.1, deadline - time.monotonic()))
        if frame["event"] in ("subscribed", "subscribe-refused") and frame.get("topic") == topic:
            return frame


def room_of(stack: LocalStack, owner_token: str, *member_ids: str) -> str:
    created = requests.post(
        stack.rest_url + "/rooms", json={"name": "standup"}, headers=auth(owner_token), timeout=10
    )
    assert created.status_code == 201, created.text
    room_id = str(created.json()["room_id"])
    for uid in member_ids:
        added = requests.post(
            f"{stack.rest_url}/rooms/{room_id}/members",
            json={"user_id": uid},
            headers=auth(owner_token),
            timeout=10,
        )
        assert added.status_code == 200, added.text
    return room_id


def post(stack: LocalStack, token: str, room_id: str, text: str = "hello") -> None:
    sent = requests.post(
        f"{stack.rest_url}/rooms/{room_id}/messages", json={"text": text}, headers=auth(token), timeout=10
    )
    assert sent.status_code == 201, sent.text


def presence(stack: LocalStack, token: str, room_id: str) -> list[str]:
    answer = requests.get(f"{stack.rest_url}/rooms/{room_id}/presence", headers=auth(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["users"])


MESSAGES = "room-messages-updated"


def test_a_member_is_acknowledged_and_hears_the_room_a_stranger_is_refused_and_hears_nothing(
    local_stack: LocalStack,
) -> None:
    _, alice = local_stack.sign_up()
    bob_id, bob = local_stack.sign_up()
    _, mallory = local_stack.sign_up()
    room_id = room_of(local_stack, alice, bob_id)
    topic = f"room:{room_id}"

    async def scenario() -> None:
        async with connect(local_stack, bob) as bob_ws, connect(local_stack, mallory) as mallory_ws:
            assert await subscribe(bob_ws, topic) == {"event": "subscribed", "topic": topic}
            assert await subscribe(mallory_ws, topic) == {"event": "subscribe-refused", "topic": topic}
            post(local_stack, alice, room_id)
            assert await frame_of(bob_ws, MESSAGES) == {"event": MESSAGES, "topic": topic}
            assert await heard(mallory_ws) == []

    asyncio.run(scenario())


def test_an_unsubscribed_member_and_a_removed_member_hear_nothing_more(local_stack: LocalStack) -> None:
    _, alice = local_stack.sign_up()
    bob_id, bob = local_stack.sign_up()
    carol_id, carol = local_stack.sign_up()
    room_id = room_of(local_stack, alice, bob_id, carol_id)
    topic = f"room:{room_id}"

    async def scenario() -> None:
        async with (
            connect(local_stack, alice) as alice_ws,
            connect(local_stack, bob) as bob_ws,
            connect(local_stack, carol) as carol_ws,
        ):
            for ws in (alice_ws, bob_ws, carol_ws):
                assert (await subscribe(ws, topic))["event"] == "subscribed"
            await bob_ws.send(json.dumps({"action": "unsubscribe", "topic": topic}))
            assert await frame_of(bob_ws, "unsubscribed") == {"event": "unsubscribed", "topic": topic}
            removed = requests.delete(
                f"{local_stack.rest_url}/rooms/{room_id}/members/{carol_id}", headers=auth(alice), timeout=10
            )
            assert removed.status_code == 200, removed.text
            assert await frame_of(carol_ws, "unsubscribed") == {"event": "unsubscribed", "topic": topic}

            post(local_stack, alice, room_id)
            assert await frame_of(alice_ws, MESSAGES) == {"event": MESSAGES, "topic": topic}
            assert MESSAGES not in [frame["event"] for frame in await heard(bob_ws)]
            assert MESSAGES not in [frame["event"] for frame in await heard(carol_ws)]
            # Carol's browser re-subscribing (a reconnect) is refused: she is no member any more.
            assert (await subscribe(carol_ws, topic))["event"] == "subscribe-refused"

    asyncio.run(scenario())


def test_a_member_who_closes_the_page_leaves_the_presence_list(local_stack: LocalStack) -> None:
    alice_id, alice = local_stack.sign_up()
    bob_id, bob = local_stack.sign_up()
    room_id = room_of(local_stack, alice, bob_id)
    topic = f"room:{room_id}"

    async def scenario() -> None:
        async with connect(local_stack, alice) as alice_ws:
            assert (await subscribe(alice_ws, topic))["event"] == "subscribed"
            async with connect(local_stack, bob) as bob_ws:
                assert (await subscribe(bob_ws, topic))["event"] == "subscribed"
                assert sorted(presence(local_stack, alice, room_id)) == sorted([alice_id, bob_id])
            # Bob closed the page: alice hears presence-updated, and the list no longer has him.
            assert await frame_of(alice_ws, "presence-updated") == {
                "event": "presence-updated",
                "topic": topic,
            }
            deadline = time.monotonic() + FRAME_WAIT
            while bob_id in presence(local_stack, alice, room_id) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert presence(local_stack, alice, room_id) == [alice_id]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        "not json",
        "",
        "[]",
        "null",
        '{"action": "subscribe"}',
        '{"action": "subscribe", "topic": 42}',
        '{"action": "subscribe", "topic": {"$gt": ""}}',
        '{"action": "unsubscribe", "topic": null}',
        '{"action": "subscribe", "topic": "' + "x" * 5000 + '"}',
        '{"action": "publish", "topic": "room:1", "event": "x"}',
        '{"action": ["subscribe"]}',
        "[" * 5000,
    ],
    ids=lambda garbage: garbage[:40],
)
def test_garbage_control_messages_leave_the_socket_open(local_stack: LocalStack, garbage: str) -> None:
    _, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            await ws.send(garbage)
            await ws.send(json.dumps({"action": "ping"}))
            assert await frame_of(ws, "pong") == {"event": "pong"}
            assert (await subscribe(ws, "nobody:may"))["event"] == "subscribe-refused"

    asyncio.run(scenario())
