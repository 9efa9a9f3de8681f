"""User-to-user chat: messages, conversations and the unread badge, in one DynamoDB table.

Keys (table `MESSAGES_TABLE`, string `pk` / `sk`):

- a message: `pk = conv#<uidA>#<uidB>` (the pair sorted, so both sides share one
  partition), `sk = msg#<message id>`; message ids start with the send time in
  milliseconds, so a conversation newest first is one Query, read backwards.
- an unread counter: `pk = unread#<recipient>`, `sk = peer#<sender>`, attribute
  `unread`. Sending ADDs 1 in the same transaction as the message Put, reading a
  conversation deletes that counter, and the badge is one Query on the caller's
  counter partition. Only non-zero counters exist, so that partition stays small.

Every access is a Query, a DeleteItem or a TransactWriteItems on keys; never a Scan.
User ids are validated before they reach a key, so `#` can never appear inside one.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalice_realtime import Notifies, validate_user_id

from chalicelib.clock import SYSTEM_CLOCK, Clock, epoch_ms, iso_utc
from chalicelib.errors import RequestRefused
from chalicelib.pagination import Listing, Page, query_page

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

EVENT_KEY = "chat-messages-updated"
MAX_TEXT_CHARACTERS = 2000

CONVERSATION_PREFIX = "conv#"
MESSAGE_PREFIX = "msg#"
UNREAD_PREFIX = "unread#"
PEER_PREFIX = "peer#"
# `GET /messages`: a conversation's messages, whose cursors name a message of it (never a counter).
MESSAGES_OF_CONVERSATION = Listing(
    ("pk", "sk"), accepts_start=lambda key: key["sk"].get("S", "").startswith(MESSAGE_PREFIX)
)


class InvalidChatRequest(RequestRefused):
    """Input a user sent that the chat cannot accept; the message says why (a 400)."""


@dataclass(frozen=True)
class Message:
    message_id: str
    sender: str
    recipient: str
    text: str
    sent_at: str  # ISO 8601 UTC, milliseconds: "2024-05-01T12:00:00.000Z"

    def to_json(self) -> dict[str, str]:
        """The message as the REST API shows it."""
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "to": self.recipient,
            "text": self.text,
            "sent_at": self.sent_at,
        }


@dataclass(frozen=True)
class Unread:
    total: int
    by_user: dict[str, int]


def user_id(value: object, field: str) -> str:
    """`validate_user_id`, reported as an `InvalidChatRequest` naming the field."""
    try:
        return validate_user_id(value, field)
    except ValueError as exc:
        raise InvalidChatRequest(str(exc)) from exc


def peer_of(caller: str, value: object, field: str) -> str:
    """The other user of a conversation: a valid uid that is not the caller's own."""
    peer = user_id(value, field)
    if peer == caller:
        raise InvalidChatRequest(f"{field} must be another user, not yourself")
    return peer


def message_text(value: object) -> str:
    """The text to store: leading and trailing whitespace stripped, then 1-2000 characters.

    Characters are Unicode code points (what `len` counts), not UTF-8 bytes.

    message_text("  hi \\n")  # 'hi'
    """
    if not isinstance(value, str):
        raise InvalidChatRequest("text must be a string")
    text = value.strip()
    if not text:
        raise InvalidChatRequest("text must not be empty")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise InvalidChatRequest(f"text must be 1-{MAX_TEXT_CHARACTERS} characters, not {len(text)}")
    try:
        # JSON may carry lone surrogates ("\ud800"); they cannot be stored as UTF-8.
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidChatRequest("text must be valid Unicode (no lone surrogates)") from exc
    return text


def conversation_key(user_a: str, user_b: str) -> str:
    """The partition both users' conversation lives in: `conv#<smaller uid>#<larger uid>`."""
    low, high = sorted((user_a, user_b))
    return f"{CONVERSATION_PREFIX}{low}#{high}"


def new_message_id(now_ms: int) -> str:
    """Time-sortable id: 13-digit milliseconds, then 16 random hex digits (ties stay unique)."""
    return f"{now_ms:013d}-{secrets.token_hex(8)}"


class Chat:
    """Sends and reads user-to-user messages and notifies both sides.

    chat = Chat(table_name, dynamodb_client, notifier)
    message = chat.send("alice", "bob", "hello")     # notifies bob and alice
    chat.conversation("bob", "alice").items           # (message,), newest first
    chat.unread("bob").total                          # 1
    chat.mark_read("bob", "alice")                    # 1 (counter reset, bob notified)
    """

    def __init__(
        self,
        table_name: str,
        dynamodb: DynamoDBClient,
        notifier: Notifies,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._notifier = notifier
        self._clock = clock

    def send(self, sender: str, to: object, text: object) -> Message:
        """Store a message and bump the recipient's unread counter in one transaction, then
        notify the recipient and every session of the sender with `chat-messages-updated`.

        Raises `InvalidChatRequest` (nothing written) for a bad recipient, yourself, or bad text.
        """
        sender = user_id(sender, "your user id")
        recipient = peer_of(sender, to, "to")
        body = message_text(text)
        now_ms = epoch_ms(self._clock.now())
        message = Message(new_message_id(now_ms), sender, recipient, body, iso_utc(now_ms))
        self._dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "pk": {"S": conversation_key(sender, recipient)},
                            "sk": {"S": MESSAGE_PREFIX + message.message_id},
                            "message_id": {"S": message.message_id},
                            "sender": {"S": sender},
                            "recipient": {"S": recipient},
                            "text": {"S": body},
                            "sent_at": {"S": message.sent_at},
                        },
                        # A random 64-bit suffix makes this a formality; never overwrite a message.
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._counter_key(recipient, sender),
                        "UpdateExpression": "ADD unread :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
        self._notifier.notify_users([recipient, sender], EVENT_KEY)
        return message

    def conversation(
        self, caller: str, with_user: object, *, limit: str | None = None, cursor: str | None = None
    ) -> Page[Message]:
        """The caller's conversation with `with_user`, newest first, one Query per page.

        `limit` and `cursor` are the raw `?limit=` (1-100, default 20) and `?cursor=`; the cursor
        must come from this same conversation, any other is an `InvalidPage`.

        chat.conversation("bob", "alice", limit="10").next_cursor  # None on the last page
        """
        caller = user_id(caller, "your user id")
        peer = peer_of(caller, with_user, "with")
        partition = {"pk": {"S": conversation_key(caller, peer)}}
        query = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :msg)",
            "ExpressionAttributeValues": {":pk": partition["pk"], ":msg": {"S": MESSAGE_PREFIX}},
            "ScanIndexForward": False,
        }
        page = query_page(
            self._dynamodb, query, MESSAGES_OF_CONVERSATION, partition, limit=limit, cursor=cursor
        )
        return page.map(self._message)

    def unread(self, caller: str) -> Unread:
        """Unread messages addressed to the caller, in total and per sender (one Query per 1 MB)."""
        caller = user_id(caller, "your user id")
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": UNREAD_PREFIX + caller}},
        }
        by_user: dict[str, int] = {}
        while True:
            response = self._dynamodb.query(**query)
            for item in response.get("Items", []):
                count = int(item["unread"]["N"])
                if count > 0:
                    by_user[item["sk"]["S"].removeprefix(PEER_PREFIX)] = count
            if not response.get("LastEvaluatedKey"):
                return Unread(sum(by_user.values()), by_user)
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def mark_read(self, caller: str, with_user: object) -> int:
        """Reset the caller's unread counter for `with_user` and return how many were unread.

        When something was unread, the caller's sessions get `chat-messages-updated` so other
        tabs update their badge. When nothing was, nobody is notified: a tab that marks read
        whenever it refetches would otherwise set off an endless refetch loop between tabs.
        """
        caller = user_id(caller, "your user id")
        peer = peer_of(caller, with_user, "with")
        response = self._dynamodb.delete_item(
            TableName=self._table, Key=self._counter_key(caller, peer), ReturnValues="ALL_OLD"
        )
        was_unread = int(response.get("Attributes", {}).get("unread", {}).get("N", "0"))
        if was_unread > 0:
            self._notifier.notify(caller, EVENT_KEY)
        return was_unread

    @staticmethod
    def _counter_key(recipient: str, sender: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": UNREAD_PREFIX + recipient}, "sk": {"S": PEER_PREFIX + sender}}

    @staticmethod
    def _message(item: Mapping[str, Any]) -> Message:
        return Message(
            message_id=item["message_id"]["S"],
            sender=item["sender"]["S"],
            recipient=item["recipient"]["S"],
            text=item["text"]["S"],
            sent_at=item["sent_at"]["S"],
        )
