"""The local stand-in for API Gateway's WebSocket API and its Management API, on one port.

    python -m devserver.gateway --port 8001

- `GET /` (or `/{stage}`) with `Upgrade: websocket`: invokes the app's `$connect`
  handler with an API-Gateway-shaped event; a non-2xx answer refuses the upgrade
  with that status, a 2xx one accepts it with the subprotocol the handler chose.
  Text frames go to `$default`, closes to `$disconnect`. As on AWS: binary
  frames close the connection (1003), frames over 32 KB close it (1009), an idle
  connection is closed after 10 minutes and any connection after 2 hours (1001).
- `POST|GET|DELETE /@connections/{id}` (also under `/{stage}/`): the Management
  API as boto3's `apigatewaymanagementapi` client calls it; unknown ids get 410
  `GoneException` exactly as AWS answers. Signatures are not checked.
- Local only: `GET /_health`, `GET /_connections`, and `GET|PUT|DELETE /_faults`
  (see `chalice_realtime.testing.faults`) so tests can inject 410/429/5xx or dropped connections;
  `GET|PUT|DELETE /_posts` counts the frames the Management API took (200) per connection id, and
  `PUT /_posts {"virtual_prefix": "v-"}` makes unknown ids with that prefix take frames
  (200, counted, sent nowhere): audiences of any size without opening their sockets.
  `GET|PUT|DELETE /_throttle` (`{"rate": 5000, "burst": 2500}`, or `--throttle-rate` and
  `--throttle-burst`) puts the Management API behind a token bucket, as API Gateway's account
  throttle: a call finding it empty is answered 429 `LimitExceededException`.
  These and the Management API refuse other web pages (`devserver.local_only`);
  `PUT /_faults` takes an `application/json` body only.

Handlers run in a thread pool, never on the event loop, like concurrent Lambda invocations.
aiohttp serves both sides: the `websockets` package's server refuses HTTP requests
with a body, and `POST @connections` carries the frame in its body.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import string
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from chalice_realtime.testing.faults import ERROR_TYPES, AccountThrottle, FaultPlan, FaultRule

from devserver.config import (
    AWS_IDLE_TIMEOUT_SECONDS,
    AWS_MAX_CONNECTION_AGE_SECONDS,
    PROJECT_ROOT,
    configure_logging,
)
from devserver.lambdas import LambdaFunction
from devserver.local_only import LocalOnly, origin_of

logger = logging.getLogger("devserver.gateway")

MAX_FRAME_BYTES = 32 * 1024  # API Gateway's WebSocket frame size limit
MAX_POST_BYTES = 128 * 1024  # PostToConnection's payload limit
API_ID = "local"
_ID_ALPHABET = string.ascii_letters + string.digits


def new_connection_id() -> str:
    """An id shaped like API Gateway's (16 characters, base64 of 11 bytes: `L0SM9cOFvHcCIhw=`).

    Letters and digits only, so it needs no escaping in a URL path.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass
class LiveConnection:
    connection_id: str
    socket: web.WebSocketResponse
    connected_at: int
    source_ip: str
    user_agent: str
    last_active_at: int = field(default_factory=_now_ms)
    # (code, reason) when the gateway closed it (idle, age, DELETE, bad frame); None when the client did.
    closed_with: tuple[int, str] | None = None

    async def close(self, code: int, reason: str) -> None:
        """Close from the gateway's side; `$disconnect` then reports this code and reason."""
        if self.closed_with is None:
            self.closed_with = (code, reason)
        await self.socket.close(code=code, message=reason.encode())


class Gateway:
    """The WebSocket API and its Management API over the app's handlers.

    gateway = Gateway(websocket_functions(app), domain_name="127.0.0.1:8001")
    web.run_app(gateway.application(), host="127.0.0.1", port=8001)
    """

    def __init__(
        self,
        functions: Mapping[str, LambdaFunction],
        *,
        domain_name: str,
        stage: str = "local",
        idle_timeout: float = AWS_IDLE_TIMEOUT_SECONDS,
        max_connection_age: float = AWS_MAX_CONNECTION_AGE_SECONDS,
        faults: FaultPlan | None = None,
        throttle: AccountThrottle | None = None,
        workers: int = 16,
        local_only: LocalOnly | None = None,
    ) -> None:
        self._functions = dict(functions)
        self._domain_name = domain_name
        self._stage = stage
        self._idle_timeout = idle_timeout
        self._max_age = max_connection_age
        self.faults = faults or FaultPlan()
        self.throttle = throttle or AccountThrottle()
        # Who may call the local control routes and the Management API: no web page unless named.
        self._local_only = local_only or LocalOnly(frozenset())
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._connections: dict[str, LiveConnection] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.posts: Counter[str] = Counter()  # frames taken (answered 200) per connection id
        self._virtual_prefix = ""

    def application(self) -> web.Application:
        """The aiohttp application serving both APIs."""
        app = web.Application(client_max_size=MAX_POST_BYTES + 1024, middlewares=[self._refuse_other_pages])
        app.router.add_get("/_health", self._health)
        app.router.add_get("/_connections", self._list_connections)
        app.router.add_get("/_faults", self._get_faults)
        app.router.add_put("/_faults", self._put_faults)
        app.router.add_post("/_faults", self._put_faults)
        app.router.add_delete("/_faults", self._delete_faults)
        app.router.add_get("/_posts", self._get_posts)
        app.router.add_put("/_posts", self._put_posts)
        app.router.add_delete("/_posts", self._delete_posts)
        app.router.add_get("/_throttle", self._get_throttle)
        app.router.add_put("/_throttle", self._put_throttle)
        app.router.add_delete("/_throttle", self._delete_throttle)
        for prefix in ("", "/{stage}"):
            resource = app.router.add_resource(prefix + "/@connections/{connection_id}")
            resource.add_route("POST", self._post_to_connection)
            resource.add_route("GET", self._get_connection)
            resource.add_route("DELETE", self._delete_connection)
        app.router.add_get("/", self._websocket)
        app.router.add_get("/{stage}", self._websocket)
        app.on_shutdown.append(self._close_all)
        return app

    @web.middleware
    async def _refuse_other_pages(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The local routes and the Management API answer programs and the stack's pages only.

        The WebSocket upgrade is left to `$connect`, as on AWS: it needs a valid token.
        """
        if not (request.path.startswith("/_") or "/@connections/" in request.path):
            return await handler(request)
        gate = self._local_only
        if not request.path.startswith("/_"):
            gate = replace(gate, body_types=None)  # the Management API's body is the frame itself, any bytes
        refusal = gate.refusal(
            request.method,
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            content_type=request.headers.get("Content-Type"),
            has_body=request.can_read_body,
        )
        if refusal is not None:
            logger.warning("refused %s %s: %s", request.method, request.path, refusal.message)
            return _json(refusal.status, {"message": refusal.message})
        return await handler(request)

    # ------------------------------------------------------------ WebSocket API

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _json(426, {"message": "Upgrade Required"})
        connection_id = new_connection_id()
        connected_at = _now_ms()
        source_ip = request.remote or ""
        user_agent = request.headers.get("User-Agent", "")
        event = self._connect_event(request, connection_id, connected_at, source_ip, user_agent)
        answer = await self._invoke("$connect", event)
        status = int(answer.get("statusCode", 200)) if isinstance(answer, dict) else 200
        if not 200 <= status < 300:
            # Refused before the upgrade: the client sees this HTTP status, as on AWS.
            return web.Response(status=status, text=_body_text(answer), content_type="application/json")
        subprotocol = _header(answer.get("headers") or {}, "Sec-WebSocket-Protocol")
        socket = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            max_msg_size=MAX_FRAME_BYTES,
            autoping=True,
        )
        await socket.prepare(request)
        live = LiveConnection(connection_id, socket, connected_at, source_ip, user_agent)
        self._connections[connection_id] = live
        watchdog = asyncio.create_task(self._expire(live))
        status_code, reason = 1005, "Client-side close frame status not set"
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    live.last_active_at = _now_ms()
                    self._dispatch(live, message.data)
                elif message.type == WSMsgType.BINARY:
                    # API Gateway does not accept binary frames: it closes with 1003.
                    await live.close(WSCloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            watchdog.cancel()
            self._connections.pop(connection_id, None)
            if live.closed_with is not None:
                status_code, reason = live.closed_with
            elif socket.close_code == WSCloseCode.MESSAGE_TOO_BIG:
                status_code, reason = 1009, "Frame size limit exceeded"
            elif socket.close_code is not None:
                status_code, reason = int(socket.close_code), "Client closed"
            await self._invoke("$disconnect", self._disconnect_event(live, status_code, reason))
        return socket

    def _dispatch(self, live: LiveConnection, body: str) -> None:
        route_key = self._route_for(body)
        task = asyncio.create_task(self._invoke(route_key, self._message_event(live, route_key, body)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _route_for(self, body: str) -> str:
        """The route selection expression Chalice deploys: `$request.body.action`, else `$default`."""
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError, RecursionError):
            return "$default"
        if isinstance(action, str) and action in self._functions and not action.startswith("$"):
            return action
        return "$default"

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> Any:
        function = self._functions.get(route_key)
        if function is None:
            return {"statusCode": 200}
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function.invoke, event)
        except Exception:
            # As on AWS: the handler's error is logged and the client gets a 500 (on $connect) or nothing.
            logger.exception("%s handler %s raised", route_key, function.name)
            return {"statusCode": 500, "body": json.dumps({"message": "Internal server error"})}

    async def _expire(self, live: LiveConnection) -> None:
        while True:
            now = _now_ms()
            idle_deadline = live.last_active_at + self._idle_timeout * 1000
            age_deadline = live.connected_at + self._max_age * 1000
            deadline = min(idle_deadline, age_deadline)
            if now >= deadline:
                await live.close(WSCloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep((deadline - now) / 1000)

    def _context(
        self, route_key: str, live_id: str, connected_at: int, ip: str, agent: str
    ) -> dict[str, Any]:
        now = _now_ms()
        event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
        request_id = base64.b64encode(uuid.uuid4().bytes[:9]).decode()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self._stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": ip, "userAgent": agent},
            "requestId": request_id,
            "domainName": self._domain_name,
            "connectionId": live_id,
            "apiId": API_ID,
        }
        if event_type == "MESSAGE":
            context["messageId"] = base64.b64encode(uuid.uuid4().bytes[:9]).decode()
        return context

    def _connect_event(
        self, request: web.Request, connection_id: str, connected_at: int, ip: str, agent: str
    ) -> dict[str, Any]:
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            multi_headers.setdefault(name, []).append(value)
        event: dict[str, Any] = {
            "headers": {name: ",".join(values) for name, values in multi_headers.items()},
            "multiValueHeaders": multi_headers,
            "requestContext": self._context("$connect", connection_id, connected_at, ip, agent),
            "isBase64Encoded": False,
        }
        if request.query:
            multi_query: dict[str, list[str]] = {}
            for name, value in request.query.items():
                multi_query.setdefault(name, []).append(value)
            event["queryStringParameters"] = {name: values[-1] for name, values in multi_query.items()}
            event["multiValueQueryStringParameters"] = multi_query
        return event

    def _message_event(self, live: LiveConnection, route_key: str, body: str) -> dict[str, Any]:
        return {
            "requestContext": self._context(
                route_key, live.connection_id, live.connected_at, live.source_ip, live.user_agent
            ),
            "body": body,
            "isBase64Encoded": False,
        }

    def _disconnect_event(self, live: LiveConnection, status_code: int, reason: str) -> dict[str, Any]:
        context = self._context(
            "$disconnect", live.connection_id, live.connected_at, live.source_ip, live.user_agent
        )
        context.update(disconnectStatusCode=status_code, disconnectReason=reason)
        headers = {"Host": self._domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        return {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }

    async def _close_all(self, _app: web.Application) -> None:
        for live in list(self._connections.values()):
            await live.close(WSCloseCode.GOING_AWAY, "Going away")

    # ------------------------------------------------------------ Management API

    async def _post_to_connection(self, request: web.Request) -> web.StreamResponse:
        connection_id = request.match_info["connection_id"]
        live, refusal = self._management_target(request, "post")
        if refusal is not None:
            if (
                refusal.status == 410
                and self._virtual_prefix
                and connection_id.startswith(self._virtual_prefix)
            ):
                self.posts[connection_id] += 1
                return web.Response(status=200)  # a virtual connection took the frame
            return refusal
        self.posts[connection_id] += 1
        assert live is not None
        data = await request.read()
        if len(data) > MAX_POST_BYTES:
            return _error(413, {"message": "Request Entity Too Large"})
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            await live.socket.send_bytes(data)
        else:
            await live.socket.send_str(text)
        return web.Response(status=200)

    async def _get_connection(self, request: web.Request) -> web.StreamResponse:
        live, refusal = self._management_target(request, "get")
        if refusal is not None:
            return refusal
        assert live is not None
        return _json(
            200,
            {
                "connectedAt": _iso(live.connected_at),
                "identity": {"sourceIp": live.source_ip, "userAgent": live.user_agent},
                "lastActiveAt": _iso(live.last_active_at),
            },
        )

    async def _delete_connection(self, request: web.Request) -> web.StreamResponse:
        live, refusal = self._management_target(request, "delete")
        if refusal is not None:
            return refusal
        assert live is not None
        # Closing waits for the client's close frame; the caller need not.
        task = asyncio.create_task(live.close(WSCloseCode.OK, "Connection deleted"))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=204)

    def _management_target(
        self, request: web.Request, operation: str
    ) -> tuple[LiveConnection | None, web.StreamResponse | None]:
        connection_id = request.match_info["connection_id"]
        if not self.throttle.admit():
            # What API Gateway answers over the account's throttle, before it looks at the connection.
            return None, _error(429, {"message": "Too Many Requests"})
        fault = self.faults.decide(operation, connection_id)
        if fault is not None:
            return None, _fault_response(request, fault)
        live = self._connections.get(connection_id)
        if live is None or live.socket.closed:
            return None, _error(410, {"message": None})
        return live, None

    # ------------------------------------------------------------ local control

    async def _health(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok", "pid": os.getpid(), "connections": len(self._connections)})

    async def _list_connections(self, _request: web.Request) -> web.Response:
        return _json(200, {"connections": sorted(self._connections)})

    async def _get_faults(self, _request: web.Request) -> web.Response:
        return _json(200, self.faults.to_json())

    async def _put_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            rules = [FaultRule.from_json(rule) for rule in body.get("rules", [])]
        except (ValueError, TypeError, AttributeError) as exc:
            return _json(400, {"message": f"bad fault plan: {exc}"})
        self.faults.replace(rules)
        return _json(200, self.faults.to_json())

    async def _delete_faults(self, _request: web.Request) -> web.Response:
        self.faults.replace([])
        return _json(200, self.faults.to_json())

    async def _get_posts(self, _request: web.Request) -> web.Response:
        return _json(200, {"virtual_prefix": self._virtual_prefix, "posts": dict(self.posts)})

    async def _put_posts(self, request: web.Request) -> web.Response:
        try:
            prefix = (await request.json()).get("virtual_prefix", "")
        except (ValueError, AttributeError) as exc:
            return _json(400, {"message": f"bad body: {exc}"})
        if not isinstance(prefix, str):
            return _json(400, {"message": "virtual_prefix must be a string"})
        self._virtual_prefix = prefix
        self.posts.clear()
        return await self._get_posts(request)

    async def _delete_posts(self, request: web.Request) -> web.Response:
        self._virtual_prefix = ""
        self.posts.clear()
        return await self._get_posts(request)

    async def _get_throttle(self, _request: web.Request) -> web.Response:
        return _json(200, self.throttle.to_json())

    async def _put_throttle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            self.throttle.set(float(body.get("rate", 0)), float(body.get("burst", 0)))
        except (ValueError, TypeError, AttributeError) as exc:
            return _json(400, {"message": f"bad throttle: {exc}"})
        return _json(200, self.throttle.to_json())

    async def _delete_throttle(self, _request: web.Request) -> web.Response:
        self.throttle.set(0, 0)
        return _json(200, self.throttle.to_json())


def _fault_response(request: web.Request, fault: FaultRule) -> web.StreamResponse:
    if fault.drop:
        # The caller sees the TCP connection reset before any response, as with a network fault.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return _error(
        fault.status, {"message": None if fault.status == 410 else ERROR_TYPES[fault.status]}, headers
    )


def _error(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    """An error as API Gateway answers it: JSON body, error name in `x-amzn-ErrorType`."""
    response = _json(status, body)
    response.headers["x-amzn-ErrorType"] = ERROR_TYPES.get(status, "InternalServerErrorException")
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    response.headers.update(headers or {})
    return response


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return ""


def _body_text(answer: Any) -> str:
    body = answer.get("body") if isinstance(answer, dict) else None
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body)


def main(argv: list[str] | None = None) -> None:
    """Serve the gateway with the app's WebSocket handlers until the process is terminated."""
    from devserver.lambdas import load_app, websocket_functions

    parser = argparse.ArgumentParser(prog="python -m devserver.gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--idle-timeout", type=float, default=AWS_IDLE_TIMEOUT_SECONDS)
    parser.add_argument("--max-connection-age", type=float, default=AWS_MAX_CONNECTION_AGE_SECONDS)
    parser.add_argument("--page-origin", default="http://127.0.0.1:8080", help="the demo page's origin")
    parser.add_argument("--app-dir", type=Path, default=PROJECT_ROOT, help="the Chalice app's folder")
    parser.add_argument(
        "--throttle-rate", type=float, default=0, help="Management API calls/s admitted (0: all)"
    )
    parser.add_argument("--throttle-burst", type=float, default=0, help="the throttle's bucket size")
    args = parser.parse_args(argv)
    configure_logging()
    gateway = Gateway(
        websocket_functions(load_app(args.app_dir), args.app_dir),
        domain_name=f"{args.host}:{args.port}",
        idle_timeout=args.idle_timeout,
        max_connection_age=args.max_connection_age,
        local_only=LocalOnly(frozenset({args.page_origin, origin_of(args.host, args.port)})),
        throttle=AccountThrottle(args.throttle_rate, args.throttle_burst),
    )
    web.run_app(
        gateway.application(), host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=2
    )


if __name__ == "__main__":
    main()
