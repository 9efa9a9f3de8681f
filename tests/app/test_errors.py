"""The features' two error bases, answered the same way on every route by `app.answers_errors`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.firebase import TokenFactory

from app import answers_errors, app
from chalicelib.errors import RequestRefused, TemporarilyUnavailable
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
