"""Group chat rooms: an owner, members, messages, and who is here now, over the core's topics.

Every room is the topic `room:<room id>`: posting a message notifies it with
`room-messages-updated`, and its members' browsers subscribe to it while the room is on screen.
`Rooms.may_subscribe` is the app's topic authorizer (`TOPIC_AUTHORIZER=chalicelib.services:may_subscribe`
calls it): members of room 42 may subscribe to `room:42`, nobody else, and no other topic.

Keys (table `ROOMS_TABLE`, string `pk` / `sk`):

- the room: `pk = room#<room id>`, `sk = meta`, with `name`, `owner`, `created_at`, `members` (a count);
- a member: `pk = room#<room id>`, `sk = member#<user id>`;
- a message: `pk = room#<room id>`, `sk = msg#<message id>` (ids start with the send time, so newest
  first is one Query read backwards);
- the caller's rooms: `pk = rooms-of#<user id>`, `sk = room#<room id>`, with the room's `name`.

Adding and removing a member is one transaction over the member row, the caller's-rooms row and the
room's member count (at most `MAX_MEMBERS`). A room the caller is not a member of is reported as not
existing (404), so room ids cannot be probed. Never a Scan.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError
from chalice_realtime import DeliveryReport, validate_user_id

from chalicelib import aws
from chalicelib.clock import SYSTEM_CLOCK, Clock, epoch_ms, iso_utc
from chalicelib.errors import Conflict, NotFound, RequestRefused
from chalicelib.messages import message_text, new_message_id
from chalicelib.pagination import Listing, Page, query_page

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

MESSAGES_UPDATED = "room-messages-updated"
PRESENCE_UPDATED = "presence-updated"
MAX_MEMBERS = 100
MAX_NAME_CHARACTERS = 100
TOPIC_PREFIX = "room:"
ROOM_ID = re.compile(r"[0-9a-f]{16}")

ROOM_PREFIX = "room#"
ROOMS_OF_PREFIX = "rooms-of#"
ROOM_SORT_KEY = "meta"  # sorts after `member#...` and before `msg#...`: one Query reads room + members
MEMBER_PREFIX = "member#"
MESSAGE_PREFIX = "msg#"
# `GET /rooms/{id}/messages`: cursors name a message of that room (never its members or the room row).
MESSAGES_OF_ROOM = Listing(
    ("pk", "sk"), accepts_start=lambda key: key["sk"].get("S", "").startswith(MESSAGE_PREFIX)
)
# `GET /rooms`: cursors name one of the caller's rooms.
ROOMS_OF_USER = Listing(
    ("pk", "sk"), accepts_start=lambda key: key["sk"].get("S", "").startswith(ROOM_PREFIX)
)


class InvalidRoomRequest(RequestRefused):
    """Input a user sent that rooms cannot accept; the message says why (a 400)."""


class RoomNotFound(NotFound):
    """No room of the caller's has this id: unknown, or one they are not a member of (the same 404)."""

    def __init__(self, what: str = "room") -> None:
        super().__init__(f"{what} not found")


class RoomFull(Conflict):
    """The room has `MAX_MEMBERS` members already (409)."""

    def __init__(self) -> None:
        super().__init__(f"the room is full: at most {MAX_MEMBERS} members")


class RoomTopics(Protocol):
    """What rooms need of the core's topics (`chalice_realtime.Topics`)."""

    def notify_topic(self, topic: str, event_key: str) -> DeliveryReport: ...

    def unsubscribe_user(self, topic: str, user_id: str) -> int: ...

    def members(self, topic: str) -> list[str]: ...


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    owner: str
    created_at: str  # ISO 8601 UTC, milliseconds

    def to_json(self) -> dict[str, str]:
        return {
            "room_id": self.room_id,
            "name": self.name,
            "owner": self.owner,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class RoomSummary:
    """One of the caller's rooms, as `GET /rooms` lists it."""

    room_id: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"room_id": self.room_id, "name": self.name}


@dataclass(frozen=True)
class RoomMessage:
    message_id: str
    room_id: str
    sender: str
    text: str
    sent_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "message_id": self.message_id,
            "room_id": self.room_id,
            "from": self.sender,
            "text": self.text,
            "sent_at": self.sent_at,
        }


def topic_of(room_id: str) -> str:
    """The topic a room's frames go to: `room:<room id>`."""
    return TOPIC_PREFIX + room_id


def room_name(value: object) -> str:
    """1-100 characters once stripped of surrounding whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRoomRequest("name must be a non-empty string")
    name = value.strip()
    if len(name) > MAX_NAME_CHARACTERS:
        raise InvalidRoomRequest(f"name must be 1-{MAX_NAME_CHARACTERS} characters, not {len(name)}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRoomRequest("name must be valid Unicode (no lone surrogates)") from exc
    return name


def member_id(value: object) -> str:
    try:
        return validate_user_id(value, "user_id")
    except ValueError as exc:
        raise InvalidRoomRequest(str(exc)) from exc


class Rooms:
    """Rooms, their members and messages; members hear of new messages through the room's topic.

    rooms = Rooms(table_name, dynamodb_client, topics)
    room = rooms.create("alice", "Standup")
    rooms.add_member("alice", room.room_id, "bob")       # True (None: no such room for alice)
    rooms.post("bob", room.room_id, "hello")             # notifies room:<id> with room-messages-updated
    rooms.presence("bob", room.room_id)                  # ['alice', 'bob'] while both have it open
    """

    def __init__(
        self, table_name: str, dynamodb: DynamoDBClient, topics: RoomTopics, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._topics = topics
        self._clock = clock

    # ------------------------------------------------------------ rooms and members

    def create(self, owner: str, name: object) -> Room:
        """A new room owned by `owner`, who is its first member (one transaction)."""
        owner = member_id(owner)
        name = room_name(name)
        now_ms = epoch_ms(self._clock.now())
        room = Room(secrets.token_hex(8), name, owner, iso_utc(now_ms))
        self._dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **self._room_key(room.room_id),
                            "name": {"S": name},
                            "owner": {"S": owner},
                            "created_at": {"S": room.created_at},
                            "members": {"N": "1"},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": self._table, "Item": self._member_item(room.room_id, owner, now_ms)}},
                {"Put": {"TableName": self._table, "Item": self._membership_item(owner, room.room_id, name)}},
            ]
        )
        return room

    def rooms_of(
        self, caller: str, *, limit: str | None = None, cursor: str | None = None
    ) -> Page[RoomSummary]:
        """The caller's rooms (owned or joined), by room id, one Query per page."""
        partition = {"pk": {"S": ROOMS_OF_PREFIX + member_id(caller)}}
        query = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :room)",
            "ExpressionAttributeValues": {":pk": partition["pk"], ":room": {"S": ROOM_PREFIX}},
        }
        page = query_page(self._dynamodb, query, ROOMS_OF_USER, partition, limit=limit, cursor=cursor)
        return page.map(
            lambda item: RoomSummary(item["sk"]["S"].removeprefix(ROOM_PREFIX), item["name"]["S"])
        )

    def get(self, caller: str, room_id: str) -> tuple[Room, list[str]]:
        """The room and its members' ids, for a member of it; `RoomNotFound` otherwise."""
        self._require_member(caller, room_id)
        items = self._partition(room_id)
        room_item = next((item for item in items if item["sk"]["S"] == ROOM_SORT_KEY), None)
        if room_item is None:
            raise RoomNotFound()
        members = [
            item["sk"]["S"].removeprefix(MEMBER_PREFIX)
            for item in items
            if item["sk"]["S"].startswith(MEMBER_PREFIX)
        ]
        room = Room(room_id, room_item["name"]["S"], room_item["owner"]["S"], room_item["created_at"]["S"])
        return room, members

    def add_member(self, caller: str, room_id: str, user_id: object) -> bool:
        """The owner adds `user_id`; True if added, False if already a member. `RoomNotFound` if the caller
        owns no such room, `InvalidRoomRequest` for a bad user id, `RoomFull` past `MAX_MEMBERS`."""
        new_member = member_id(user_id)
        room = self._room_owned_by(caller, room_id)
        now_ms = epoch_ms(self._clock.now())
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._member_item(room_id, new_member, now_ms),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._membership_item(new_member, room_id, room.name),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._room_key(room_id),
                            "UpdateExpression": "ADD members :one",
                            "ConditionExpression": "members < :max",
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":max": {"N": str(MAX_MEMBERS)},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = _cancellation_reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return False
            if reasons[2:3] == ["ConditionalCheckFailed"]:
                raise RoomFull() from None
            raise
        # Members' pages show who belongs; they refetch on the room's presence key.
        self._topics.notify_topic(topic_of(room_id), PRESENCE_UPDATED)
        return True

    def remove_member(self, caller: str, room_id: str, user_id: str) -> None:
        """The owner removes a member, whose subscriptions to the room end at once. `RoomNotFound` if the
        caller owns no such room or `user_id` is not a member; `InvalidRoomRequest` for the owner."""
        room = self._room_owned_by(caller, room_id)
        try:
            validate_user_id(user_id)
        except ValueError:
            raise RoomNotFound("member") from None
        if user_id == room.owner:
            raise InvalidRoomRequest("the owner cannot be removed from their room")
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": self._member_key(room_id, user_id),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {"Delete": {"TableName": self._table, "Key": self._membership_key(user_id, room_id)}},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._room_key(room_id),
                            "UpdateExpression": "ADD members :minus_one",
                            "ExpressionAttributeValues": {":minus_one": {"N": "-1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _cancellation_reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                raise RoomNotFound("member") from None
            raise
        # After the member row is gone, so a re-subscribe racing this is refused by the authorizer.
        if self._topics.unsubscribe_user(topic_of(room_id), user_id) == 0:
            self._topics.notify_topic(topic_of(room_id), PRESENCE_UPDATED)

    def is_member(self, user_id: str, room_id: str) -> bool:
        """Whether `user_id` is a member of the room (one strongly consistent GetItem)."""
        if not ROOM_ID.fullmatch(room_id):
            return False
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key=self._member_key(room_id, user_id),
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in response

    def may_subscribe(self, user_id: str, topic: str) -> bool:
        """The topic authorizer: `room:<id>` for a member of room <id>; every other topic refused."""
        return topic.startswith(TOPIC_PREFIX) and self.is_member(user_id, topic.removeprefix(TOPIC_PREFIX))

    # ------------------------------------------------------------ messages and presence

    def post(self, sender: str, room_id: str, text: object) -> RoomMessage:
        """Store a member's message and notify the room's topic; `RoomNotFound` for a non-member."""
        body = message_text(text)
        self._require_member(sender, room_id)
        now_ms = epoch_ms(self._clock.now())
        message = RoomMessage(new_message_id(now_ms), room_id, sender, body, iso_utc(now_ms))
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": ROOM_PREFIX + room_id},
                "sk": {"S": MESSAGE_PREFIX + message.message_id},
                "sender": {"S": sender},
                "text": {"S": body},
                "sent_at": {"S": message.sent_at},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
        self._topics.notify_topic(topic_of(room_id), MESSAGES_UPDATED)
        return message

    def messages(
        self, caller: str, room_id: str, *, limit: str | None = None, cursor: str | None = None
    ) -> Page[RoomMessage]:
        """The room's messages newest first, one Query per page, for a member; `RoomNotFound` otherwise."""
        self._require_member(caller, room_id)
        partition = {"pk": {"S": ROOM_PREFIX + room_id}}
        query = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :msg)",
            "ExpressionAttributeValues": {":pk": partition["pk"], ":msg": {"S": MESSAGE_PREFIX}},
            "ScanIndexForward": False,
        }
        page = query_page(self._dynamodb, query, MESSAGES_OF_ROOM, partition, limit=limit, cursor=cursor)
        return page.map(lambda item: self._message(room_id, item))

    def presence(self, caller: str, room_id: str) -> list[str]:
        """The members subscribed to the room right now, for a member; `RoomNotFound` otherwise."""
        _, members = self.get(caller, room_id)
        # A subscription is ended when its member is removed; the intersection covers the moment between.
        return [user for user in self._topics.members(topic_of(room_id)) if user in set(members)]

    # ------------------------------------------------------------ internals

    def _require_member(self, user_id: str, room_id: str) -> None:
        if not self.is_member(user_id, room_id):
            raise RoomNotFound()

    def _room_owned_by(self, caller: str, room_id: str) -> Room:
        """The room if `caller` owns it; `RoomNotFound` otherwise (a member who does not own it included)."""
        if not ROOM_ID.fullmatch(room_id):
            raise RoomNotFound()
        item = self._dynamodb.get_item(
            TableName=self._table, Key=self._room_key(room_id), ConsistentRead=True
        ).get("Item")
        if item is None or item["owner"]["S"] != caller:
            raise RoomNotFound()
        return Room(room_id, item["name"]["S"], item["owner"]["S"], item["created_at"]["S"])

    def _partition(self, room_id: str) -> list[dict[str, Any]]:
        """The room row and its member rows (at most `MAX_MEMBERS` + 1 small items: one Query page)."""
        response = self._dynamodb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :member AND :room",
            ExpressionAttributeValues={
                ":pk": {"S": ROOM_PREFIX + room_id},
                ":member": {"S": MEMBER_PREFIX},
                ":room": {"S": ROOM_SORT_KEY},
            },
            ConsistentRead=True,
        )
        return list(response.get("Items", []))

    @staticmethod
    def _room_key(room_id: str) -> dict[str, Any]:
        return {"pk": {"S": ROOM_PREFIX + room_id}, "sk": {"S": ROOM_SORT_KEY}}

    @staticmethod
    def _member_key(room_id: str, user_id: str) -> dict[str, Any]:
        return {"pk": {"S": ROOM_PREFIX + room_id}, "sk": {"S": MEMBER_PREFIX + user_id}}

    @staticmethod
    def _membership_key(user_id: str, room_id: str) -> dict[str, Any]:
        return {"pk": {"S": ROOMS_OF_PREFIX + user_id}, "sk": {"S": ROOM_PREFIX + room_id}}

    def _member_item(self, room_id: str, user_id: str, now_ms: int) -> dict[str, Any]:
        return {**self._member_key(room_id, user_id), "added_at": {"N": str(now_ms)}}

    def _membership_item(self, user_id: str, room_id: str, name: str) -> dict[str, Any]:
        return {**self._membership_key(user_id, room_id), "name": {"S": name}}

    @staticmethod
    def _message(room_id: str, item: Mapping[str, Any]) -> RoomMessage:
        message_id = item["sk"]["S"].removeprefix(MESSAGE_PREFIX)
        return RoomMessage(message_id, room_id, item["sender"]["S"], item["text"]["S"], item["sent_at"]["S"])


def _cancellation_reasons(exc: ClientError) -> list[str]:
    """The per-item codes of a cancelled transaction ('None' for items that passed); [] for other errors."""
    if aws.error_code(exc) != "TransactionCanceledException":
        return []
    return [str(reason.get("Code", "")) for reason in exc.response.get("CancellationReasons", [])]
