"""What the WebSocket routes do: admit or refuse a connection, forget it, answer pings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalicelib.auth import AuthUnavailable, InvalidToken, TokenVerifier
from chalicelib.connections import Connection, ConnectionStore
from chalicelib.notifier import frame
from chalicelib.transport import ManagementTransport

logger = logging.getLogger(__name__)

SUBPROTOCOL = "bearer"
PONG = frame("pong")


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
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._verifier = verifier
        self._store = store
        self._transport = transport
        self._cap = max_connections_per_user
        self._clock_ms = clock_ms

    def connect(
        self,
        connection_id: str,
        headers: Mapping[str, str] | None,
        query: Mapping[str, str] | None,
    ) -> ConnectResult:
        """Verify the token and store the connection, closing the user's oldest beyond the cap.

        A refused connection stores nothing. A store failure refuses it too
        (the client retries), so a row is never half-written.
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
        try:
            evicted = self._evict_beyond_cap(user_id)
            self._store.add(Connection(connection_id, user_id, self._clock_ms()))
        except Exception:
            logger.exception("connect failed to store", extra={"connection_id": connection_id})
            return ConnectResult(500, reason="connection store unavailable")
        logger.info("connected", extra={"connection_id": connection_id, "user_id": user_id})
        return ConnectResult(200, user_id=user_id, subprotocol=subprotocol, evicted=evicted)

    def disconnect(self, connection_id: str) -> None:
        """Forget a connection; one already forgotten is fine."""
        self._store.remove(connection_id)

    def receive(self, connection_id: str, body: str | None) -> None:
        """Answer `{"action": "ping"}` with `{"event": "pong"}`; ignore anything else. Never raises."""
        try:
            message = json.loads(body or "")
        except (TypeError, ValueError, RecursionError):
            logger.debug("ignored a frame that is not JSON", extra={"connection_id": connection_id})
            return
        if isinstance(message, dict) and message.get("action") == "ping":
            self._transport.post_to_connections([connection_id], PONG)
            return
        logger.debug("ignored a frame with no known action", extra={"connection_id": connection_id})

    def _evict_beyond_cap(self, user_id: str) -> tuple[str, ...]:
        existing = self._store.connection_ids_of(user_id)
        excess = len(existing) - self._cap + 1
        if excess <= 0:
            return ()
        oldest = existing[:excess]
        for connection_id in oldest:
            self._transport.delete_connection(connection_id)
        self._store.remove_many(oldest)
        logger.info("closed oldest connections beyond the cap", extra={"user_id": user_id, "count": excess})
        return tuple(oldest)
