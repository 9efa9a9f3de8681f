"""The core's Chalice `Blueprint`: the WebSocket routes and an authorizer for REST routes.

    from chalice_realtime import caller_id, realtime, realtime_auth

    app.experimental_feature_flags.update(["WEBSOCKETS"])
    app.register_blueprint(realtime)

    @app.route("/me", authorizer=realtime_auth)
    def me():
        return {"user_id": caller_id()}

Deployed, each handler here is its own Lambda function whose handler is this module
(`chalice_realtime.blueprint.ws_connect`, ...), so Lambda imports this module and not
the app's `app.py`: the handlers configure logging and correlation themselves.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from chalice import AuthResponse, Blueprint, Response
from chalice.app import AuthRequest, SQSEvent, WebsocketAPI, WebsocketEvent

from . import budget, observability, runtime
from .auth import AuthUnavailable, InvalidToken, bearer_token
from .fanout import Shard
from .settings import fanout_queue_name

# The fan-out workers' queue as Chalice registers it: `chalice deploy` imports this module with the stage's
# variables (FANOUT_QUEUE_URL names the queue); `chalice package --merge-template` points the event source
# at the template's queue; the local stack creates and polls the queue its FANOUT_QUEUE_URL names.
FANOUT_QUEUE = fanout_queue_name()

logger = logging.getLogger(__name__)

realtime = Blueprint(__name__)
# Chalice hands WebSocket handlers a `WebsocketEvent` only when the decorating object has a
# `websocket_api`; a Blueprint has none of its own.
realtime.websocket_api = WebsocketAPI()


@contextlib.contextmanager
def _invocation(event: WebsocketEvent) -> Iterator[runtime.Realtime]:
    """The core's components, with logging set up and the event's correlation id current."""
    core = runtime.current()
    observability.configure_logging_once(core.settings.log_level)
    with observability.running(observability.invocation_of(event)):
        yield core


@realtime.authorizer()
def realtime_auth(auth_request: AuthRequest) -> AuthResponse:
    """`Authorization: Bearer <token>` checked by the core's `TokenVerifier`; the principal: its user id.

    An invalid token gets a Deny (403), which API Gateway caches for the token. When tokens cannot be
    checked at all (`AuthUnavailable`: certificates or the revocation lookup unreachable) it raises:
    API Gateway answers 500 and caches nothing, so the token works again as soon as the outage ends,
    where a cached Deny would refuse it for the authorizer's whole TTL.
    """
    core = runtime.current()
    observability.configure_logging_once(core.settings.log_level)
    try:
        user_id = core.verifier.verify(bearer_token(auth_request.token))
    except InvalidToken:
        return AuthResponse(routes=[], principal_id="anonymous")
    except AuthUnavailable as exc:
        logger.error("cannot check tokens; answering an error API Gateway does not cache: %s", exc)
        raise
    # '*' lets API Gateway cache this answer for the token across all routes.
    return AuthResponse(routes=["*"], principal_id=user_id)


def caller_id() -> str:
    """The user id of the caller of the current REST request, as `realtime_auth` found it.

    @app.route("/me", authorizer=realtime_auth)
    def me():
        return {"user_id": caller_id()}
    """
    request = realtime.current_request
    return str(request.context["authorizer"]["principalId"])


@realtime.on_ws_connect()
def ws_connect(event: WebsocketEvent) -> Response:
    with _invocation(event) as core:
        raw = event.to_dict()
        result = core.websocket.connect(
            event.connection_id, raw.get("headers"), raw.get("queryStringParameters")
        )
    if not result.admitted:
        return Response(body={"message": result.reason}, status_code=result.status)
    headers: dict[str, str | list[str]] = (
        {"Sec-WebSocket-Protocol": result.subprotocol} if result.subprotocol else {}
    )
    return Response(body="", status_code=200, headers=headers)


@realtime.on_ws_disconnect()
def ws_disconnect(event: WebsocketEvent) -> None:
    with _invocation(event) as core:
        core.websocket.disconnect(event.connection_id)


@realtime.on_ws_message()
def ws_message(event: WebsocketEvent) -> None:
    with _invocation(event) as core:
        core.websocket.receive(event.connection_id, event.to_dict().get("body"))


@realtime.on_sqs_message(queue=FANOUT_QUEUE, batch_size=1, name="fanout_worker")
def fanout_worker(event: SQSEvent) -> None:
    """Deliver one shard of a large notify (`chalice_realtime.fanout`).

    Raises when some frames could not be delivered, or for a message that is not a shard: SQS
    then delivers it again after the queue's visibility timeout, and after the redrive policy's
    receives moves it to the dead-letter queue. A redelivered shard skips the connections an
    earlier attempt settled.
    """
    core = runtime.current()
    observability.configure_logging_once(core.settings.log_level)
    with (
        observability.running(observability.invocation_of(event)),
        budget.answering_within(budget.remaining_seconds_of(event.context)),
    ):
        for record in event:
            core.fanout_worker.deliver(Shard.from_message(record.body))
