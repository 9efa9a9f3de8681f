"""Chat as an adopting app's tests see it, through the core's testing kit: who hears which key."""

from __future__ import annotations

import json
from typing import Any

from chalice.test import Client
from chalice_realtime.testing.firebase import TokenFactory

from app import app


def bearer(tokens: TokenFactory, uid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(uid)}", "Content-Type": "application/json"}


def test_a_message_is_heard_by_both_sides_and_nobody_else(recorded: Any, tokens: TokenFactory) -> None:
    for uid in ("alice", "bob", "carol"):
        recorded.connect(uid)
    with Client(app) as client:
        sent = client.http.post(
            "/messages", headers=bearer(tokens, "alice"), body=json.dumps({"to": "bob", "text": "hi"})
        )
    assert sent.status_code == 201, sent.body
    assert recorded.for_user("alice") == ["chat-messages-updated"]
    assert recorded.for_user("bob") == ["chat-messages-updated"]
    assert recorded.for_user("carol") == []


def test_reading_a_conversation_is_heard_by_the_readers_own_sessions_only(
    recorded: Any, tokens: TokenFactory
) -> None:
    recorded.connect("alice")
    recorded.connect("bob")
    with Client(app) as client:
        client.http.post(
            "/messages", headers=bearer(tokens, "alice"), body=json.dumps({"to": "bob", "text": "hi"})
        )
        recorded.clear()
        read = client.http.post(
            "/messages/read", headers=bearer(tokens, "bob"), body=json.dumps({"with": "alice"})
        )
    assert read.status_code == 200, read.body
    assert recorded.for_user("bob") == ["chat-messages-updated"]
    assert recorded.for_user("alice") == []
