"""`chalice-realtime` against the local stack: real sockets through its WebSocket gateway.

An operator's commands with the stack's settings (`APP_STAGE=local`, its moto and its Management
API): `check` passes on the stack, `connections` lists a user's two open sockets, `notify` reaches
both, and `disconnect` closes them (each client sees its socket closed) and deletes their rows;
`members` lists a room topic's subscribers and `notify --topic` reaches their sockets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import websockets

from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("chalice-realtime")


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.environment, "PATH": str(CLI.parent)}
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=60)


def test_check_passes_on_the_local_stack(local_stack: LocalStack) -> None:
    result = cli(local_stack, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "410 for a made-up connection" in result.stdout  # the gateway answered as API Gateway does
    assert result.stdout.splitlines()[-1].startswith("all 4 checks passed")


def test_disconnect_closes_every_socket_of_the_user_and_forgets_them(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()
    other_uid, other_token = local_stack.sign_up()

    async def scenario() -> dict[str, object]:
        def connect(bearer: str) -> websockets.connect:
            return websockets.connect(local_stack.ws_url, subprotocols=["bearer", bearer], open_timeout=10)  # type: ignore[list-item]

        def run(*args: str) -> str:
            return cli(local_stack, *args).stdout

        seen: dict[str, object] = {}
        async with connect(token) as first, connect(token) as second, connect(other_token) as other:
            seen["listed"] = await asyncio.to_thread(run, "connections", "--user", uid)
            seen["notified"] = await asyncio.to_thread(
                run, "notify", "--user", uid, "--event", "orders-updated"
            )
            seen["frames"] = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in (first, second)]
            seen["disconnected"] = await asyncio.to_thread(run, "disconnect", "--user", uid)
            for ws in (first, second):
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
            # The other user's socket stays open and listed: it still answers a ping.
            await other.send(json.dumps({"action": "ping"}))
            seen["pong"] = json.loads(await asyncio.wait_for(other.recv(), 10))
            seen["after"] = await asyncio.to_thread(run, "connections", "--user", uid)
            seen["other"] = await asyncio.to_thread(run, "connections", "--user", other_uid)
        return seen

    seen = asyncio.run(scenario())

    assert str(seen["listed"]).splitlines()[-1] == f"2 live connections of {uid}"
    assert seen["notified"] == "delivered=2 gone=0 failed=0\n"
    assert seen["frames"] == [{"event": "orders-updated"}, {"event": "orders-updated"}]
    assert str(seen["disconnected"]).splitlines()[-1] == f"disconnected 2 connections of {uid}"
    assert seen["pong"] == {"event": "pong"}
    assert seen["after"] == f"0 live connections of {uid}\n"
    assert str(seen["other"]).splitlines()[-1] == f"1 live connection of {other_uid}"


def test_members_and_notify_of_a_topic_reach_its_subscribed_sockets(local_stack: LocalStack) -> None:
    owner, owner_token = local_stack.sign_up()
    stranger, stranger_token = local_stack.sign_up()
    created = requests.post(
        local_stack.rest_url + "/rooms",
        json={"name": "ops"},
        headers={"Authorization": f"Bearer {owner_token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    topic = f"room:{created.json()['room_id']}"

    async def next_frame(ws: websockets.ClientConnection, event: str) -> dict[str, object]:
        while True:  # presence-updated frames are passed over
            frame = dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            if frame["event"] == event:
                return frame

    async def scenario() -> dict[str, object]:
        def connect(bearer: str) -> websockets.connect:
            return websockets.connect(local_stack.ws_url, subprotocols=["bearer", bearer], open_timeout=10)  # type: ignore[list-item]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return cli(local_stack, *args)

        seen: dict[str, object] = {}
        async with connect(owner_token) as member, connect(stranger_token) as other:
            await member.send(json.dumps({"action": "subscribe", "topic": topic}))
            seen["subscribed"] = await next_frame(member, "subscribed")
            seen["members"] = (await asyncio.to_thread(run, "members", "--topic", topic)).stdout
            notified = await asyncio.to_thread(
                run, "notify", "--topic", topic, "--event", "room-messages-updated"
            )
            seen["notified"] = notified.stdout + notified.stderr
            seen["frame"] = await next_frame(member, "room-messages-updated")
            # The stranger's socket heard nothing of the topic: its next frame is the answer to its ping.
            await other.send(json.dumps({"action": "ping"}))
            seen["other"] = json.loads(await asyncio.wait_for(other.recv(), 10))
        return seen

    seen = asyncio.run(scenario())

    assert seen["subscribed"] == {"event": "subscribed", "topic": topic}
    assert seen["members"] == f"{owner}\n1 member of {topic}\n"
    assert seen["notified"] == "delivered=1 gone=0 failed=0\n"
    assert seen["frame"] == {"event": "room-messages-updated", "topic": topic}
    assert seen["other"] == {"event": "pong"} and stranger != owner
