"""What `notify` sent, recorded in place of the Management API.

frames = RealtimeFrames(RecordingTransport(), settings, moto_dynamodb_client)
frames.install()                      # the core `notify()` and the blueprint use from now on
frames.connect("uid-1")
notify("uid-1", "orders-updated")
frames.for_user("uid-1")  # ['orders-updated']
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..auth import TokenVerifier
from ..clock import epoch_ms
from ..connections import Connection
from ..runtime import Realtime, use
from ..settings import RealtimeSettings
from ..transports.base import Outcome


@dataclass(frozen=True)
class SentFrame:
    connection_id: str
    frame: dict[str, str]  # as the browser parses it: {"event": key}, with "topic" for a topic's


@dataclass
class RecordingTransport:
    """A Management API that delivers every frame (or answers 410 for the ids in `gone`) and keeps them."""

    sent: list[SentFrame] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        frame = json.loads(data)
        outcomes = []
        with self._lock:
            for connection_id in connection_ids:
                if connection_id in self.gone:
                    outcomes.append(Outcome.GONE)
                else:
                    self.sent.append(SentFrame(connection_id, frame))
                    outcomes.append(Outcome.DELIVERED)
        return outcomes

    def delete_connection(self, connection_id: str) -> Outcome:
        with self._lock:
            self.deleted.append(connection_id)
        return Outcome.GONE if connection_id in self.gone else Outcome.DELIVERED


class RealtimeFrames:
    """The event keys each connection and each user was sent, oldest first (the `realtime_frames` fixture).

    A user's keys are those of every frame sent to any of their connections: a user with two
    connections hears each notify twice (`connect` makes one, as one browser holds one).

    Every notify is delivered inline, whatever `FANOUT_QUEUE_URL` says: a notify with a fan-out queue
    spends a wall-clock budget and hands what it cannot finish in time to workers a test does not run,
    so on a busy machine a frame would go missing from the record.
    """

    def __init__(self, transport: RecordingTransport, settings: RealtimeSettings, dynamodb: Any) -> None:
        self.transport = transport
        settings = dataclasses.replace(settings, fanout_queue_url="")
        self.realtime = Realtime(settings, dynamodb=dynamodb, transport=transport)
        self.connections = self.realtime.connections
        self._owners: dict[str, str] = {}
        self._ids = itertools.count(1)

    def install(self, *, verifier: TokenVerifier | None = None) -> None:
        """Make this the core's runtime (what `notify()` and the blueprint's handlers use); `verifier`
        checks tokens in place of the one the settings name."""
        realtime = self.realtime
        self.realtime = Realtime(
            realtime.settings, dynamodb=realtime.dynamodb, transport=self.transport, verifier=verifier
        )
        self.connections = self.realtime.connections
        use(self.realtime)

    def connect(self, user_id: str, connection_id: str | None = None) -> str:
        """Store a live connection of `user_id` as `$connect` would have; returns its id."""
        connection_id = connection_id or f"{user_id}-conn-{next(self._ids)}="
        self.connections.add(Connection(connection_id, user_id, epoch_ms(time.time()) + next(self._ids)))
        self._owners[connection_id] = user_id
        return connection_id

    def for_connection(self, connection_id: str) -> list[str]:
        """The event keys sent to `connection_id`, oldest first."""
        return [sent.frame["event"] for sent in self.transport.sent if sent.connection_id == connection_id]

    def for_user(self, user_id: str) -> list[str]:
        """The event keys sent to the connections of `user_id`, oldest first (those made by `connect`,
        and those `$connect` admitted that are still stored)."""
        for connection_id in self.connections.connection_ids_of(user_id):
            self._owners.setdefault(connection_id, user_id)
        return [
            sent.frame["event"]
            for sent in self.transport.sent
            if self._owners.get(sent.connection_id) == user_id
        ]

    def frames(self, connection_id: str) -> list[dict[str, str]]:
        """The frames sent to `connection_id` as the browser parses them (with `topic` for a topic's)."""
        return [sent.frame for sent in self.transport.sent if sent.connection_id == connection_id]

    def clear(self) -> None:
        """Forget what was sent so far (the connections stay)."""
        self.transport.sent.clear()
        self.transport.deleted.clear()
