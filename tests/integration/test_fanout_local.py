"""A notify from a REST handler to an audience too large to wait for: answered at once, delivered by the
fan-out workers the local stack runs from moto's SQS, each connection's frame exactly once.

10,000 connections here (1,000 users x 10, then one topic's 10,000 subscribers) to keep the suite's
time; `python -m bench.broadcast` runs the same scenario with 100,000 and writes its figures into
docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testsupport.broadcast import VIRTUAL_PREFIX, BroadcastResult, broadcast, broadcast_app, broadcast_topic
from testsupport.localstack import LocalStack, require_local_stack_tools

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    require_local_stack_tools()
    app_dir = broadcast_app(tmp_path_factory.mktemp("broadcast") / "app")
    with LocalStack(app_dir=app_dir) as stack:
        yield stack


def test_a_throttled_rest_broadcast_to_10000_connections_answers_within_a_second_and_each_gets_one_frame(
    stack: LocalStack,
) -> None:
    # The gateway throttles as the account would (scaled to what one local process serves).
    result = broadcast(stack, users=1_000, per_user=10, timeout=240, throttle=(5_000, 2_500))

    assert result.answer_seconds < 1.0, result.report
    report = result.report
    assert report["failed"] == 0 and report["gone"] == 0
    # Whatever the handler did not post itself it handed on: users, or connections it had read.
    assert report["deferred_users"] + report["deferred"] > 0
    assert_each_got_one_frame(result)


def test_a_throttled_rest_notify_to_a_10000_subscriber_topic_answers_within_a_second_each_gets_one_frame(
    stack: LocalStack,
) -> None:
    result = broadcast_topic(
        stack, "room:all-hands", subscribers=10_000, timeout=240, throttle=(5_000, 2_500)
    )

    assert result.answer_seconds < 1.0, result.report
    report = result.report
    assert report["failed"] == 0 and report["gone"] == 0
    # The handler posted what its budget allowed and handed on the rest of the topic behind its cursor.
    assert report["deferred_topics"] == 1 and report["delivered"] < 10_000
    assert_each_got_one_frame(result)


def assert_each_got_one_frame(result: BroadcastResult) -> None:
    missing = result.expected - result.posts.keys()
    assert not missing, f"{len(missing)} connections never got their frame, e.g. {sorted(missing)[:3]}"
    twice = {cid: n for cid, n in result.posts.items() if cid in result.expected and n != 1}
    assert not twice, f"{len(twice)} connections got the frame more than once, e.g. {list(twice.items())[:3]}"
    assert all(cid.startswith(VIRTUAL_PREFIX) for cid in result.posts)
    assert (result.left_on_queue, result.dead_letters) == (0, 0)
