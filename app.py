"""The Chalice app: routes and event handlers only. The logic lives in `chalicelib/`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from chalice import Chalice, ChaliceViewError, CORSConfig, Rate, Response
from chalice.app import CloudWatchEvent, SNSEvent
from chalice_realtime import caller_id, configure_logging, correlated, realtime, realtime_auth

from chalicelib import services
from chalicelib.errors import AppError, RequestRefused
from chalicelib.limits import CHANGE_ROOMS, SEND_MESSAGE, SEND_ROOM_MESSAGE, SUBMIT_JOB
from chalicelib.settings import get_settings

# Fail at cold start, with the reason, on a misconfigured stage (e.g. the auth emulator outside `local`).
get_settings()

app = Chalice(app_name="chalice-realtime")
app.experimental_feature_flags.update(["WEBSOCKETS"])
# $connect, $disconnect, $default (ping/pong) and the `realtime_auth` authorizer of the REST routes.
app.register_blueprint(realtime)
# Browsers call from another origin (the demo page); tokens go in a header, never cookies.
app.api.cors = CORSConfig(
    allow_origin="*",
    allow_headers=["X-Correlation-Id"],
    # Retry-After is not a CORS-safelisted response header: a page reads a 429's wait only if exposed.
    expose_headers=["X-Correlation-Id", "Retry-After"],
)
# One JSON line per log record, at LOG_LEVEL, Chalice's own error log included (docs/observability.md).
configure_logging(get_settings().realtime.log_level, app.log)


@app.middleware("all")
def correlate(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Tag every log line of the invocation with its correlation id; REST answers return it."""
    return correlated(event, get_response)


# ---------------------------------------------------------------- request helpers


def query_params() -> dict[str, str]:
    """The request's query string parameters ({} when there are none)."""
    request = app.current_request
    assert request is not None
    return dict(request.query_params or {})


def json_object() -> dict[str, Any]:
    """The request's JSON body, which must be an object (400 otherwise)."""
    request = app.current_request
    assert request is not None
    body = request.json_body
    if not isinstance(body, dict):
        raise RequestRefused("the request body must be a JSON object")
    return body


def answers_errors[**P, R](view: Callable[P, R]) -> Callable[P, R]:
    """The one place the features' errors become HTTP answers, the same on every route: an `AppError`
    (`chalicelib.errors`) is answered with its own status, `{"Code", "Message"}` body and headers
    (`Retry-After` on a 429 or 503). Anything else stays Chalice's logged 500 that leaks nothing.

    Not a Chalice middleware: an error that leaves a view reaches middleware only after Chalice has
    answered it (a 500) or, for `ChaliceUnhandledError`, without the route's CORS headers, which a
    page needs to read a 429's `Retry-After`."""

    @functools.wraps(view)
    def answered(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return view(*args, **kwargs)
        except AppError as exc:
            return cast(R, Response(body=exc.body(), status_code=exc.STATUS_CODE, headers=exc.headers()))

    return answered


# ---------------------------------------------------------------- core routes


@app.route("/health", methods=["GET"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.route("/me", methods=["GET"], authorizer=realtime_auth)
def me() -> dict[str, str]:
    return {"user_id": caller_id()}


# ---------------------------------------------------------------- jobs


# The SNS topic the job runner subscribes to: the stage's own (`chalice package` wires the template's
# instead); `.chalice/config.json` gives `run_job` a 900 s lambda_timeout
# (chalicelib.jobs.RUNNER_TIMEOUT_SECONDS), which the jobs' deadline and stale rule assume.
JOBS_TOPIC = get_settings().jobs_topic_arn or f"{app.app_name}-{get_settings().realtime.stage}-jobs"


@app.route("/jobs", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def submit_job() -> Response:
    current = services.current()
    current.request_rates.count(caller_id(), SUBMIT_JOB)  # counted before anything else: one write
    job = current.jobs.submit(caller_id(), json_object())
    return Response(body={"job_id": job.job_id, "status": job.status}, status_code=202)


@app.route("/jobs", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def list_jobs() -> dict[str, Any]:
    params = query_params()
    page = services.current().jobs.page(caller_id(), limit=params.get("limit"), cursor=params.get("cursor"))
    return page.to_json("jobs")


@app.route("/jobs/{job_id}", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def get_job(job_id: str) -> dict[str, Any]:
    return services.current().jobs.get(caller_id(), job_id).to_json()


@app.route("/jobs/{job_id}/cancel", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def cancel_job(job_id: str) -> Response:
    job = services.current().jobs.cancel(caller_id(), job_id)
    # `cancelled`, or `running` until its runner reaches its next progress point; `jobs-updated` follows.
    return Response(body={"job_id": job.job_id, "status": job.status}, status_code=202)


@app.on_sns_message(topic=JOBS_TOPIC)
def run_job(event: SNSEvent) -> None:
    services.current().job_runner.handle(event.message)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep_stale_jobs(event: CloudWatchEvent) -> None:
    services.current().jobs.sweep()


# ---------------------------------------------------------------- chat


@app.route("/messages", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def send_message() -> Response:
    current = services.current()
    current.request_rates.count(caller_id(), SEND_MESSAGE)  # counted before anything else: one write
    body = json_object()
    message = current.chat.send(caller_id(), body.get("to"), body.get("text"))
    return Response(body=message.to_json(), status_code=201)


@app.route("/messages", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def list_messages() -> dict[str, Any]:
    params = query_params()
    page = services.current().chat.conversation(
        caller_id(), params.get("with"), limit=params.get("limit"), cursor=params.get("cursor")
    )
    return page.to_json("messages")


@app.route("/messages/unread-count", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def unread_count() -> dict[str, Any]:
    unread = services.current().chat.unread(caller_id())
    return {"unread": unread.total, "by_user": unread.by_user}


@app.route("/messages/read", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def mark_messages_read() -> dict[str, Any]:
    peer = json_object().get("with")
    marked = services.current().chat.mark_read(caller_id(), peer)
    return {"with": peer, "marked_read": marked}


# ---------------------------------------------------------------- rooms


@app.route("/rooms", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def create_room() -> Response:
    current = services.current()
    current.request_rates.count(caller_id(), CHANGE_ROOMS)  # counted before anything else: one write
    room = current.rooms.create(caller_id(), json_object().get("name"))
    return Response(body={"room_id": room.room_id, **room.to_json()}, status_code=201)


@app.route("/rooms", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def list_rooms() -> dict[str, Any]:
    params = query_params()
    page = services.current().rooms.rooms_of(
        caller_id(), limit=params.get("limit"), cursor=params.get("cursor")
    )
    return page.to_json("rooms")


@app.route("/rooms/{room_id}", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def get_room(room_id: str) -> dict[str, Any]:
    room, members = services.current().rooms.get(caller_id(), room_id)
    return {**room.to_json(), "members": members}


@app.route("/rooms/{room_id}/members", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def add_room_member(room_id: str) -> dict[str, Any]:
    current = services.current()
    current.request_rates.count(caller_id(), CHANGE_ROOMS)
    user_id = json_object().get("user_id")
    added = current.rooms.add_member(caller_id(), room_id, user_id)
    return {"room_id": room_id, "user_id": user_id, "added": added}


@app.route("/rooms/{room_id}/members/{user_id}", methods=["DELETE"], authorizer=realtime_auth)
@answers_errors
def remove_room_member(room_id: str, user_id: str) -> dict[str, Any]:
    services.current().rooms.remove_member(caller_id(), room_id, user_id)
    return {"room_id": room_id, "user_id": user_id, "removed": True}


@app.route("/rooms/{room_id}/messages", methods=["POST"], authorizer=realtime_auth)
@answers_errors
def post_room_message(room_id: str) -> Response:
    current = services.current()
    current.request_rates.count(caller_id(), SEND_ROOM_MESSAGE)  # counted before anything else: one write
    message = current.rooms.post(caller_id(), room_id, json_object().get("text"))
    return Response(body=message.to_json(), status_code=201)


@app.route("/rooms/{room_id}/messages", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def list_room_messages(room_id: str) -> dict[str, Any]:
    params = query_params()
    page = services.current().rooms.messages(
        caller_id(), room_id, limit=params.get("limit"), cursor=params.get("cursor")
    )
    return page.to_json("messages")


@app.route("/rooms/{room_id}/presence", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def room_presence(room_id: str) -> dict[str, Any]:
    return {"users": services.current().rooms.presence(caller_id(), room_id)}


# ---------------------------------------------------------------- payments


@app.route("/webhooks/stripe", methods=["POST"], content_types=["application/json"])
@answers_errors
def stripe_webhook() -> dict[str, Any]:
    """Public; authenticated by the `Stripe-Signature` header over the raw body, not by a token."""
    from chalicelib.settings import ConfigurationError

    request = app.current_request
    assert request is not None
    try:
        result = services.current().stripe_webhooks.handle(
            request.raw_body, request.headers.get("stripe-signature")
        )
    except ConfigurationError:
        # The reason (which variable or parameter is missing) is in the log; Stripe retries the 500.
        raise ChaliceViewError("the Stripe webhook is not configured on this stage") from None
    return result.to_json()


@app.route("/payments", methods=["GET"], authorizer=realtime_auth)
@answers_errors
def list_payments() -> dict[str, Any]:
    params = query_params()
    page = services.current().payments.payments_of(
        caller_id(), limit=params.get("limit"), cursor=params.get("cursor")
    )
    return page.to_json("payments")
