"""The whole flow of docs/architecture.md over real sockets: the local stack, a websockets client, tokens."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import requests
import websockets
from botocore.exceptions import ClientError
from websockets.asyncio.client import ClientConnection

from tests.integration.faults_support import notifier_later, shipped_services
from testsupport.localstack import PROJECT_ROOT, LocalStack

pytestmark = pytest.mark.integration

FRAME_WAIT = 10.0


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def connect(stack: LocalStack, token: str) -> Any:
    return websockets.connect(stack.ws_url, subprotocols=["bearer", token], open_timeout=10)  # type: ignore[list-item]


async def next_frame(ws: ClientConnection, wait: float = FRAME_WAIT) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), wait)))


async def frames_until(
    ws: ClientConnection, done: Callable[[], Awaitable[bool]], wait: float = 30.0
) -> list[dict[str, Any]]:
    """Frames received until `done()` is true (checked after each frame and each quiet second)."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            received.append(await next_frame(ws, 1.0))
        except TimeoutError:
            pass
        if await done():
            return received
    raise AssertionError(f"not done after {wait} s; frames so far: {received}")


def connection_rows(stack: LocalStack, user_id: str) -> list[str]:
    """Connection ids stored for `user_id` in the connections table (moto's server, read with boto3)."""
    table = stack.environment["CONNECTIONS_TABLE"]
    items = stack.aws_client("dynamodb").scan(TableName=table)["Items"]
    return [item["connection_id"]["S"] for item in items if item.get("user_id", {}).get("S") == user_id]


def live_connections_of(stack: LocalStack, user_id: str) -> list[str]:
    """The ids the gateway holds open among `user_id`'s stored rows (exactly one after a fresh connect)."""
    live = set(requests.get(stack.management_url + "/_connections", timeout=5).json()["connections"])
    return [cid for cid in connection_rows(stack, user_id) if cid in live]


# ---------------------------------------------------------------- connect


def test_connect_is_accepted_with_the_bearer_subprotocol(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            assert ws.subprotocol == "bearer"
            assert len(connection_rows(local_stack, uid)) == 1

    asyncio.run(scenario())


def test_token_in_the_query_string_is_accepted_too(local_stack: LocalStack) -> None:
    _, token = local_stack.sign_up()

    async def scenario() -> None:
        async with websockets.connect(f"{local_stack.ws_url}/?token={token}", open_timeout=10) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"event": "pong"}

    asyncio.run(scenario())


@pytest.mark.parametrize("subprotocols", [["bearer", "not-a-token"], ["bearer"], None])
def test_a_bad_or_missing_token_is_refused_at_the_upgrade(
    local_stack: LocalStack, subprotocols: list[str] | None
) -> None:
    before = len(
        local_stack.aws_client("dynamodb").scan(TableName=local_stack.environment["CONNECTIONS_TABLE"])[
            "Items"
        ]
    )

    async def scenario() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(local_stack.ws_url, subprotocols=subprotocols, open_timeout=10):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(scenario())
    after = len(
        local_stack.aws_client("dynamodb").scan(TableName=local_stack.environment["CONNECTIONS_TABLE"])[
            "Items"
        ]
    )
    assert after == before  # nothing stored for a refused connection


def test_ping_gets_pong(local_stack: LocalStack) -> None:
    _, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"event": "pong"}
            await ws.send("not json at all")  # ignored, and the connection stays usable
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"event": "pong"}

    asyncio.run(scenario())


def test_a_closed_socket_row_disappears(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token):
            assert len(connection_rows(local_stack, uid)) == 1
        deadline = time.monotonic() + 10
        while connection_rows(local_stack, uid) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert connection_rows(local_stack, uid) == []


# ---------------------------------------------------------------- the three flows


def test_a_message_from_a_makes_b_refetch_and_see_it(local_stack: LocalStack) -> None:
    alice, alice_token = local_stack.sign_up()
    bob, bob_token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, bob_token) as bob_ws:
            sent = requests.post(
                local_stack.rest_url + "/messages",
                json={"to": bob, "text": "hello from the local stack"},
                headers=auth(alice_token),
                timeout=10,
            )
            assert sent.status_code == 201, sent.text
            raw = await asyncio.wait_for(bob_ws.recv(), FRAME_WAIT)
            assert json.loads(raw) == {"event": "chat-messages-updated"}

    asyncio.run(scenario())
    conversation = requests.get(
        local_stack.rest_url + "/messages", params={"with": alice}, headers=auth(bob_token), timeout=10
    )
    assert conversation.status_code == 200
    assert [m["text"] for m in conversation.json()["messages"]] == ["hello from the local stack"]


def test_a_job_reports_progress_and_succeeds(local_stack: LocalStack) -> None:
    _, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            submitted = requests.post(
                local_stack.rest_url + "/jobs",
                json={"kind": "report", "params": {"seconds": 2}},
                headers=auth(token),
                timeout=10,
            )
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["job_id"]
            seen: list[dict[str, Any]] = []

            async def finished() -> bool:
                job = requests.get(f"{local_stack.rest_url}/jobs/{job_id}", headers=auth(token), timeout=10)
                seen.append(job.json())
                return bool(job.json()["status"] in ("succeeded", "failed"))

            frames = await frames_until(ws, finished)
            assert seen[-1]["status"] == "succeeded", seen[-1]
            assert seen[-1]["progress"] == 100
            assert frames and all(frame == {"event": "jobs-updated"} for frame in frames)

    asyncio.run(scenario())


def test_a_signed_stripe_event_notifies_the_payer_and_lists_the_payment(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            sent = subprocess.run(
                [sys.executable, "-m", "devserver.stripe_event", "--user", uid, "--amount", "1234",
                 "--currency", "eur", "--rest-url", local_stack.rest_url,
                 "--secret", local_stack.stripe_webhook_secret],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert await next_frame(ws) == {"event": "payments-updated"}

    asyncio.run(scenario())
    payments = requests.get(local_stack.rest_url + "/payments", headers=auth(token), timeout=10).json()[
        "payments"
    ]
    assert [(p["amount"], p["currency"], p["status"]) for p in payments] == [(1234, "eur", "succeeded")]


def test_the_demo_page_test_payment_button_goes_through_the_signed_webhook(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            answer = requests.post(
                local_stack.web_url + "/dev/test-payment",
                json={"user_id": uid, "amount": 700, "currency": "usd", "type": "checkout.session.completed"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert await next_frame(ws) == {"event": "payments-updated"}

    asyncio.run(scenario())
    payments = requests.get(local_stack.rest_url + "/payments", headers=auth(token), timeout=10).json()[
        "payments"
    ]
    assert [p["amount"] for p in payments] == [700]


# ---------------------------------------------------------------- the Management API as boto3 sees it


def test_the_management_api_answers_gone_for_an_unknown_id(local_stack: LocalStack) -> None:
    client = local_stack.management_client(retries={"total_max_attempts": 1})
    for call in (
        lambda: client.post_to_connection(ConnectionId="NoSuchConnect1=", Data=b'{"event":"x"}'),
        lambda: client.get_connection(ConnectionId="NoSuchConnect1="),
        lambda: client.delete_connection(ConnectionId="NoSuchConnect1="),
    ):
        with pytest.raises(ClientError) as gone:
            call()
        assert gone.value.response["Error"]["Code"] == "GoneException"
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        assert isinstance(gone.value, client.exceptions.GoneException)


def test_the_management_api_posts_describes_and_closes_a_live_connection(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()
    client = local_stack.management_client()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            (connection_id,) = connection_rows(local_stack, uid)
            info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
            assert info["ConnectedAt"] <= info["LastActiveAt"]
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b'{"event":"hi"}'
            )
            assert await next_frame(ws) == {"event": "hi"}
            await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
            await asyncio.wait_for(ws.wait_closed(), FRAME_WAIT)

    asyncio.run(scenario())


def test_faults_can_be_injected_into_the_management_api(local_stack: LocalStack) -> None:
    client = local_stack.management_client(retries={"total_max_attempts": 1})
    rules = {"rules": [{"status": 429, "retry_after": 1, "times": 1}, {"status": 500, "times": 1}]}
    assert requests.put(local_stack.management_url + "/_faults", json=rules, timeout=5).status_code == 200
    try:
        with pytest.raises(ClientError) as throttled:
            client.post_to_connection(ConnectionId="AnyConnection1=", Data=b"{}")
        assert throttled.value.response["Error"]["Code"] == "LimitExceededException"
        assert throttled.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        with pytest.raises(ClientError) as failing:
            client.post_to_connection(ConnectionId="AnyConnection1=", Data=b"{}")
        assert failing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        with pytest.raises(client.exceptions.GoneException):  # the plan is used up: normal answers again
            client.post_to_connection(ConnectionId="AnyConnection1=", Data=b"{}")
    finally:
        requests.delete(local_stack.management_url + "/_faults", timeout=5)


# ---------------------------------------------------------------- gateway limits and restarts


def test_frames_over_32_kb_and_binary_frames_close_the_connection_as_on_aws(local_stack: LocalStack) -> None:
    _, token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            await ws.send("x" * (32 * 1024 + 1))
            await asyncio.wait_for(ws.wait_closed(), FRAME_WAIT)
            assert ws.close_code == 1009
        async with connect(local_stack, token) as ws:
            await ws.send(b"\x00\x01")
            await asyncio.wait_for(ws.wait_closed(), FRAME_WAIT)
            assert ws.close_code == 1003

    asyncio.run(scenario())


def test_a_killed_gateway_comes_back_and_notifies_reach_new_connections(local_stack: LocalStack) -> None:
    _, alice_token = local_stack.sign_up()
    bob, bob_token = local_stack.sign_up()

    async def scenario() -> None:
        async with connect(local_stack, bob_token) as old:
            await asyncio.to_thread(local_stack.restart_gateway)
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(old.recv(), FRAME_WAIT)
        async with connect(local_stack, bob_token) as new:
            sent = requests.post(
                local_stack.rest_url + "/messages",
                json={"to": bob, "text": "after the restart"},
                headers=auth(alice_token),
                timeout=10,
            )
            assert sent.status_code == 201, sent.text
            assert await next_frame(new) == {"event": "chat-messages-updated"}
            # The killed connection's row (no $disconnect ever came) met its first 410 while younger than a
            # connect may take (its own could still be running), so it stayed; every open socket has a row.
            live = live_connections_of(local_stack, bob)
            assert len(live) == 1 and len(connection_rows(local_stack, bob)) == 2
            # Half a minute on, the next notify's 410 deletes it.
            with shipped_services(local_stack) as shipped:
                report = await asyncio.to_thread(notifier_later(shipped).notify, bob, "jobs-updated")
            assert (report.delivered, report.gone) == (1, 1)
            assert connection_rows(local_stack, bob) == live

    asyncio.run(scenario())


def test_a_held_gateway_refuses_connections_until_started_again(local_stack: LocalStack) -> None:
    _, token = local_stack.sign_up()

    async def refused() -> None:
        with pytest.raises(OSError):  # connection refused: nothing listens on the port
            async with websockets.connect(local_stack.ws_url, open_timeout=3):
                pass

    local_stack.stop_gateway()
    try:
        asyncio.run(refused())
    finally:
        local_stack.start_gateway()

    async def scenario() -> None:
        async with connect(local_stack, token) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"event": "pong"}

    asyncio.run(scenario())


# ---------------------------------------------------------------- the browser's view


def test_rest_answers_cors_preflight_from_the_demo_page(local_stack: LocalStack) -> None:
    preflight = requests.options(
        local_stack.rest_url + "/messages",
        headers={
            "Origin": local_stack.web_url,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", local_stack.web_url)
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    # The page can read the correlation id of a response (to quote it in a bug report).
    health = requests.get(
        local_stack.rest_url + "/health", headers={"Origin": local_stack.web_url}, timeout=10
    )
    assert "x-correlation-id" in health.headers["Access-Control-Expose-Headers"].lower()
    assert health.headers["X-Correlation-Id"]


def test_the_demo_page_server_tells_the_page_where_everything_is(local_stack: LocalStack) -> None:
    config = requests.get(local_stack.web_url + "/config.json", timeout=10).json()
    assert config == {
        "restUrl": local_stack.rest_url,
        "wsUrl": local_stack.ws_url,
        "authEmulatorUrl": f"http://{local_stack.auth_emulator_host}",
        "firebaseProjectId": local_stack.project_id,
        "firebaseApiKey": config["firebaseApiKey"],
    }
    library = requests.get(local_stack.web_url + "/client/realtime.js", timeout=10)
    if (PROJECT_ROOT / "client" / "realtime.js").exists():
        assert library.status_code == 200
        assert library.headers["Content-Type"].startswith("text/javascript")


def test_conditional_writes_on_the_stacks_dynamodb_are_atomic_as_on_aws(local_stack: LocalStack) -> None:
    # The job runner's claim (queued -> running) relies on it; moto alone lets racing writers both win.
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError

    dynamodb = local_stack.aws_client("dynamodb")
    table = next(name for name in dynamodb.list_tables()["TableNames"] if "messages" in name)
    key_schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    key = {part["AttributeName"]: {"S": f"race-{part['KeyType']}"} for part in key_schema}
    winners: list[int] = []
    for _ in range(5):
        dynamodb.put_item(TableName=table, Item={**key, "state": {"S": "queued"}})

        def claim(n: int) -> bool:
            try:
                dynamodb.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET #s = :running, claimed_by = :n",
                    ConditionExpression="#s = :queued",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={
                        ":running": {"S": "running"},
                        ":queued": {"S": "queued"},
                        ":n": {"N": str(n)},
                    },
                )
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
                return False
            return True

        with ThreadPoolExecutor(max_workers=8) as pool:
            winners.append(sum(pool.map(claim, range(8))))
    dynamodb.delete_item(TableName=table, Key=key)
    assert winners == [1] * 5
