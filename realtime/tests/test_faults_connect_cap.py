"""The per-user connection cap when connects of one user run in parallel (a flood, or many tabs at once).

Each connect stores its row first, then evicts strictly oldest first; so the newest `cap` stay,
and a connect that is itself beyond the cap, or was evicted while being admitted, is refused
(429, the client retries) with no row left behind. The same over real sockets, with 30 parallel
connects: `test_a_connect_flood_from_one_user_keeps_the_cap_and_closes_the_oldest` in
`tests/integration/test_ws_abuse.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from chalice_realtime.auth import FirebaseVerifier
from chalice_realtime.connections import Connection, ConnectionStore
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.transports.base import Outcome
from chalice_realtime.websocket import IN_FLIGHT_MS, WebsocketSessions

pytestmark = pytest.mark.requires_extra("firebase")

CAP = 3
NOW_MS = 1_700_000_000_000


class Gateway:
    """The Management API as the cap sees it: which connections are open, which were closed."""

    def __init__(self, open_ids: set[str] | None = None) -> None:
        self.open = set(open_ids or ())
        self.closed: list[str] = []
        self.on_delete: Any = None
        self.failing: set[str] = set()  # closes that fail (429, 5xx, timeout after the transport's retries)

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        return [Outcome.DELIVERED if cid in self.open else Outcome.GONE for cid in connection_ids]

    def delete_connection(self, connection_id: str) -> Outcome:
        if self.on_delete is not None:
            self.on_delete(connection_id)
        if connection_id in self.failing:
            return Outcome.FAILED
        if connection_id not in self.open:
            return Outcome.GONE
        self.open.discard(connection_id)
        self.closed.append(connection_id)
        return Outcome.DELIVERED


@pytest.fixture
def store(realtime: Any) -> ConnectionStore:
    return ConnectionStore(realtime.settings.connections_table, realtime.dynamodb)


def sessions(store: ConnectionStore, gateway: Gateway, now_ms: int = NOW_MS) -> WebsocketSessions:
    verifier = FirebaseVerifier("test-project")
    clock = FakeClock(now_ms / 1000)
    return WebsocketSessions(verifier, store, gateway, max_connections_per_user=CAP, clock=clock)


def bearer(tokens: TokenFactory, uid: str) -> dict[str, str]:
    return {"Sec-WebSocket-Protocol": f"bearer, {tokens.mint(uid)}"}


def test_the_newest_connections_stay_and_the_oldest_beyond_the_cap_are_closed(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    gateway = Gateway({"a", "b", "c"})
    for n, cid in enumerate("abc"):
        store.add(Connection(cid, "alice", NOW_MS - 3000 + n))
    result = sessions(store, gateway).connect("d", bearer(tokens, "alice"), None)
    assert result.status == 200 and result.evicted == ("a",)
    assert gateway.closed == ["a"]
    assert store.connection_ids_of("alice") == ["b", "c", "d"]


def test_a_connect_older_than_cap_newer_ones_is_refused_and_leaves_no_row(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    """Parallel connects stored `cap` newer rows while this one was being admitted: it is the one to go."""
    gateway = Gateway({"n1", "n2", "n3"})
    for n, cid in enumerate(("n1", "n2", "n3")):
        store.add(Connection(cid, "alice", NOW_MS + 1 + n))
    result = sessions(store, gateway, now_ms=NOW_MS).connect("late", bearer(tokens, "alice"), None)
    assert result.status == 429
    assert gateway.closed == []  # the newer connections are untouched
    assert store.connection_ids_of("alice") == ["n1", "n2", "n3"]


def test_a_connect_evicted_by_a_parallel_one_while_being_admitted_is_refused(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    gateway = Gateway()
    # A parallel connect removes this connection's row between its store and its check.
    gateway.on_delete = lambda _: store.remove("mine")
    store.add(Connection("old", "alice", NOW_MS - 10_000))
    for n in range(CAP - 1):
        store.add(Connection(f"other{n}", "alice", NOW_MS - 5000 + n))
    result = sessions(store, gateway).connect("mine", bearer(tokens, "alice"), None)
    assert result.status == 429
    assert "mine" not in store.connection_ids_of("alice")


def test_a_young_connection_answering_410_is_closed_once_its_own_connect_has_finished(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    """410 for a row stored moments ago: that connection is still being admitted; the close is retried."""
    gateway = Gateway({"b", "c"})
    store.add(Connection("in-flight", "alice", NOW_MS - IN_FLIGHT_MS // 10))
    store.add(Connection("b", "alice", NOW_MS - 100))
    store.add(Connection("c", "alice", NOW_MS - 50))
    attempts: list[str] = []

    def admit_on_second_try(connection_id: str) -> None:
        attempts.append(connection_id)
        if attempts.count("in-flight") == 2:
            gateway.open.add("in-flight")  # its $connect returned; the gateway knows it now

    gateway.on_delete = admit_on_second_try
    result = sessions(store, gateway).connect("d", bearer(tokens, "alice"), None)
    assert result.status == 200
    assert gateway.closed == ["in-flight"]  # closed, not left open without a row
    assert store.connection_ids_of("alice") == ["b", "c", "d"]


def test_an_old_row_answering_410_is_not_retried(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    gateway = Gateway({"b", "c"})
    attempts: list[str] = []
    gateway.on_delete = attempts.append
    store.add(Connection("stale", "alice", NOW_MS - IN_FLIGHT_MS * 10))
    store.add(Connection("b", "alice", NOW_MS - 100))
    store.add(Connection("c", "alice", NOW_MS - 50))
    assert sessions(store, gateway).connect("d", bearer(tokens, "alice"), None).status == 200
    assert attempts == ["stale"]
    assert store.connection_ids_of("alice") == ["b", "c", "d"]


def test_an_oldest_connection_whose_close_fails_keeps_its_row(
    store: ConnectionStore, tokens: TokenFactory, firebase_certs: Any
) -> None:
    """DELETE @connections still failing after the transport's retries (429, 5xx, timeout): the socket may
    still be open, so its row stays; deleted, the socket would answer pings and hear no notify for 2 h."""
    gateway = Gateway({"a", "b", "c"})
    gateway.failing.add("a")
    for n, cid in enumerate("abc"):
        store.add(Connection(cid, "alice", NOW_MS - 3000 + n))
    result = sessions(store, gateway).connect("d", bearer(tokens, "alice"), None)
    assert result.status == 200
    assert gateway.closed == [] and "a" in gateway.open
    assert store.connection_ids_of("alice") == ["a", "b", "c", "d"]  # over the cap until the next connect
