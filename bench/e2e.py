"""End to end on the local stack (`python -m devserver`, started here on free ports).

    python -m bench.e2e                        # 500 messages, 2,000 connections
    python -m bench.e2e --messages 100 --connections 200

1. Message to frame: the recipient holds a real WebSocket; each `POST /messages` (REST, the
   sender's token) is timed until the recipient's socket receives `chat-messages-updated`.
   One message at a time, so each frame belongs to its message.
2. Broadcast: `--connections` WebSockets on the local gateway (`--per-user` per user, users
   signed up in the Auth Emulator), then one `notify_users` to all of them from this process
   (the app's Notifier and default transport, against the stack's DynamoDB and gateway):
   time until the last socket has its frame, and the gateway process's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import machine, table, verdict


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def dynamodb_round_trip(stack: Any, calls: int = 30) -> float:
    """Median ms of one Query on the stack's moto server: the unit most of a message's time is made of."""
    client = stack.aws_client("dynamodb")
    table_name = stack.environment["CONNECTIONS_TABLE"]
    times = []
    for n in range(calls):
        started = time.perf_counter()
        client.query(
            TableName=table_name,
            IndexName="by_user",
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": f"nobody-{n}"}},
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def message_latency(stack: Any, messages: int) -> tuple[list[float], list[float]]:
    """Seconds from POST /messages to the recipient's frame, and to the REST answer, per message."""
    import requests
    from websockets.sync.client import connect

    _, sender_token = stack.sign_up()
    recipient, recipient_token = stack.sign_up()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {sender_token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    responses: list[float] = []
    with connect(stack.ws_url, subprotocols=["bearer", recipient_token], open_timeout=30) as socket:  # type: ignore[list-item]
        # A reader thread stamps each frame as it arrives: it may come before the POST's answer.
        arrivals: queue.Queue[float] = queue.Queue()

        def read() -> None:
            with contextlib.suppress(Exception):
                for frame in socket:
                    if json.loads(frame) == {"event": "chat-messages-updated"}:
                        arrivals.put(time.perf_counter())

        threading.Thread(target=read, daemon=True).start()
        for n in range(messages + 5):
            started = time.perf_counter()
            response = session.post(
                stack.rest_url + "/messages",
                data=json.dumps({"to": recipient, "text": f"m{n}"}),
                headers=headers,
            )
            assert response.status_code == 201, response.text
            answered = time.perf_counter()
            arrived = arrivals.get(timeout=10)
            if n >= 5:  # the first few warm the app's clients and caches
                latencies.append(arrived - started)
                responses.append(answered - started)
    return latencies, responses


class Listeners:
    """`count` WebSockets on a background event loop, recording when each gets the broadcast frame."""

    def __init__(self, url: str, tokens: list[str], key: str) -> None:
        self.url, self.tokens, self.key = url, tokens, key
        self.received: list[float] = []
        self.connected = threading.Event()
        self.done = threading.Event()
        self.errors: list[str] = []
        self.live = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),), daemon=True)

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        opening = asyncio.Semaphore(50)  # the gateway's $connect Lambdas run 16 at a time

        async def open_one(token: str) -> Any:
            async with opening:
                return await connect(self.url, subprotocols=["bearer", token], open_timeout=60)  # type: ignore[list-item]

        sockets = await asyncio.gather(*(open_one(t) for t in self.tokens), return_exceptions=True)
        live = [s for s in sockets if not isinstance(s, BaseException)]
        self.live = len(live)
        self.errors = [repr(s) for s in sockets if isinstance(s, BaseException)]
        self.connected.set()

        async def listen(socket: Any) -> None:
            try:
                async for frame in socket:
                    if json.loads(frame) == {"event": self.key}:
                        self.received.append(time.perf_counter())
                        if len(self.received) == len(live):
                            self.done.set()
                        return
            except Exception as exc:  # a closed socket is counted as a miss
                self.errors.append(repr(exc))

        await asyncio.wait_for(asyncio.gather(*(listen(s) for s in live)), timeout=300)
        await asyncio.gather(*(s.close() for s in live), return_exceptions=True)


def broadcast(stack: Any, connections: int, per_user: int) -> dict[str, Any]:
    from chalicelib import services
    from chalicelib.settings import Settings

    users = []
    for _ in range(-(-connections // per_user)):
        users.append(stack.sign_up())
    tokens = [token for _, token in users for _ in range(per_user)][:connections]
    listeners = Listeners(stack.ws_url, tokens, "bench-broadcast")
    started = time.perf_counter()
    listeners.thread.start()
    listeners.connected.wait(timeout=900)
    connect_seconds = time.perf_counter() - started
    gateway = stack.service_pids()["gateway"]
    connected_memory = memory_kib(gateway)

    environment = {**stack.environment, "LOG_LEVEL": "WARNING"}  # the table, not per-notify log lines
    os.environ.update(environment)
    app_services = services.Services(Settings.from_env(environment))
    # The same lookups alone (16 threads, as the notifier runs them): moto's share of the broadcast.
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(app_services.realtime.connections.connection_ids_of, [uid for uid, _ in users]))
    lookup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = app_services.notifier.notify_users([uid for uid, _ in users], "bench-broadcast")
    notify_seconds = time.perf_counter() - started
    listeners.done.wait(timeout=120)
    last_frame = max(listeners.received, default=started) - started
    listeners.thread.join(timeout=60)
    return {
        "connections": connections,
        "live": listeners.live,
        "connect_seconds": connect_seconds,
        "notify_seconds": notify_seconds,
        "lookup_seconds": lookup_seconds,
        "last_frame_seconds": last_frame,
        "received": len(listeners.received),
        "report": [report.delivered, report.gone, report.failed],
        "gateway_rss_kib": connected_memory.get("VmRSS", 0),
        "gateway_peak_kib": memory_kib(gateway).get("VmHWM", 0),
        "errors": listeners.errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=500, help="messages timed (500)")
    parser.add_argument("--connections", type=int, default=2000, help="sockets for the broadcast (2,000)")
    parser.add_argument("--per-user", type=int, default=10, help="sockets per user (10, the default cap)")
    args = parser.parse_args()

    from testsupport.localstack import LocalStack, missing_tools

    if missing_tools():
        sys.exit(f"bench.e2e needs the local stack: {missing_tools()}")
    # 2,000 sockets on each side need more than the usual 1,024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * args.connections + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (shared machine)\n", flush=True)
    env = {"MAX_CONNECTIONS_PER_USER": str(args.per_user)}
    with LocalStack(extra_env=env) as stack:
        latencies, answers = message_latency(stack, args.messages)
        dynamodb_ms = dynamodb_round_trip(stack)
        result = broadcast(stack, args.connections, args.per_user)

    ms = [latency * 1000 for latency in latencies]
    p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
    print(f"### Message to frame on the local stack, {len(ms)} messages one at a time\n")
    print(
        table(
            ["", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                ["POST /messages to the frame", *(f"{v:.1f}" for v in (p50, p95, p99, max(ms)))],
                [
                    "POST /messages to its 201",
                    *(f"{percentile([a * 1000 for a in answers], p):.1f}" for p in (50, 95, 99, 100)),
                ],
            ],
        )
    )
    print(
        f"\none DynamoDB Query on the stack's moto server: {dynamodb_ms:.1f} ms median; a message makes"
        " 1 TransactWriteItems + 2 Queries (sender and recipient's connections) before its posts"
    )
    print(
        f"\n### Broadcast to {args.connections:,} sockets on the local gateway ({args.per_user} per user)\n"
    )
    delivered, gone, failed = result["report"]
    print(
        table(
            [
                "sockets open",
                "frames received",
                "notify_users s",
                "its 1 Query per user alone s",
                "last frame s",
                "report d/g/f",
                "gateway RSS MiB",
                "gateway peak MiB",
            ],
            [
                [
                    f"{result['live']:,} ({result['connect_seconds']:.0f} s to open)",
                    f"{result['received']:,}",
                    f"{result['notify_seconds']:.2f}",
                    f"{result['lookup_seconds']:.2f}",
                    f"{result['last_frame_seconds']:.2f}",
                    f"{delivered}/{gone}/{failed}",
                    f"{result['gateway_rss_kib'] / 1024:.0f}",
                    f"{result['gateway_peak_kib'] / 1024:.0f}",
                ]
            ],
        )
    )
    if result["errors"]:
        print("\nfirst socket errors:", *result["errors"], sep="\n  ")
    print("\n### Targets\n")
    print(
        table(
            ["target", "measured", ""],
            [
                ["message to frame p99 < 100 ms", f"{p99:.1f} ms", verdict(p99 < 100)],
                [
                    f"every one of {args.connections:,} sockets gets the broadcast",
                    f"{result['received']:,}",
                    verdict(result["received"] == args.connections),
                ],
            ],
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
