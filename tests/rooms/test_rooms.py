"""Group chat rooms over REST and the WebSocket handlers: members, messages, the room's topic, presence.

Every request carries a real RSA-signed token; DynamoDB and the Management API run in moto, and the
WebSocket handlers are invoked as API Gateway would (the authorizer found through `TOPIC_AUTHORIZER`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.events import connect, websocket_event
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received

from chalicelib.limits import CHANGE_ROOMS, SEND_ROOM_MESSAGE, Rate, RequestRates
from chalicelib.rooms import MAX_MEMBERS
from testsupport.api import RestApi

MESSAGES = "room-messages-updated"


class Api(RestApi):
    """The rooms routes, as a given user."""

    def create(self, uid: str, name: str = "Standup") -> str:
        status, body = self.call(uid, "POST", "/rooms", {"name": name})
        assert status == 201, body
        return str(body["room_id"])

    def add(self, owner: str, room_id: str, uid: str) -> tuple[int, Any]:
        return self.call(owner, "POST", f"/rooms/{room_id}/members", {"user_id": uid})

    def post_message(self, uid: str, room_id: str, text: str = "hello") -> tuple[int, Any]:
        return self.call(uid, "POST", f"/rooms/{room_id}/messages", {"text": text})


@pytest.fixture
def api(client: Client, tokens: TokenFactory) -> Api:
    return Api(client, tokens)


def send(client: Client, connection_id: str, message: Any) -> None:
    body = message if isinstance(message, str) else json.dumps(message)
    event = websocket_event("$default", connection_id, body=body)
    assert client.lambda_.invoke("ws_message", event).payload["statusCode"] == 200


def subscribe(client: Client, connection_id: str, room_id: str) -> None:
    send(client, connection_id, {"action": "subscribe", "topic": f"room:{room_id}"})


def keys(management_api: Any, connection_id: str) -> list[tuple[str, str | None]]:
    return [(frame["event"], frame.get("topic")) for frame in received(management_api, connection_id)]


# ---------------------------------------------------------------- rooms and members


def test_the_creator_owns_the_room_and_is_its_first_member(api: Api) -> None:
    room_id = api.create("alice", "  Standup  ")
    room = api.ok("alice", f"/rooms/{room_id}")
    assert room["name"] == "Standup"
    assert room["owner"] == "alice"
    assert room["members"] == ["alice"]
    assert api.ok("alice", "/rooms") == {
        "rooms": [{"room_id": room_id, "name": "Standup"}],
        "next_cursor": None,
    }


def test_the_owner_adds_and_removes_members_and_the_room_shows_in_their_list(api: Api) -> None:
    room_id = api.create("alice")
    assert api.add("alice", room_id, "bob") == (200, {"room_id": room_id, "user_id": "bob", "added": True})
    assert api.add("alice", room_id, "bob")[1]["added"] is False
    assert api.ok("bob", f"/rooms/{room_id}")["members"] == ["alice", "bob"]
    assert [r["room_id"] for r in api.ok("bob", "/rooms")["rooms"]] == [room_id]
    assert api.call("alice", "DELETE", f"/rooms/{room_id}/members/bob")[0] == 200
    assert api.ok("bob", "/rooms")["rooms"] == []
    assert api.call("bob", "GET", f"/rooms/{room_id}")[0] == 404


def test_a_room_the_caller_cannot_see_is_404_never_403(api: Api) -> None:
    room_id = api.create("alice")
    api.add("alice", room_id, "bob")
    for method, path, body in (
        ("GET", f"/rooms/{room_id}", None),
        ("GET", f"/rooms/{room_id}/messages", None),
        ("GET", f"/rooms/{room_id}/presence", None),
        ("POST", f"/rooms/{room_id}/messages", {"text": "hi"}),
        ("POST", f"/rooms/{room_id}/members", {"user_id": "mallory"}),
        ("DELETE", f"/rooms/{room_id}/members/bob", None),
        ("GET", "/rooms/0123456789abcdef", None),
        ("GET", "/rooms/not-a-room-id", None),
    ):
        status, answer = api.call("mallory", method, path, body)
        assert status == 404, (method, path, answer)
    # A member who does not own the room cannot manage its members either, and is told the same.
    assert api.add("bob", room_id, "mallory")[0] == 404
    assert api.call("bob", "DELETE", f"/rooms/{room_id}/members/alice")[0] == 404
    assert api.ok("alice", f"/rooms/{room_id}")["members"] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rooms", {"name": ""}),
        ("/rooms", {"name": "x" * 101}),
        ("/rooms", {"name": 42}),
        ("/rooms", ["not", "an", "object"]),
        ("/rooms/{room}/members", {"user_id": "bad id!"}),
        ("/rooms/{room}/members", {}),
        ("/rooms/{room}/messages", {"text": ""}),
        ("/rooms/{room}/messages", {"text": "x" * 2001}),
        ("/rooms/{room}/messages", {"text": None}),
    ],
)
def test_bad_input_is_a_400_with_a_reason(api: Api, path: str, body: Any) -> None:
    room_id = api.create("alice")
    status, answer = api.call("alice", "POST", path.format(room=room_id), body)
    assert status == 400, answer
    assert answer["Message"]


def test_the_owner_cannot_be_removed(api: Api) -> None:
    room_id = api.create("alice")
    status, answer = api.call("alice", "DELETE", f"/rooms/{room_id}/members/alice")
    assert status == 400
    assert "owner" in answer["Message"]


def test_a_room_holds_at_most_max_members(api: Api, services: Any) -> None:
    room_id = api.create("alice")
    rooms_table = services.settings.rooms_table
    # The count as MAX_MEMBERS - 1 adds would leave it, without making them (the rate counts each add).
    services.dynamodb.update_item(
        TableName=rooms_table,
        Key={"pk": {"S": f"room#{room_id}"}, "sk": {"S": "meta"}},
        UpdateExpression="SET members = :n",
        ExpressionAttributeValues={":n": {"N": str(MAX_MEMBERS)}},
    )
    status, answer = api.add("alice", room_id, "bob")
    assert status == 409, answer
    assert api.ok("alice", f"/rooms/{room_id}")["members"] == ["alice"]


# ---------------------------------------------------------------- messages and the room's topic


def test_members_subscribe_to_the_room_and_hear_each_post_strangers_are_refused(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    room_id = api.create("alice")
    api.add("alice", room_id, "bob")
    topic = f"room:{room_id}"
    for uid, cid in (("alice", "a1"), ("bob", "b1"), ("mallory", "m1")):
        connect(client, tokens, uid, cid)
        subscribe(client, cid, room_id)

    assert api.post_message("bob", room_id, "hi all")[0] == 201

    assert ("subscribed", topic) in keys(management_api, "a1")
    assert keys(management_api, "b1")[0] == ("subscribed", topic)
    assert keys(management_api, "a1")[-1] == (MESSAGES, topic)
    assert keys(management_api, "b1")[-1] == (MESSAGES, topic)
    assert keys(management_api, "m1") == [("subscribe-refused", topic)]
    page = api.ok("alice", f"/rooms/{room_id}/messages")
    assert [(m["from"], m["text"]) for m in page["messages"]] == [("bob", "hi all")]


def test_only_room_topics_of_ones_own_rooms_are_granted(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    room_id = api.create("alice")
    connect(client, tokens, "alice", "a1")
    for topic in ("user:alice", f"room:{room_id}x", "room:", "jobs"):
        send(client, "a1", {"action": "subscribe", "topic": topic})
    assert [key for key, _ in keys(management_api, "a1")] == ["subscribe-refused"] * 4


def test_a_removed_member_is_unsubscribed_hears_nothing_more_and_cannot_subscribe_again(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    room_id = api.create("alice")
    api.add("alice", room_id, "bob")
    topic = f"room:{room_id}"
    connect(client, tokens, "bob", "b1")
    subscribe(client, "b1", room_id)

    assert api.call("alice", "DELETE", f"/rooms/{room_id}/members/bob")[0] == 200
    api.post_message("alice", room_id)
    subscribe(client, "b1", room_id)  # e.g. the re-subscribe after a reconnect

    heard = keys(management_api, "b1")
    assert ("unsubscribed", topic) in heard
    assert (MESSAGES, topic) not in heard
    assert heard[-1] == ("subscribe-refused", topic)


def test_messages_are_paged_newest_first(api: Api) -> None:
    room_id = api.create("alice")
    for n in range(5):
        api.post_message("alice", room_id, f"m{n}")
    first = api.ok("alice", f"/rooms/{room_id}/messages?limit=2")
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"]
    second = api.ok("alice", f"/rooms/{room_id}/messages?limit=2&cursor={first['next_cursor']}")
    assert [m["text"] for m in second["messages"]] == ["m2", "m1"]
    other = api.create("alice", "Other")
    status, _ = api.call("alice", "GET", f"/rooms/{other}/messages?cursor={first['next_cursor']}")
    assert status == 400  # a cursor of another room's listing


# ---------------------------------------------------------------- presence


def test_presence_lists_the_members_with_the_room_open_and_they_leave_when_the_socket_closes(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any
) -> None:
    room_id = api.create("alice")
    api.add("alice", room_id, "bob")
    api.add("alice", room_id, "carol")
    connect(client, tokens, "alice", "a1")
    connect(client, tokens, "bob", "b1")
    subscribe(client, "a1", room_id)
    subscribe(client, "b1", room_id)
    assert api.ok("carol", f"/rooms/{room_id}/presence") == {"users": ["alice", "bob"]}

    event = websocket_event("$disconnect", "b1")
    assert client.lambda_.invoke("ws_disconnect", event).payload["statusCode"] == 200

    assert api.ok("carol", f"/rooms/{room_id}/presence") == {"users": ["alice"]}
    assert keys(management_api, "a1")[-1] == ("presence-updated", f"room:{room_id}")


def test_room_posts_and_membership_changes_are_rate_limited(api: Api, services: Any) -> None:
    services.request_rates = RequestRates(
        services.settings.rate_limits_table,
        services.dynamodb,
        services.clock,
        {CHANGE_ROOMS: Rate(2, 60), SEND_ROOM_MESSAGE: Rate(1, 60)},
    )
    room_id = api.create("alice")
    api.add("alice", room_id, "bob")
    refused = api.client.http.post("/rooms", headers=api.headers("alice"), body=json.dumps({"name": "third"}))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert api.post_message("alice", room_id)[0] == 201
    assert api.post_message("alice", room_id)[0] == 429
    assert len(api.ok("alice", f"/rooms/{room_id}/messages")["messages"]) == 1
