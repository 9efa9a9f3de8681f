"""Chat over REST: who gets `chat-messages-updated`, conversations, the unread badge, bad input.

Every request carries a real RSA-signed token; DynamoDB and the Management API run in moto.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.connections import Connection
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.dynamodb import CountingDynamoDB
from chalice_realtime.testing.events import connect
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received

from chalicelib.messages import Chat, conversation_key, message_text
from chalicelib.pagination import encode_cursor
from testsupport.api import RestApi

EVENT = {"event": "chat-messages-updated"}
START_MS = 1_700_000_000_000


@pytest.fixture(autouse=True)  # before `client`: the app's components are built from it
def dynamodb(services: Any) -> CountingDynamoDB:
    counting = CountingDynamoDB(services.dynamodb)
    # Installed before anything is built from it, so every app call goes through the counter.
    services.dynamodb = services.realtime.dynamodb = counting
    clock = FakeClock(START_MS / 1000, tick=0.001)  # each message 1 ms after the last
    services.chat = Chat(services.settings.messages_table, counting, services.notifier, clock=clock)
    return counting


class Api(RestApi):
    """The chat routes, as a given user."""

    def send(self, uid: str, to: Any, text: Any) -> Any:
        return self.post(uid, "/messages", json.dumps({"to": to, "text": text}))

    def conversation(self, uid: str, query: str) -> dict[str, Any]:
        response = self.get(uid, f"/messages?{query}")
        assert response.status_code == 200, response.body
        return dict(json.loads(response.body))

    def unread(self, uid: str) -> dict[str, Any]:
        response = self.get(uid, "/messages/unread-count")
        assert response.status_code == 200, response.body
        return dict(json.loads(response.body))

    def read(self, uid: str, peer: str) -> dict[str, Any]:
        response = self.post(uid, "/messages/read", json.dumps({"with": peer}))
        assert response.status_code == 200, response.body
        return dict(json.loads(response.body))


@pytest.fixture
def api(client: Client, tokens: TokenFactory) -> Api:
    return Api(client, tokens)


def table_items(aws: dict[str, Any], services: Any) -> list[dict[str, Any]]:
    # The test's own look at the whole table; the app itself never scans.
    return list(aws["dynamodb"].scan(TableName=services.settings.messages_table)["Items"])


def texts(page: dict[str, Any]) -> list[str]:
    return [message["text"] for message in page["messages"]]


# ---------------------------------------------------------------- sending and notifying


def test_a_message_is_stored_and_both_sides_sessions_get_exactly_the_event(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    connect(client, tokens, "alice", "a1", "a2")
    connect(client, tokens, "bob", "b1", "b2")
    connect(client, tokens, "carol", "c1")

    response = api.send("alice", "bob", "hello bob")

    assert response.status_code == 201
    message = json.loads(response.body)
    assert message == {
        "message_id": message["message_id"],
        "from": "alice",
        "to": "bob",
        "text": "hello bob",
        "sent_at": "2023-11-14T22:13:20.000Z",
    }
    for cid in ("a1", "a2", "b1", "b2"):
        assert received(management_api, cid) == [EVENT]
    assert received(management_api, "c1") == []
    assert api.conversation("bob", "with=alice") == {"messages": [message], "next_cursor": None}
    assert api.conversation("alice", "with=bob") == {"messages": [message], "next_cursor": None}


def test_text_is_stripped_and_counted_in_characters_not_bytes(api: Api) -> None:
    assert json.loads(api.send("alice", "bob", "  hi there \n").body)["text"] == "hi there"
    emoji = "\N{GRINNING FACE}" * 2000  # 8000 UTF-8 bytes, 2000 characters
    assert api.send("alice", "bob", emoji).status_code == 201
    assert api.send("alice", "bob", " " + "x" * 2000 + "\n").status_code == 201
    assert texts(api.conversation("bob", "with=alice"))[:2] == ["x" * 2000, emoji]


def test_conversations_are_private_to_their_two_users(api: Api) -> None:
    api.send("alice", "bob", "alice to bob")
    api.send("bob", "alice", "bob to alice")
    api.send("carol", "bob", "carol to bob")

    assert texts(api.conversation("alice", "with=bob")) == ["bob to alice", "alice to bob"]
    assert texts(api.conversation("carol", "with=bob")) == ["carol to bob"]
    assert texts(api.conversation("carol", "with=alice")) == []
    assert texts(api.conversation("bob", "with=carol")) == ["carol to bob"]


# ---------------------------------------------------------------- unread badge


def test_unread_count_rises_for_the_recipient_only_and_read_resets_it(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    connect(client, tokens, "alice", "a1")
    connect(client, tokens, "bob", "b1", "b2")
    connect(client, tokens, "carol", "c1")
    for text in ("one", "two", "three"):
        api.send("alice", "bob", text)
    api.send("carol", "bob", "from carol")

    assert api.unread("bob") == {"unread": 4, "by_user": {"alice": 3, "carol": 1}}
    assert api.unread("alice") == {"unread": 0, "by_user": {}}
    assert api.unread("carol") == {"unread": 0, "by_user": {}}

    before = {cid: len(received(management_api, cid)) for cid in ("a1", "b1", "b2", "c1")}
    assert api.read("bob", "alice") == {"with": "alice", "marked_read": 3}

    assert api.unread("bob") == {"unread": 1, "by_user": {"carol": 1}}
    assert received(management_api, "b1")[before["b1"] :] == [EVENT]
    assert received(management_api, "b2")[before["b2"] :] == [EVENT]
    assert len(received(management_api, "a1")) == before["a1"]
    assert len(received(management_api, "c1")) == before["c1"]


def test_marking_an_already_read_conversation_notifies_nobody(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    connect(client, tokens, "bob", "b1")
    api.send("alice", "bob", "hi")
    api.read("bob", "alice")
    frames = len(received(management_api, "b1"))

    # A tab that marks read after every refetch must not start a refetch loop between tabs.
    assert api.read("bob", "alice") == {"with": "alice", "marked_read": 0}
    assert api.read("bob", "nobody-yet") == {"with": "nobody-yet", "marked_read": 0}
    assert len(received(management_api, "b1")) == frames


def test_new_messages_after_reading_count_again(api: Api) -> None:
    api.send("alice", "bob", "1")
    api.read("bob", "alice")
    api.send("alice", "bob", "2")
    assert api.unread("bob") == {"unread": 1, "by_user": {"alice": 1}}


# ---------------------------------------------------------------- pagination


def test_pages_run_newest_first_and_the_last_has_no_cursor(api: Api) -> None:
    for n in range(1, 6):
        api.send("alice" if n % 2 else "bob", "bob" if n % 2 else "alice", f"m{n}")

    seen: list[str] = []
    query = "with=alice&limit=2"
    pages = 0
    while True:
        page = api.conversation("bob", query)
        pages += 1
        seen += texts(page)
        if page["next_cursor"] is None:
            break
        query = f"with=alice&limit=2&cursor={page['next_cursor']}"
    assert seen == ["m5", "m4", "m3", "m2", "m1"]
    assert pages == 3

    exact = api.conversation("bob", "with=alice&limit=5")
    assert texts(exact) == ["m5", "m4", "m3", "m2", "m1"]
    assert exact["next_cursor"] is None
    assert len(api.conversation("bob", "with=alice")["messages"]) == 5  # default limit 20


def tampered(cursor: str, **changes: str) -> str:
    key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    key.update({name: {"S": value} for name, value in changes.items()})
    encoded = encode_cursor(key)
    assert encoded is not None
    return encoded


def test_a_cursor_only_pages_within_the_callers_own_conversation(api: Api) -> None:
    for n in range(3):
        api.send("alice", "bob", f"ab{n}")
        api.send("alice", "carol", f"ac{n}")
    cursor = api.conversation("alice", "with=bob&limit=1")["next_cursor"]
    assert cursor

    other_conversation = tampered(cursor, pk=conversation_key("alice", "carol"))
    not_a_message = tampered(cursor, sk="peer#bob")
    refused = {
        "another conversation's partition": ("alice", f"with=bob&cursor={other_conversation}"),
        "someone else replaying alice's cursor": ("carol", f"with=bob&cursor={cursor}"),
        "alice's cursor on her other conversation": ("alice", f"with=carol&cursor={cursor}"),
        "sort key outside the messages": ("alice", f"with=bob&cursor={not_a_message}"),
        "garbage": ("alice", "with=bob&cursor=%25%25not-base64"),
        "base64 of garbage": ("alice", "with=bob&cursor=bm90IGpzb24"),
    }
    for case, (uid, query) in refused.items():
        response = api.get(uid, f"/messages?{query}")
        assert response.status_code == 400, case
        assert json.loads(response.body)["Message"] == "invalid cursor", case


# ---------------------------------------------------------------- bad input

BAD_SENDS: dict[str, tuple[str, str]] = {
    "malformed JSON": ('{"to": "bob", "text": ', "Error Parsing JSON"),
    "a JSON array": ('["bob", "hi"]', "the request body must be a JSON object"),
    "a JSON string": ('"hi"', "the request body must be a JSON object"),
    "JSON null": ("null", "the request body must be a JSON object"),
    "a number": ("42", "the request body must be a JSON object"),
    "missing to": ('{"text": "hi"}', "to must be"),
    "missing text": ('{"to": "bob"}', "text must be a string"),
    "to is a number": ('{"to": 7, "text": "hi"}', "to must be"),
    "to is a list": ('{"to": ["bob"], "text": "hi"}', "to must be"),
    "to is empty": ('{"to": "", "text": "hi"}', "to must be"),
    "to has a '#'": ('{"to": "bob#x", "text": "hi"}', "to must be"),
    "to has a slash": ('{"to": "../bob", "text": "hi"}', "to must be"),
    "to is too long": (json.dumps({"to": "b" * 129, "text": "hi"}), "to must be"),
    "text is a number": ('{"to": "bob", "text": 5}', "text must be a string"),
    "text is null": ('{"to": "bob", "text": null}', "text must be a string"),
    "text is an object": ('{"to": "bob", "text": {"a": 1}}', "text must be a string"),
    "empty text": ('{"to": "bob", "text": ""}', "text must not be empty"),
    "whitespace-only text": ('{"to": "bob", "text": " \\n\\t "}', "text must not be empty"),
    "2001 characters": (json.dumps({"to": "bob", "text": "x" * 2001}), "text must be 1-2000 characters"),
    "lone surrogate": ('{"to": "bob", "text": "a\\ud800b"}', "text must be valid Unicode"),
    "messaging yourself": ('{"to": "alice", "text": "hi"}', "to must be another user"),
}


@pytest.mark.parametrize("case", BAD_SENDS)
def test_bad_sends_are_400_with_a_message_and_write_nothing(
    case: str, api: Api, aws: Any, services: Any, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    connect(client, tokens, "alice", "a1")
    connect(client, tokens, "bob", "b1")
    body, message = BAD_SENDS[case]
    response = api.post("alice", "/messages", body)
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith(message)
    assert table_items(aws, services) == []
    assert received(management_api, "a1") == received(management_api, "b1") == []


BAD_CONVERSATION_QUERIES = {
    "no with": ("", "with must be"),
    "empty with": ("with=", "with must be"),
    "invalid with": ("with=bob%23x", "with must be"),
    "with yourself": ("with=alice", "with must be another user"),
    "limit 0": ("with=bob&limit=0", "limit must be"),
    "limit 101": ("with=bob&limit=101", "limit must be"),
    "limit not a number": ("with=bob&limit=ten", "limit must be"),
    "negative limit": ("with=bob&limit=-1", "limit must be"),
}


@pytest.mark.parametrize("case", BAD_CONVERSATION_QUERIES)
def test_bad_conversation_queries_are_400_with_a_message(case: str, api: Api) -> None:
    query, message = BAD_CONVERSATION_QUERIES[case]
    response = api.get("alice", f"/messages?{query}")
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith(message)


BAD_READS = {
    "malformed JSON": ("{", "Error Parsing JSON"),
    "a JSON array": ('["bob"]', "the request body must be a JSON object"),
    "missing with": ("{}", "with must be"),
    "with is a number": ('{"with": 3}', "with must be"),
    "with is null": ('{"with": null}', "with must be"),
    "with is invalid": ('{"with": "b o b"}', "with must be"),
    "with yourself": ('{"with": "bob"}', "with must be another user"),
}


@pytest.mark.parametrize("case", BAD_READS)
def test_bad_reads_are_400_and_change_nothing(
    case: str, api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    api.send("alice", "bob", "hi")
    connect(client, tokens, "bob", "b1")
    body, message = BAD_READS[case]
    response = api.post("bob", "/messages/read", body)
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith(message)
    assert api.unread("bob")["unread"] == 1
    assert received(management_api, "b1") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/messages"),
        ("GET", "/messages?with=bob"),
        ("GET", "/messages/unread-count"),
        ("POST", "/messages/read"),
    ],
)
def test_every_chat_route_needs_a_token(client: Client, method: str, path: str) -> None:
    response = client.http.request(method, path, headers={"Content-Type": "application/json"}, body=b"{}")
    assert response.status_code == 401


def test_a_caller_whose_uid_cannot_be_a_key_gets_400(api: Api, aws: Any, services: Any) -> None:
    # Firebase allows custom uids with any characters; '#' would break the key scheme.
    response = api.send("mallory#bob", "alice", "hi")
    assert response.status_code == 400
    assert table_items(aws, services) == []


# ---------------------------------------------------------------- DynamoDB access


def test_every_route_uses_keys_only_never_a_scan(
    api: Api, client: Client, tokens: TokenFactory, dynamodb: CountingDynamoDB
) -> None:
    connect(client, tokens, "bob", "b1")
    dynamodb.clear()

    api.send("alice", "bob", "hi")
    # The sender's request counted (one UpdateItem on its rate window's key), one transaction (message +
    # counter), then one connection Query per notified user.
    assert dynamodb.calls == ["update_item", "transact_write_items", "query", "query"]

    for do, expected in [
        (lambda: api.conversation("bob", "with=alice"), ["query"]),
        (lambda: api.unread("bob"), ["query"]),
        (lambda: api.read("bob", "alice"), ["delete_item", "query"]),
        (lambda: api.read("bob", "alice"), ["delete_item"]),
    ]:
        dynamodb.clear()
        do()
        assert dynamodb.calls == expected


def test_the_unread_badge_reads_every_page_of_counters(services: Any, dynamodb: CountingDynamoDB) -> None:
    chat = services.chat
    for n in range(5):
        chat.send(f"user{n}", "bob", "hi")
    paged = CountingDynamoDB(dynamodb.inner, page_size=2)
    unread = Chat(services.settings.messages_table, paged, services.notifier).unread("bob")
    assert unread.total == 5
    assert paged.calls == ["query"] * 3


# ---------------------------------------------------------------- pure parts


def test_both_users_share_one_conversation_partition() -> None:
    assert conversation_key("bob", "alice") == conversation_key("alice", "bob") == "conv#alice#bob"


@pytest.mark.parametrize(
    ("raw", "stored"), [("x", "x"), ("  x  ", "x"), ("a\nb", "a\nb"), ("é" * 2000, "é" * 2000)]
)
def test_message_text_keeps_inner_text(raw: str, stored: str) -> None:
    assert message_text(raw) == stored


def test_connections_added_directly_are_notified_too(services: Any, management_api: Any) -> None:
    # Chat relies only on the connection store, whoever filled it.
    services.realtime.connections.add(Connection("x1", "bob", START_MS))
    services.chat.send("alice", "bob", "hi")
    assert received(management_api, "x1") == [EVENT]
