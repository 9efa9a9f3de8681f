"""What the WebSocket routes do: admit or refuse a connection, forget it, answer pings and subscriptions."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .auth import AuthUnavailable, InvalidToken, TokenVerifier
from .clock import SYSTEM_CLOCK, Clock, epoch_ms
from .connections import IN_FLIGHT_MS, Connection, ConnectionStore
from .notifier import frame
from .transports import ManagementTransport, Outcome

if TYPE_CHECKING:
    from .topics import Topics

logger = logging.getLogger(__name__)

SUBPROTOCOL = "bearer"
PONG = frame("pong")
CLOSE_RETRIES = 4
CLOSE_RETRY_SECONDS = 0.25


@dataclass(frozen=True)
class ConnectResult:
    """The answer to `$connect`: status 2xx admits the connection."""

    status: int
    user_id: str = ""
    subprotocol: str = ""
    evicted: tuple[str, ...] = ()
    reason: str = ""

    @property
    def admitted(self) -> bool:
        return 200 <= self.status < 300


def token_from_handshake(
    headers: Mapping[str, str] | None, query: Mapping[str, str] | None
) -> tuple[str, str]:
    """(token, subprotocol to answer) from the upgrade request.

    Browsers send `Sec-WebSocket-Protocol: bearer, <token>`; clients that cannot
    set it may pass `?token=`. The subprotocol answer is `bearer` only when the
    client offered it.
    """
    protocol_header = ""
    for name, value in (headers or {}).items():
        if name.lower() == "sec-websocket-protocol":
            protocol_header = value or ""
            break
    offered = [part.strip() for part in protocol_header.split(",") if part.strip()]
    if len(offered) >= 2 and offered[0].lower() == SUBPROTOCOL:
        return offered[1], SUBPROTOCOL
    token = (query or {}).get("token") or ""
    return token, SUBPROTOCOL if offered and offered[0].lower() == SUBPROTOCOL else ""


class WebsocketSessions:
    """The app's side of API Gateway's WebSocket routes.

    sessions = WebsocketSessions(verifier, store, transport, max_connections_per_user=10)
    result = sessions.connect("abc=", headers, query)  # ConnectResult(status=200, ...)
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        store: ConnectionStore,
        transport: ManagementTransport,
        *,
        max_connections_per_user: int,
        clock: Clock = SYSTEM_CLOCK,
        topics: Topics | None = None,
    ) -> None:
        self._topics = topics  # None: subscribe and unsubscribe are ignored like any unknown action
        self._verifier = verifier
        self._store = store
        self._transport = transport
        self._cap = max_connections_per_user
        self._clock = clock

    def connect(
        self,
        connection_id: str,
        headers: Mapping[str, str] | None,
        query: Mapping[str, str] | None,
    ) -> ConnectResult:
        """Verify the token and store the connection, closing the user's oldest beyond the cap.

        A refused connection stores nothing. A store failure refuses it too (500), and so
        does losing to newer connections of the same user opened at the same moment (429):
        the client retries, and a row is never half-written nor left without its socket.
        """
        token, subprotocol = token_from_handshake(headers, query)
        if not token:
            return ConnectResult(401, reason="missing token")
        try:
            user_id = self._verifier.verify(token)
        except InvalidToken as exc:
            logger.info("connect refused", extra={"connection_id": connection_id, "reason": str(exc)})
            return ConnectResult(401, reason=str(exc))
        except AuthUnavailable as exc:
            logger.error("connect refused", extra={"connection_id": connection_id, "reason": str(exc)})
            return ConnectResult(503, reason=str(exc))
        connection = Connection(connection_id, user_id, self._now_ms())
        try:
            self._store.add(connection)
        except Exception:
            logger.exception("connect failed to store", extra={"connection_id": connection_id})
            return ConnectResult(500, reason="connection store unavailable")
        refusal: ConnectResult | None = None
        try:
            # Enforced after storing, so parallel connects of one user each see the others' rows (checked
            # before storing, a flood of parallel connects all saw room and overshot the cap).
            evicted = self._evict_beyond_cap(user_id, connection_id)
            # Beyond the cap itself (newer ones came meanwhile), or evicted by a parallel connect while
            # being admitted: refused (the browser retries) rather than an open socket without a row,
            # which no notify would ever reach.
            admitted = connection_id not in evicted and self._store.confirm(connection)
        except Exception:
            logger.exception("connect failed to enforce the cap", extra={"connection_id": connection_id})
            refusal = ConnectResult(500, reason="connection store unavailable")
        else:
            if not admitted:
                refusal = ConnectResult(429, reason="too many connections at once; retry")
        if refusal is not None:
            with contextlib.suppress(Exception):  # if this fails too, TTL or the first 410 removes the row
                self._store.remove(connection_id)
            logger.info("connect refused", extra={"connection_id": connection_id, "reason": refusal.reason})
            return refusal
        logger.info("connected", extra={"connection_id": connection_id, "user_id": user_id})
        return ConnectResult(200, user_id=user_id, subprotocol=subprotocol, evicted=evicted)

    def disconnect(self, connection_id: str) -> None:
        """Forget a connection and its subscriptions; one already forgotten is fine."""
        self._store.remove(connection_id)
        if self._topics is not None:
            try:
                self._topics.forget_connection(connection_id)
            except Exception:
                # The subscription rows expire with the connection's; a notify's 410 removes them sooner.
                logger.exception(
                    "could not remove a connection's subscriptions", extra={"connection_id": connection_id}
                )

    def receive(self, connection_id: str, body: str | None) -> None:
        """Answer `{"action": "ping"}` with `{"event": "pong"}`, hand `subscribe` / `unsubscribe` to the
        topics; ignore anything else. Never raises."""
        try:
            message = json.loads(body or "")
        except (TypeError, ValueError, RecursionError):
            logger.debug("ignored a frame that is not JSON", extra={"connection_id": connection_id})
            return
        if isinstance(message, dict) and message.get("action") == "ping":
            self._transport.post_to_connections([connection_id], PONG)
            return
        if isinstance(message, dict) and self._topics is not None:
            action = message.get("action")
            if action == "subscribe":
                self._topics.subscribe(connection_id, message.get("topic"))
                return
            if action == "unsubscribe":
                self._topics.unsubscribe(connection_id, message.get("topic"))
                return
        logger.debug("ignored a frame with no known action", extra={"connection_id": connection_id})

    def _now_ms(self) -> int:
        return epoch_ms(self._clock.now())

    def _evict_beyond_cap(self, user_id: str, new_id: str) -> tuple[str, ...]:
        """Close and forget the user's oldest connections beyond the cap, strictly oldest first.

        Only connections with `cap` newer ones are evicted, so however parallel connects interleave,
        the newest `cap` stay. `new_id` itself is among the result when it is beyond the cap.
        """
        existing = list(self._store.connections_of(user_id))  # oldest first
        if all(c.connection_id != new_id for c in existing):
            # Not in the index yet (a GSI is eventually consistent): it is the newest.
            existing.append(Connection(new_id, user_id, self._now_ms()))
        excess = len(existing) - self._cap
        if excess <= 0:
            return ()
        oldest = existing[:excess]
        others = [c for c in oldest if c.connection_id != new_id]
        kept = {c.connection_id for c in self._close_all(others)}
        # A row whose socket may still be open stays: its $connect still running (410 while young), or the
        # close failed (429, 5xx, timeout). Deleted, that socket would stay open, answering pings, with no
        # row for any notify to find. It is over the cap until the next connect or notify.
        self._store.remove_many([c.connection_id for c in others if c.connection_id not in kept])
        logger.info("closed oldest connections beyond the cap", extra={"user_id": user_id, "count": excess})
        return tuple(c.connection_id for c in oldest)

    def _close_all(self, connections: list[Connection]) -> list[Connection]:
        """Close each connection; those whose rows must stay: the close failed, or the connection still
        answered 410 while young enough to be connecting."""
        now_ms = self._now_ms()
        not_closed: list[Connection] = []
        for attempt in range(CLOSE_RETRIES + 1):
            connecting: list[Connection] = []
            for c in connections:
                outcome = self._transport.delete_connection(c.connection_id)
                if outcome is Outcome.FAILED:
                    not_closed.append(c)
                # 410 for a connection stored moments ago: its own $connect may still be running (the
                # gateway knows it only once that returns), so the close is tried again shortly.
                elif outcome is Outcome.GONE and now_ms - c.connected_at < IN_FLIGHT_MS:
                    connecting.append(c)
            connections = connecting
            if not connections or attempt == CLOSE_RETRIES:
                break
            self._clock.sleep(CLOSE_RETRY_SECONDS)
        return not_closed + connections
