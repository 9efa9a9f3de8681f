"""The app's error bases (`chalicelib.errors`), answered the same way on every route by `app.answers_errors`:
each raised by a real feature behind a real route, as the browser sees it (the status, Chalice's
`{"Code", "Message"}` body, `Retry-After` where the wait is known, and the CORS headers a page on
another origin needs to read all of that), and anything else a 500 that leaks nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.firebase import TokenFactory
from moto.sns.models import sns_backends

from app import answers_errors, app
from chalicelib import errors
from chalicelib.errors import RequestRefused, TemporarilyUnavailable
from chalicelib.settings import Settings
from tests.conftest import FEATURE_TEST_LIMITS, TEST_ENV
from testsupport.api import RestApi

# Routes that call no feature: nothing of theirs can raise a feature's error.
NO_FEATURE = {"/health", "/me"}


class RaisingJobs:
    """Stands in for `JobQueue`: every call raises the error it was given."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def submit(self, owner: str, request: dict[str, Any]) -> Any:
        raise self.error

    def page(self, owner: str, **_: Any) -> Any:
        raise self.error


@pytest.fixture
def api(services: Any, tokens: TokenFactory) -> Iterator[RestApi]:
    with Client(app) as client:
        yield RestApi(client, tokens)


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (RequestRefused("kind is required"), 400, {"Code": "BadRequestError", "Message": "kind is required"}),
        (
            TemporarilyUnavailable("the job could not be queued; please try again"),
            503,
            {"Code": "ServiceUnavailable", "Message": "the job could not be queued; please try again"},
        ),
        (
            RuntimeError("secret internal detail"),
            500,
            {"Code": "InternalServerError", "Message": "An internal server error occurred."},
        ),
    ],
)
def test_a_features_error_is_answered_by_its_base(
    api: RestApi, services: Any, error: Exception, status: int, body: dict[str, str]
) -> None:
    services.jobs = RaisingJobs(error)
    for method, route_body in [("POST", {"kind": "report"}), ("GET", None)]:
        answer = api.call("alice", method, "/jobs", route_body)
        assert answer == (status, body)
        assert "secret internal detail" not in json.dumps(answer)


def test_every_route_that_uses_a_feature_answers_its_errors() -> None:
    unwrapped = [
        f"{method} {path}"
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if path not in NO_FEATURE and getattr(entry.view_function, "__wrapped__", None) is None
    ]
    assert unwrapped == []


def test_the_wrapper_keeps_the_view_its_name_and_arguments() -> None:
    @answers_errors
    def get_thing(thing_id: str) -> dict[str, str]:
        """A view."""
        return {"thing_id": thing_id}

    assert get_thing("t1") == {"thing_id": "t1"}
    assert (get_thing.__name__, get_thing.__doc__) == ("get_thing", "A view.")


# ---------------------------------------------------------------- each base through a real route


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Browser(RestApi):
    def answer(self, uid: str, method: str, path: str, body: Any = None) -> Answer:
        raw = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers(uid), "Origin": "https://demo.example"}
        response = self.client.http.request(method, path, headers=headers, body=raw)
        return Answer(response.status_code, json.loads(response.body), dict(response.headers))


@pytest.fixture
def settings() -> Settings:
    # One message a minute, so the second is refused; everything else as the feature tests have it.
    return Settings.from_env({**TEST_ENV, **FEATURE_TEST_LIMITS, "MESSAGES_RATE_LIMIT": "1/60"})


@pytest.fixture
def browser(services: Any, tokens: TokenFactory) -> Iterator[Browser]:
    services.clock = FakeClock()  # before first use: the `fail` job runs without waiting
    with Client(app) as client:
        yield Browser(client, tokens)


def submit(browser: Browser, uid: str, kind: str, params: dict[str, Any] | None = None) -> str:
    answer = browser.answer(uid, "POST", "/jobs", {"kind": kind, "params": params or {}})
    assert answer.status == 202, answer
    return str(answer.body["job_id"])


def test_400_bad_input(browser: Browser) -> None:
    not_an_object = browser.answer("alice", "POST", "/jobs", ["report"])
    assert (not_an_object.status, not_an_object.body) == (
        400,
        {"Code": "BadRequestError", "Message": "the request body must be a JSON object"},
    )
    unknown_kind = browser.answer("alice", "POST", "/jobs", {"kind": "no-such-kind"})
    assert unknown_kind.status == 400
    assert unknown_kind.body["Code"] == "BadRequestError"
    assert "no-such-kind" in unknown_kind.body["Message"]
    assert "Retry-After" not in unknown_kind.headers


def test_404_what_does_not_exist_or_is_someone_elses(browser: Browser) -> None:
    not_found = {"Code": "NotFoundError", "Message": "job not found"}
    alices = submit(browser, "alice", "report", {"seconds": 5})

    for uid, method, path in [
        ("alice", "GET", "/jobs/not-a-job-id"),
        ("alice", "POST", "/jobs/not-a-job-id/cancel"),
        ("mallory", "GET", f"/jobs/{alices}"),
        ("mallory", "POST", f"/jobs/{alices}/cancel"),
    ]:
        answer = browser.answer(uid, method, path)
        assert (answer.status, answer.body) == (404, not_found), (uid, method, path)
    assert browser.answer("alice", "GET", f"/jobs/{alices}").body["status"] == "queued"


def test_409_cancelling_a_finished_job(browser: Browser, services: Any) -> None:
    job_id = submit(browser, "alice", "fail")
    topic = sns_backends["123456789012"]["us-east-1"].topics[services.settings.jobs_topic_arn]
    [(_, message, *_)] = topic.sent_notifications
    services.job_runner.handle(message)

    answer = browser.answer("alice", "POST", f"/jobs/{job_id}/cancel")

    assert (answer.status, answer.body) == (
        409,
        {
            "Code": "ConflictError",
            "Message": "the job has already finished (failed); only active jobs can be cancelled",
        },
    )
    assert browser.answer("alice", "GET", f"/jobs/{job_id}").body["status"] == "failed"


def test_429_with_retry_after_the_page_can_read(browser: Browser) -> None:
    first = browser.answer("alice", "POST", "/messages", {"to": "bob", "text": "hi"})
    assert first.status == 201, first

    refused = browser.answer("alice", "POST", "/messages", {"to": "bob", "text": "again"})

    assert refused.status == 429
    assert refused.body["Code"] == "TooManyRequestsError"
    assert refused.body["Message"].startswith("too many requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # A page on another origin reads `Retry-After` only if the answer exposes it.
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"].split(",")
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_503_with_retry_after_when_the_queue_fails(browser: Browser, services: Any) -> None:
    # Before the job queue is built: a topic that does not exist, so moto's SNS refuses the publish.
    services.settings = dataclasses.replace(
        services.settings, jobs_topic_arn="arn:aws:sns:us-east-1:123456789012:missing"
    )

    answer = browser.answer("alice", "POST", "/jobs", {"kind": "report", "params": {"seconds": 5}})

    assert (answer.status, answer.body) == (
        503,
        {"Code": "ServiceUnavailable", "Message": "the job could not be queued; please try again"},
    )
    assert answer.headers["Retry-After"] == "5"
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"].split(",")


def test_every_base_has_its_answer() -> None:
    """A new base without a status or a code would reach a caller as a 500."""
    bases = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.AppError) and "STATUS_CODE" in vars(value)
    ]
    assert {(base.STATUS_CODE, base.CODE) for base in bases} == {
        (400, "BadRequestError"),
        (404, "NotFoundError"),
        (409, "ConflictError"),
        (429, "TooManyRequestsError"),
        (503, "ServiceUnavailable"),
    }
