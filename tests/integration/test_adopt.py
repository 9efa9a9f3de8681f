"""A brand-new Chalice app that adopted the core as docs/adopt.md says, served by the local stack.

`python -m devserver --app-dir <the app>` runs that app's `app.py` (which imports the installed
`chalice_realtime`) with the same gateway, moto and Firebase Auth Emulator as this project; a real
WebSocket client with an emulator token connects to it, calls its route and gets the frame, and
gets the frame its SNS handler sends when a message is published to its topic.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import websockets

from tests.adopter import EVENT_KEY, ROUTE, SNS_TOPIC, create_adopting_app
from testsupport.localstack import LocalStack, require_local_stack_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def adopter_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    require_local_stack_tools()
    app_dir = create_adopting_app(tmp_path_factory.mktemp("adopter"))
    with LocalStack(app_dir=app_dir) as stack:
        yield stack, app_dir


def test_a_connected_user_gets_exactly_the_frame_the_adopting_apps_route_sends(
    adopter_stack: tuple[LocalStack, Path],
) -> None:
    stack, _ = adopter_stack
    uid, token = stack.sign_up()

    async def scenario() -> tuple[int, object, str]:
        async with websockets.connect(
            stack.ws_url,
            subprotocols=["bearer", token],  # type: ignore[list-item]
            open_timeout=10,
        ) as ws:
            assert ws.subprotocol == "bearer"
            headers = {"Authorization": f"Bearer {token}"}
            url = stack.rest_url + ROUTE
            response = await asyncio.to_thread(requests.post, url, headers=headers, timeout=10)
            frame = await asyncio.wait_for(ws.recv(), 10)
            return response.status_code, response.json(), str(frame)

    status, body, frame = asyncio.run(scenario())

    assert (status, body) == (200, {"delivered": 1})
    assert json.loads(frame) == {"event": EVENT_KEY}
    # $connect stored the row notify found (delivered: 1); $disconnect deletes it once the client closes.
    assert wait_until(lambda: uid not in connected_users(stack), timeout=10)


def test_the_apps_sns_handler_notifies_a_connected_user(adopter_stack: tuple[LocalStack, Path]) -> None:
    stack, _ = adopter_stack
    uid, token = stack.sign_up()
    sns = stack.aws_client("sns")
    topic_arn = sns.create_topic(Name=SNS_TOPIC)["TopicArn"]  # the stack created it for the handler

    async def scenario() -> str:
        async with websockets.connect(
            stack.ws_url,
            subprotocols=["bearer", token],  # type: ignore[list-item]
            open_timeout=10,
        ) as ws:
            # The doc's handler notifies the user the message names (the order's owner).
            await asyncio.to_thread(sns.publish, TopicArn=topic_arn, Message=uid)
            return str(await asyncio.wait_for(ws.recv(), 15))

    assert json.loads(asyncio.run(scenario())) == {"event": EVENT_KEY}


def connected_users(stack: LocalStack) -> set[str]:
    rows = stack.aws_client("dynamodb").scan(TableName=stack.environment["CONNECTIONS_TABLE"])["Items"]
    return {row["user_id"]["S"] for row in rows if "user_id" in row}  # not the fan-out shard records


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_route_refuses_a_caller_without_a_token(adopter_stack: tuple[LocalStack, Path]) -> None:
    stack, _ = adopter_stack
    response = requests.post(stack.rest_url + ROUTE, timeout=10)
    assert response.status_code == 401


def test_the_socket_refuses_a_forged_token(adopter_stack: tuple[LocalStack, Path]) -> None:
    stack, _ = adopter_stack

    async def scenario() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(
                stack.ws_url,
                subprotocols=["bearer", "not-a-token"],  # type: ignore[list-item]
                open_timeout=10,
            ):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(scenario())


def test_the_stack_serves_the_adopting_app_not_this_project(adopter_stack: tuple[LocalStack, Path]) -> None:
    stack, app_dir = adopter_stack
    _, token = stack.sign_up()
    # This project's routes do not exist in the adopting app.
    response = requests.get(stack.rest_url + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code in (403, 404)
    assert f"serving {app_dir.resolve() / 'app.py'}" in stack.log_text()
