"""notify / notify_users: frames, 410 cleanup, retries, the report, and the AWS calls made."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import botocore.session
import chalice_realtime
import pytest
from botocore.stub import Stubber
from chalice_realtime.connections import Connection, ConnectionStore
from chalice_realtime.identifiers import validate_event_key
from chalice_realtime.notifier import DeliveryReport, Notifier, frame
from chalice_realtime.testing.dynamodb import CountingDynamoDB
from chalice_realtime.testing.management_api import received
from chalice_realtime.transports.base import Outcome
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport


def add(realtime: Any, user_id: str, *connection_ids: str) -> None:
    for n, cid in enumerate(connection_ids):
        realtime.connections.add(Connection(cid, user_id, 1_700_000_000_000 + n))


def test_every_connection_of_the_user_gets_the_frame_and_nobody_else(
    realtime: Any, management_api: Any
) -> None:
    add(realtime, "alice", "a1", "a2", "a3")
    add(realtime, "bob", "b1")
    report = chalice_realtime.notify("alice", "jobs-updated")
    assert report == DeliveryReport(delivered=3, gone=0, failed=0)
    for cid in ("a1", "a2", "a3"):
        assert received(management_api, cid) == [{"event": "jobs-updated"}]
    assert received(management_api, "b1") == []


def test_gone_connections_are_deleted_and_the_rest_still_get_the_frame(
    realtime: Any, management_api: Any
) -> None:
    add(realtime, "alice", "a1", "a2", "a3", "a4")
    management_api.gone.update({"a2", "a4"})
    report = chalice_realtime.notify("alice", "chat-messages-updated")
    assert report == DeliveryReport(delivered=2, gone=2, failed=0)
    assert received(management_api, "a1") == [{"event": "chat-messages-updated"}]
    assert received(management_api, "a3") == [{"event": "chat-messages-updated"}]
    assert realtime.connections.connection_ids_of("alice") == ["a1", "a3"]


def test_notify_users_reaches_each_user_once(realtime: Any, management_api: Any) -> None:
    add(realtime, "alice", "a1")
    add(realtime, "bob", "b1", "b2")
    add(realtime, "carol", "c1")
    report = chalice_realtime.notify_users(["alice", "bob", "alice"], "payments-updated")
    assert report.delivered == 3
    assert received(management_api, "a1") == [{"event": "payments-updated"}]
    assert received(management_api, "c1") == []


def test_a_user_with_no_connections_gets_an_empty_report(realtime: Any, management_api: Any) -> None:
    assert chalice_realtime.notify("nobody", "jobs-updated") == DeliveryReport()


@pytest.mark.parametrize(
    "key", ["", "Jobs-Updated", "-jobs", "jobs updated", "a" * 65, "jobs/updated", "ü", None, 42]
)
def test_bad_event_keys_raise_before_any_io(key: Any) -> None:
    class NoIO:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"I/O attempted: {name}")

    notifier = Notifier(NoIO(), NoIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid event key"):
        notifier.notify("alice", key)


@pytest.mark.parametrize("key", ["chat-messages-updated", "jobs-updated", "a", "x" * 64, "job:42.done"])
def test_good_event_keys_pass(key: str) -> None:
    assert validate_event_key(key) == key
    assert json.loads(frame(key)) == {"event": key}


def test_frame_is_exactly_the_event_key() -> None:
    assert frame("jobs-updated") == b'{"event":"jobs-updated"}'


def test_notify_makes_one_query_and_no_scan(realtime: Any, management_api: Any) -> None:
    add(realtime, "alice", "a1", "a2", "a3")
    counting = CountingDynamoDB(realtime.dynamodb)
    notifier = Notifier(ConnectionStore(realtime.settings.connections_table, counting), realtime.transport)
    assert notifier.notify("alice", "jobs-updated").delivered == 3
    assert counting.calls == ["query"]


def test_connections_are_read_page_by_page(realtime: Any) -> None:
    add(realtime, "alice", *[f"a{n}" for n in range(5)])
    counting = CountingDynamoDB(realtime.dynamodb, page_size=2)
    store = ConnectionStore(realtime.settings.connections_table, counting)
    assert store.connection_ids_of("alice") == [f"a{n}" for n in range(5)]
    assert counting.calls == ["query"] * 3


def stubbed_transport(responses: Sequence[tuple[str, int]]) -> tuple[Boto3ThreadPoolTransport, Stubber]:
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "apigatewaymanagementapi",
        region_name="us-east-1",
        endpoint_url="https://abc123.execute-api.us-east-1.amazonaws.com/api",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    stubber = Stubber(client)
    for code, status in responses:
        if code == "ok":
            stubber.add_response("post_to_connection", {})
        else:
            stubber.add_client_error("post_to_connection", code, http_status_code=status)
    stubber.activate()
    return Boto3ThreadPoolTransport("", client=client, concurrency=1), stubber


def test_gone_is_reported_as_gone() -> None:
    transport, _ = stubbed_transport([("GoneException", 410)])
    assert transport.post_to_connections(["c1"], b"{}") == [Outcome.GONE]


def test_errors_after_retries_are_failed_not_raised() -> None:
    transport, _ = stubbed_transport([("LimitExceededException", 429)])
    assert transport.post_to_connections(["c1"], b"{}") == [Outcome.FAILED]


class ScriptedTransport:
    def __init__(self, outcomes: dict[str, Outcome]) -> None:
        self.outcomes = outcomes
        self.posted: list[str] = []

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        self.posted.extend(connection_ids)
        return [self.outcomes.get(cid, Outcome.DELIVERED) for cid in connection_ids]

    def delete_connection(self, connection_id: str) -> Outcome:
        return Outcome.GONE


def test_report_counts_every_outcome(realtime: Any) -> None:
    add(realtime, "alice", "a1", "a2", "a3", "a4")
    transport = ScriptedTransport({"a2": Outcome.GONE, "a3": Outcome.FAILED})
    report = Notifier(realtime.connections, transport).notify("alice", "jobs-updated")
    assert report == DeliveryReport(delivered=2, gone=1, failed=1)
    assert sorted(realtime.connections.connection_ids_of("alice")) == ["a1", "a3", "a4"]


def test_a_failing_lookup_is_reported_not_raised(realtime: Any) -> None:
    class BrokenStore:
        def connection_times_of(self, user_id: str) -> list[tuple[str, int]]:
            if user_id == "broken":
                raise RuntimeError("throttled")
            return [("ok-1", 1_700_000_000_000)]

        def remove_many(self, ids: list[str]) -> None:
            pass

    transport = ScriptedTransport({})
    report = Notifier(BrokenStore(), transport).notify_users(["broken", "fine"], "jobs-updated")  # type: ignore[arg-type]
    assert report == DeliveryReport(delivered=1, gone=0, failed=1)
    assert transport.posted == ["ok-1"]
