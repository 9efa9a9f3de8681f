"""A broadcast from a REST handler to a large audience over the local stack, as a test and a benchmark run it.

The audience is rows in the connections table (`users` x `per_user` connections whose ids start with
`fan-`), or subscriptions of one topic in the topics table, and the gateway takes their frames as
virtual connections (`PUT /_posts`), counting every POST per connection id; the app is a small adopter
whose `POST /broadcast` calls `notify_users` and `POST /broadcast-topic` calls `notify_topic`.

    with LocalStack(app_dir=broadcast_app(tmp_path)) as stack:
        result = broadcast(stack, users=1_000, per_user=10)
        result = broadcast_topic(stack, "room:all", subscribers=10_000)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from testsupport.localstack import LocalStack

VIRTUAL_PREFIX = "fan-"

APP = '''"""An app whose one route notifies a whole audience: the fan-out path under test."""

from dataclasses import asdict

from chalice import Chalice
from chalice_realtime import correlated, notify_topic, notify_users, realtime

app = Chalice(app_name="broadcast")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_blueprint(realtime)


@app.middleware("all")
def correlate(event, get_response):
    return correlated(event, get_response)


@app.route("/broadcast", methods=["POST"])
def broadcast():
    body = app.current_request.json_body
    users = [f"{body['prefix']}{n:06d}" for n in range(body["users"])]
    return asdict(notify_users(users, "jobs-updated"))


@app.route("/broadcast-topic", methods=["POST"])
def broadcast_topic():
    return asdict(notify_topic(app.current_request.json_body["topic"], "room-messages-updated"))
'''

CONFIG = {
    "version": "2.0",
    "app_name": "broadcast",
    "lambda_functions": {
        "api_handler": {"lambda_timeout": 30},
        "fanout_worker": {"lambda_timeout": 30, "reserved_concurrency": 10},
    },
}


def broadcast_app(directory: Path) -> Path:
    """Write the broadcasting app into `directory` (created) and return it."""
    (directory / ".chalice").mkdir(parents=True)
    (directory / "app.py").write_text(APP)
    (directory / ".chalice" / "config.json").write_text(json.dumps(CONFIG, indent=2))
    return directory


@dataclass(frozen=True)
class BroadcastResult:
    connections: int
    answer_seconds: float  # POST /broadcast, as its caller waited
    report: dict[str, int]  # the DeliveryReport it answered
    delivered_seconds: float  # from the request until the gateway had taken a frame for every connection
    posts: dict[str, int]  # frames the gateway took per connection id
    expected: frozenset[str]
    left_on_queue: int
    dead_letters: int


def add_audience(stack: LocalStack, users: int, per_user: int) -> frozenset[str]:
    """Rows for `users` x `per_user` connections (an hour old), 25 per BatchWriteItem; their ids."""
    dynamodb = stack.aws_client("dynamodb")
    table = stack.environment["CONNECTIONS_TABLE"]
    connected_at = int(time.time() * 1000) - 3_600_000
    expires_at = connected_at // 1000 + 2 * 3600 + 600 + 3600
    rows = [
        (f"{VIRTUAL_PREFIX}u{u:06d}", f"{VIRTUAL_PREFIX}u{u:06d}-{k}")
        for u in range(users)
        for k in range(per_user)
    ]
    for start in range(0, len(rows), 25):
        requests_: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "connection_id": {"S": cid},
                        "user_id": {"S": uid},
                        "connected_at": {"N": str(connected_at + n)},
                        "expires_at": {"N": str(expires_at)},
                    }
                }
            }
            for n, (uid, cid) in enumerate(rows[start : start + 25], start)
        ]
        while requests_:
            answer = dynamodb.batch_write_item(RequestItems={table: requests_})
            requests_ = answer.get("UnprocessedItems", {}).get(table, [])
    return frozenset(cid for _, cid in rows)


def add_subscribers(stack: LocalStack, topic: str, count: int) -> frozenset[str]:
    """`count` subscriptions of `topic` (one user each, connected an hour ago), 25 per BatchWriteItem; their
    connection ids."""
    dynamodb = stack.aws_client("dynamodb")
    table = stack.environment["TOPICS_TABLE"]
    connected_at = int(time.time() * 1000) - 3_600_000
    expires_at = connected_at // 1000 + 2 * 3600 + 600 + 3600
    rows = [(f"{VIRTUAL_PREFIX}m{n:06d}", f"{VIRTUAL_PREFIX}s{n:06d}") for n in range(count)]
    for start in range(0, len(rows), 25):
        requests_: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": f"topic#{topic}"},
                        "sk": {"S": f"sub#{uid}#{cid}"},
                        "connection_id": {"S": cid},
                        "user_id": {"S": uid},
                        "connected_at": {"N": str(connected_at)},
                        "expires_at": {"N": str(expires_at)},
                    }
                }
            }
            for uid, cid in rows[start : start + 25]
        ]
        while requests_:
            answer = dynamodb.batch_write_item(RequestItems={table: requests_})
            requests_ = answer.get("UnprocessedItems", {}).get(table, [])
    return frozenset(cid for _, cid in rows)


def broadcast(
    stack: LocalStack,
    users: int,
    per_user: int,
    *,
    timeout: float = 300.0,
    throttle: tuple[float, float] | None = None,
) -> BroadcastResult:
    """Seed the audience, call `POST /broadcast` once, wait until every connection had its frame (or
    `timeout`), then read what the gateway counted and what is left on the queues. `throttle`
    (rate, burst) puts the gateway's Management API behind a token bucket, as the account's throttle."""
    expected = add_audience(stack, users, per_user)
    body = {"prefix": f"{VIRTUAL_PREFIX}u", "users": users}
    return _run(stack, "/broadcast", body, {"prefix": "nobody", "users": 1}, expected, timeout, throttle)


def broadcast_topic(
    stack: LocalStack,
    topic: str,
    subscribers: int,
    *,
    timeout: float = 300.0,
    throttle: tuple[float, float] | None = None,
) -> BroadcastResult:
    """As `broadcast`, to `subscribers` subscriptions of `topic` through `POST /broadcast-topic`."""
    expected = add_subscribers(stack, topic, subscribers)
    return _run(stack, "/broadcast-topic", {"topic": topic}, {"topic": "nobody"}, expected, timeout, throttle)


def _run(
    stack: LocalStack,
    route: str,
    body: dict[str, Any],
    warm_body: dict[str, Any],
    expected: frozenset[str],
    timeout: float,
    throttle: tuple[float, float] | None,
) -> BroadcastResult:
    # A first request to an empty audience: the handler's process imports and builds its clients (a Lambda's
    # cold start), so what is timed below is the notify.
    warm = requests.post(f"{stack.rest_url}{route}", json=warm_body, timeout=60)
    warm.raise_for_status()
    control = f"{stack.management_url}/_posts"
    requests.put(control, json={"virtual_prefix": VIRTUAL_PREFIX}, timeout=10).raise_for_status()
    if throttle is not None:
        rate, burst = throttle
        bucket = {"rate": rate, "burst": burst}
        requests.put(f"{stack.management_url}/_throttle", json=bucket, timeout=10).raise_for_status()
    started = time.monotonic()
    response = requests.post(f"{stack.rest_url}{route}", json=body, timeout=60)
    answer_seconds = time.monotonic() - started
    response.raise_for_status()
    posts: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        posts = requests.get(control, timeout=30).json()["posts"]
        if expected <= posts.keys():
            break
        time.sleep(0.5)
    delivered_seconds = time.monotonic() - started
    time.sleep(1.0)  # a second copy of some frame would arrive now, if the workers sent one
    posts = requests.get(control, timeout=30).json()["posts"]
    sqs = stack.aws_client("sqs")
    queue_url = stack.environment["FANOUT_QUEUE_URL"]
    dead_letters_url = sqs.get_queue_url(QueueName=queue_url.rsplit("/", 1)[1] + "-dead-letters")["QueueUrl"]
    return BroadcastResult(
        connections=len(expected),
        answer_seconds=answer_seconds,
        report=response.json(),
        delivered_seconds=delivered_seconds,
        posts=posts,
        expected=expected,
        left_on_queue=_messages(sqs, queue_url),
        dead_letters=_messages(sqs, dead_letters_url),
    )


def _messages(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
