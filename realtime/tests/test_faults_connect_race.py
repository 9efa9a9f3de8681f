"""No deaf sockets: whatever the order of connect, confirm, notify and disconnect, an open socket has a row.

Until `$connect` returns, API Gateway answers 410 for the new connection. A notify that meets that
410 must not delete the row: deleted after `confirm`, the socket opens with no row and hears nothing
for up to two hours. Here a connect (store, cap check, confirm, the gateway admitting it, and in some
runs a disconnect) and a notify (lookup, post, delete of gone rows) run in two threads, and every
step of both is taken in an order the test chooses: each interleaving, one after the other.

The same race over real sockets, with parallel connects against a stream of notifications:
`test_parallel_connects_racing_notifications_leave_no_deaf_socket` in
`tests/integration/test_connect_race.py`.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from chalice_realtime.connections import IN_FLIGHT_MS, Connection, ConnectionStore
from chalice_realtime.notifier import Notifier, frame
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.transports.base import Outcome
from chalice_realtime.websocket import WebsocketSessions

NOW_MS = 1_700_000_000_000


def at(ms: int) -> FakeClock:
    """A clock standing at epoch milliseconds `ms`; its sleeps take no time."""
    return FakeClock(ms / 1000)


USER = "alice"
CONNECT_STEPS = ("store", "cap check", "confirm", "gateway admits")
DISCONNECT_STEPS = ("gateway closes", "$disconnect")
NOTIFY_STEPS = ("lookup", "post", "delete gone")


class Interleaving:
    """Lets threads take their steps in exactly `order` (a list of thread names), one step at a time.

    A thread that finished early (a notify with nothing gone has no delete) gives up its later turns.
    """

    def __init__(self, order: Sequence[str]) -> None:
        self._order = list(order)
        self._position = 0
        self._finished: set[str] = set()
        self._turns = threading.Condition()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        me = threading.current_thread().name
        with self._turns:
            if not self._turns.wait_for(lambda: self._next() == me, timeout=10):
                raise AssertionError(f"{me} took a step the order {self._order} has no turn for")
            try:
                yield
            finally:
                self._position += 1
                self._turns.notify_all()

    def run(self, actors: dict[str, Callable[[], None]]) -> None:
        errors: list[BaseException] = []

        def body(name: str, actor: Callable[[], None]) -> None:
            try:
                actor()
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                with self._turns:
                    self._finished.add(name)
                    self._turns.notify_all()

        threads = [threading.Thread(target=body, args=item, name=item[0]) for item in actors.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        if errors:
            raise errors[0]

    def _next(self) -> str | None:
        while self._position < len(self._order) and self._order[self._position] in self._finished:
            self._position += 1
        return self._order[self._position] if self._position < len(self._order) else None


class SteppedStore:
    """The real connection store; each of its calls is one step of the interleaving."""

    def __init__(self, inner: ConnectionStore, interleaving: Interleaving) -> None:
        self._inner = inner
        self._interleaving = interleaving

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def stepped(*args: Any, **kwargs: Any) -> Any:
            with self._interleaving.step():
                result = method(*args, **kwargs)
                # A generator (connections_of) is read inside the step, as one Query.
                return list(result) if isinstance(result, Iterator) else result

        return stepped


class Gateway:
    """API Gateway as the app sees it: 410 for a connection until its `$connect` returned, or once closed."""

    def __init__(self, interleaving: Interleaving | None = None) -> None:
        self.open: set[str] = set()
        self.frames: dict[str, list[bytes]] = {}
        self.interleaving = interleaving  # while set, each post is one step of it

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        with self._step():
            outcomes = []
            for cid in connection_ids:
                if cid in self.open:
                    self.frames.setdefault(cid, []).append(data)
                outcomes.append(Outcome.DELIVERED if cid in self.open else Outcome.GONE)
            return outcomes

    def delete_connection(self, connection_id: str) -> Outcome:
        if connection_id not in self.open:
            return Outcome.GONE
        self.open.discard(connection_id)
        return Outcome.DELIVERED

    def _step(self) -> contextlib.AbstractContextManager[None]:
        return self.interleaving.step() if self.interleaving else contextlib.nullcontext()


class Verifier:
    def verify(self, token: str) -> str:
        return token


@pytest.fixture
def store(realtime: Any) -> ConnectionStore:
    return ConnectionStore(realtime.settings.connections_table, realtime.dynamodb)


def orders(connect_steps: int, notify_steps: int) -> list[list[str]]:
    """Every interleaving of the two threads' steps, each thread's own steps in their order."""
    total = connect_steps + notify_steps
    return [
        ["notify" if n in notify_at else "connect" for n in range(total)]
        for notify_at in itertools.combinations(range(total), notify_steps)
    ]


def race(
    store: ConnectionStore, order: list[str], connection_id: str, *, disconnect: bool, notify_after_ms: int
) -> tuple[Gateway, bool]:
    """Run one interleaving; the gateway afterwards and whether the connection's row exists."""
    interleaving = Interleaving(order)
    stepped: Any = SteppedStore(store, interleaving)
    gateway = Gateway(interleaving)
    sessions = WebsocketSessions(Verifier(), stepped, gateway, max_connections_per_user=10, clock=at(NOW_MS))
    # A notify starting `notify_after_ms` after the connect stored its row.
    notifier = Notifier(stepped, gateway, clock=at(NOW_MS + notify_after_ms))

    def connect() -> None:
        result = sessions.connect(connection_id, {"Sec-WebSocket-Protocol": f"bearer, {USER}"}, None)
        if not result.admitted:
            return  # the client sees the refusal and retries; no socket
        with interleaving.step():
            gateway.open.add(connection_id)  # $connect returned: the gateway knows the connection
        if disconnect:
            with interleaving.step():
                gateway.open.discard(connection_id)
            sessions.disconnect(connection_id)

    interleaving.run({"connect": connect, "notify": lambda: notifier.notify(USER, "jobs-updated")})
    gateway.interleaving = None
    has_row = any(c.connection_id == connection_id for c in store.connections_of(USER))
    return gateway, has_row


def deaf_sockets(store: ConnectionStore, *, disconnect: bool, notify_after_ms: int) -> list[str]:
    """The interleavings after which an open socket has no row, or a closed one still has a row."""
    steps = len(CONNECT_STEPS) + (len(DISCONNECT_STEPS) if disconnect else 0)
    found = []
    for n, order in enumerate(orders(steps, len(NOTIFY_STEPS))):
        cid = f"c{n}="
        gateway, has_row = race(store, order, cid, disconnect=disconnect, notify_after_ms=notify_after_ms)
        is_open = cid in gateway.open
        if is_open != has_row:
            found.append(" ".join(order) + f": open={is_open} row={has_row}")
            continue
        if is_open:
            # And the socket hears the next notify.
            Notifier(store, gateway, clock=at(NOW_MS + 1000)).notify(USER, "chat-messages-updated")
            if gateway.frames.get(cid, [])[-1:] != [frame("chat-messages-updated")]:
                found.append(" ".join(order) + ": the next frame did not arrive")
        store.remove(cid)
    return found


@pytest.mark.parametrize("disconnect", [False, True], ids=["connect", "connect-then-disconnect"])
def test_no_interleaving_of_connect_and_notify_leaves_an_open_socket_without_a_row(
    store: ConnectionStore, disconnect: bool
) -> None:
    assert deaf_sockets(store, disconnect=disconnect, notify_after_ms=5) == []


def test_the_interleavings_catch_a_notify_that_deletes_young_rows(store: ConnectionStore) -> None:
    """The harness finds the defect it guards against: a notify that takes every 410 at its word (here,
    one whose clock runs past the in-flight window) deletes a row its connect has already confirmed."""
    found = deaf_sockets(store, disconnect=False, notify_after_ms=IN_FLIGHT_MS + 1)
    assert "connect connect notify connect notify notify connect: open=True row=False" in found


def test_a_young_connection_the_cap_cannot_close_keeps_its_row_and_hears_the_next_notify(
    store: ConnectionStore,
) -> None:
    """Evicted beyond the cap while its own `$connect` is still running (410 on every close): its row stays,
    so when that connect returns the socket is reachable; the cap catches up at the next connect."""
    gateway = Gateway()
    store.add(Connection("connecting=", USER, NOW_MS - 20))  # stored, confirmed, not yet returned
    gateway.open.add("newer=")
    sessions = WebsocketSessions(Verifier(), store, gateway, max_connections_per_user=1, clock=at(NOW_MS))
    result = sessions.connect("newer=", {"Sec-WebSocket-Protocol": f"bearer, {USER}"}, None)
    assert result.status == 200
    assert store.connection_ids_of(USER) == ["connecting=", "newer="]
    gateway.open.add("connecting=")  # its $connect returns
    report = Notifier(store, gateway, clock=at(NOW_MS + 100)).notify(USER, "jobs-updated")
    assert report.delivered == 2
    assert gateway.frames["connecting="] == [frame("jobs-updated")]
