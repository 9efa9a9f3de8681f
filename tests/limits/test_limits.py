"""Limits on what one signed-in user can make the system spend (OWASP API4), through the REST API.

- At most `MAX_ACTIVE_JOBS_PER_USER` jobs queued or running: the next `POST /jobs` is a 429 with
  `Retry-After`, and leaves no job, no SNS message and no notification behind.
- Per-user rates on `POST /jobs` and `POST /messages` (`JOBS_RATE_LIMIT`, `MESSAGES_RATE_LIMIT`),
  counted in DynamoDB with one conditional write per request: past the rate, a 429 whose
  `Retry-After` is the rest of the window; the next window accepts again.
- `POST /jobs/{id}/cancel`: a queued job is cancelled at once, a running one stops at its next
  progress point; the owner gets `jobs-updated`; another user's id is a 404; cancelled jobs no
  longer count as active.

Time is the services' injectable clock: windows pass without sleeping. Over real sockets on the
local stack: `tests/integration/test_limits_local.py`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.events import connect
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received
from moto.sns.models import sns_backends

from app import app
from chalicelib import services as services_module
from chalicelib.errors import TooManyRequests
from chalicelib.jobs import JobContext, JobKinds, RunOutcome
from chalicelib.jobs.builtin import report, report_params
from chalicelib.jobs.model import ACTIVE_HORIZON_SECONDS
from chalicelib.jobs.store import JobCancelled
from chalicelib.limits import TTL_SLACK_SECONDS, Rate, RequestRates
from chalicelib.settings import (
    DEFAULT_JOBS_RATE_LIMIT,
    DEFAULT_MAX_ACTIVE_JOBS,
    DEFAULT_MAX_ACTIVE_JOBS_PER_USER,
    DEFAULT_MESSAGES_RATE_LIMIT,
    ConfigurationError,
    Settings,
)
from tests.conftest import TEST_ENV, services_for

JOBS_UPDATED = {"event": "jobs-updated"}
CHAT_UPDATED = {"event": "chat-messages-updated"}
# 1_700_000_000 s is 40 s before a minute's end and 0 s into a 10 s window.
START = 1_700_000_000.0
REPORT = {"kind": "report", "params": {"seconds": 5}}


class StepKinds:
    """`report`, and `steps`: ten steps of a second, calling `at_step(ctx, n)` before each one's progress."""

    def __init__(self) -> None:
        self.registry = JobKinds()
        self.registry.register("report", params=report_params)(report)
        self.at_step: Any = lambda ctx, step: None
        self.steps_done = 0

        @self.registry.register("steps")
        def steps(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
            for step in range(1, 11):
                ctx.sleep(1)
                self.at_step(ctx, step)
                ctx.progress(step * 10)
                self.steps_done = step
            return {"steps": 10}


@dataclasses.dataclass
class Limited:
    """The app with limits set for the test, on moto, its clock and kinds the test's."""

    services: Any
    client: Client
    tokens: TokenFactory
    clock: FakeClock
    kinds: StepKinds

    def headers(self, uid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint(uid)}", "Content-Type": "application/json"}

    def post(self, uid: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.http.post(path, headers=self.headers(uid), body=json.dumps(body or {}))

    def get(self, uid: str, path: str) -> Any:
        response = self.client.http.get(path, headers=self.headers(uid))
        assert response.status_code == 200, response.body
        return json.loads(response.body)

    def submit(self, uid: str, request: dict[str, Any] = REPORT) -> str:
        response = self.post(uid, "/jobs", request)
        assert response.status_code == 202, response.body
        return str(json.loads(response.body)["job_id"])

    def jobs(self, uid: str) -> list[dict[str, Any]]:
        return list(self.get(uid, "/jobs")["jobs"])

    def published(self) -> list[str]:
        topic = sns_backends["123456789012"]["us-east-1"].topics[self.services.settings.jobs_topic_arn]
        return [message for _, message, *_ in topic.sent_notifications]

    def run(self, message: str) -> RunOutcome:
        outcome: RunOutcome = self.services.job_runner.handle(message)
        return outcome


# The shipped defaults (the test environment relaxes them for the feature tests).
DEFAULT_LIMITS = {
    "max_active_jobs_per_user": DEFAULT_MAX_ACTIVE_JOBS_PER_USER,
    "max_active_jobs": DEFAULT_MAX_ACTIVE_JOBS,
    "jobs_rate_limit": DEFAULT_JOBS_RATE_LIMIT,
    "messages_rate_limit": DEFAULT_MESSAGES_RATE_LIMIT,
}


@pytest.fixture
def limits() -> dict[str, Any]:
    """What a test sets other than the shipped defaults."""
    return {}


@pytest.fixture
def limited(
    settings: Settings,
    limits: dict[str, Any],
    aws: dict[str, Any],
    firebase_certs: Any,
    management_api_url: str,
    management_api: Any,
    tokens: TokenFactory,
) -> Iterator[Limited]:
    built = services_for(
        dataclasses.replace(settings, **{**DEFAULT_LIMITS, **limits}),
        management_api_url,
        dynamodb=aws["dynamodb"],
        sns=aws["sns"],
    )
    clock = FakeClock(START)
    kinds = StepKinds()
    built.clock = clock  # before first use: every feature and the limits read this clock
    built.job_kinds = kinds.registry
    services_module.use(built)
    try:
        with Client(app) as client:
            yield Limited(built, client, tokens, clock, kinds)
    finally:
        services_module.use(None)
        built.realtime.close()


def assert_429(response: Any, retry_after: int) -> dict[str, Any]:
    assert response.status_code == 429, response.body
    assert response.headers["Retry-After"] == str(retry_after)
    body = dict(json.loads(response.body))
    assert body["Code"] == "TooManyRequestsError"
    return body


# ---------------------------------------------------------------- active jobs


def test_the_fourth_active_job_is_refused_with_429_and_leaves_nothing_behind(
    limited: Limited, management_api: Any
) -> None:
    connect(limited.client, limited.tokens, "alice", "a1")
    first_three = [limited.submit("alice") for _ in range(3)]
    response = limited.post("alice", "/jobs", REPORT)
    body = assert_429(response, 10)
    assert "3 active jobs" in body["Message"]
    # No job row, no SNS message, no notification.
    assert sorted(job["job_id"] for job in limited.jobs("alice")) == sorted(first_three)
    assert len(limited.published()) == 3
    assert received(management_api, "a1") == []
    # Another user is not held back by alice's jobs.
    limited.submit("bob")


def test_a_finished_or_cancelled_job_frees_its_slot(limited: Limited) -> None:
    jobs = [limited.submit("alice") for _ in range(3)]
    assert limited.post("alice", "/jobs", REPORT).status_code == 429
    assert limited.run(limited.published()[0]) is RunOutcome.RAN  # one finishes
    fourth = limited.submit("alice")
    assert limited.post("alice", "/jobs", REPORT).status_code == 429
    cancelled = limited.post("alice", f"/jobs/{jobs[1]}/cancel")
    assert json.loads(cancelled.body) == {"job_id": jobs[1], "status": "cancelled"}
    limited.submit("alice")
    statuses = {job["job_id"]: job["status"] for job in limited.jobs("alice")}
    assert statuses[jobs[0]] == "succeeded" and statuses[jobs[1]] == "cancelled"
    assert statuses[fourth] == "queued"


def test_jobs_older_than_any_active_job_can_be_no_longer_count(limited: Limited) -> None:
    """A job whose message was lost stays `queued` until the sweep fails it; past the horizon it no
    longer holds a slot even before that."""
    for _ in range(3):
        limited.submit("alice")
    limited.clock.advance(ACTIVE_HORIZON_SECONDS + 1)
    limited.submit("alice")


@pytest.mark.parametrize("limits", [{"max_active_jobs_per_user": 2}])
def test_parallel_submits_never_overshoot_the_active_limit(limited: Limited) -> None:
    """Counted after storing, every active job included: the submit counting last sees every admitted one,
    so a race may refuse more than it must but never admits more than the limit."""
    answers: list[int] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        barrier.wait()
        answers.append(limited.post("carol", "/jobs", REPORT).status_code)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    active = [job for job in limited.jobs("carol") if job["status"] in ("queued", "running")]
    assert len(active) == answers.count(202) <= 2
    assert sorted(set(answers)) in ([202, 429], [429])
    # The refused ones left nothing behind: whatever the race admitted, the limit is reached exactly then.
    for _ in range(2 - len(active)):
        limited.submit("carol")
    assert limited.post("carol", "/jobs", REPORT).status_code == 429


# ---------------------------------------------------------------- the stage's runners, shared fairly


def test_a_crowd_of_accounts_cannot_hold_every_runner_slot(limited: Limited) -> None:
    """Issue 21's case: 7 accounts x 3 jobs would fill the runner's 20 slots. Past half of them, each user
    gets one active job: the 7 hold 13 at most, and 7 other users still get theirs at once."""
    accepted: dict[str, int] = {}
    for n in range(7):
        for _ in range(3):
            response = limited.post(f"crowd{n}", "/jobs", REPORT)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "10"
                assert "one active job per user" in json.loads(response.body)["Message"]
            accepted[f"crowd{n}"] = accepted.get(f"crowd{n}", 0) + (response.status_code == 202)
    # Three users take 9 slots; the fourth's first job makes 10 (half); then one each.
    assert list(accepted.values()) == [3, 3, 3, 1, 1, 1, 1]
    for n in range(7):
        limited.submit(f"other{n}")  # 202: a slot for each of them
    assert len(limited.published()) == 13 + 7 == DEFAULT_MAX_ACTIVE_JOBS
    assert_429(limited.post("late", "/jobs", REPORT), 30)  # the stage is full


@pytest.mark.parametrize("limits", [{"max_active_jobs": 4}])
def test_a_full_stage_refuses_with_429_and_leaves_nothing_behind(
    limited: Limited, management_api: Any
) -> None:
    connect(limited.client, limited.tokens, "erin", "e1")
    limited.submit("alice")
    limited.submit("alice")  # 2 of 4: not yet busy
    assert_429(limited.post("alice", "/jobs", REPORT), 10)  # busy: a third of alice's waits
    limited.submit("bob")
    limited.submit("carol")
    body = assert_429(limited.post("erin", "/jobs", REPORT), 30)
    assert "at most 4 jobs at once" in body["Message"]
    assert limited.jobs("erin") == [] and len(limited.published()) == 4
    assert received(management_api, "e1") == []
    # A finished job frees a runner's slot for the next user.
    assert limited.run(limited.published()[0]) is RunOutcome.RAN
    limited.submit("erin")


# ---------------------------------------------------------------- request rates


@pytest.mark.parametrize("limits", [{"jobs_rate_limit": Rate(4, 60), "max_active_jobs_per_user": 10}])
def test_post_jobs_past_its_rate_is_429_until_the_window_ends(limited: Limited) -> None:
    for _ in range(4):
        limited.submit("alice")
    assert_429(limited.post("alice", "/jobs", REPORT), 40)  # the minute ends 40 s after START
    limited.clock.advance(39)
    assert_429(limited.post("alice", "/jobs", REPORT), 1)
    assert len(limited.jobs("alice")) == 4 and len(limited.published()) == 4  # nothing behind
    limited.submit("bob")  # per user
    limited.clock.advance(1)  # the next window
    for _ in range(4):
        limited.submit("alice")  # a refused request was not counted: the whole rate again
    assert_429(limited.post("alice", "/jobs", REPORT), 60)


@pytest.mark.parametrize("limits", [{"jobs_rate_limit": Rate(2, 60)}])
def test_bad_requests_count_toward_the_rate(limited: Limited) -> None:
    assert limited.post("alice", "/jobs", {"kind": "nope"}).status_code == 400
    assert limited.post("alice", "/jobs", {"kind": "nope"}).status_code == 400
    assert_429(limited.post("alice", "/jobs", REPORT), 40)
    assert limited.jobs("alice") == []


@pytest.mark.parametrize("limits", [{"messages_rate_limit": Rate(3, 10)}])
def test_post_messages_past_its_rate_is_429_and_sends_nothing(limited: Limited, management_api: Any) -> None:
    connect(limited.client, limited.tokens, "bob", "b1")
    connect(limited.client, limited.tokens, "alice", "a1")
    for n in range(3):
        response = limited.post("alice", "/messages", {"to": "bob", "text": f"hi {n}"})
        assert response.status_code == 201, response.body
    limited.clock.advance(4)
    assert_429(limited.post("alice", "/messages", {"to": "bob", "text": "one too many"}), 6)
    conversation = limited.get("bob", "/messages?with=alice")["messages"]
    assert sorted(m["text"] for m in conversation) == ["hi 0", "hi 1", "hi 2"]
    assert limited.get("bob", "/messages/unread-count")["unread"] == 3
    assert received(management_api, "b1") == [CHAT_UPDATED] * 3
    assert received(management_api, "a1") == [CHAT_UPDATED] * 3
    limited.clock.advance(6)
    assert limited.post("alice", "/messages", {"to": "bob", "text": "later"}).status_code == 201
    assert received(management_api, "b1") == [CHAT_UPDATED] * 4


def test_one_conditional_write_per_request_with_a_ttl(settings: Settings, aws: dict[str, Any]) -> None:
    calls: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(aws["dynamodb"], name)

    clock = FakeClock(START + 5)
    rates = RequestRates(settings.rate_limits_table, Recording(), clock, {"x": Rate(2, 10)})  # type: ignore[arg-type]
    rates.count("alice", "x")
    rates.count("alice", "x")
    with pytest.raises(TooManyRequests) as refused:
        rates.count("alice", "x")
    assert refused.value.retry_after == 5
    assert calls == ["update_item"] * 3
    (item,) = aws["dynamodb"].scan(TableName=settings.rate_limits_table)["Items"]
    assert item["n"] == {"N": "2"}  # the refused request wrote nothing
    assert int(item["expires_at"]["N"]) == int(START) + 10 + TTL_SLACK_SECONDS
    ttl = aws["dynamodb"].describe_time_to_live(TableName=settings.rate_limits_table)
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


@pytest.mark.parametrize("path", ["/jobs", "/messages"])
def test_a_failing_rate_limits_table_is_a_503_with_retry_after_and_nothing_done(
    limited: Limited, management_api: Any, path: str
) -> None:
    """Failing closed (nothing let through uncounted), as a temporary error the client may retry."""
    connect(limited.client, limited.tokens, "bob", "b1")
    limited.services.dynamodb.delete_table(TableName=limited.services.settings.rate_limits_table)
    body = REPORT if path == "/jobs" else {"to": "bob", "text": "hi"}
    response = limited.post("alice", path, body)
    assert response.status_code == 503, response.body
    assert response.headers["Retry-After"] == "5"
    assert json.loads(response.body) == {
        "Code": "ServiceUnavailable",
        "Message": "requests cannot be counted right now; please try again shortly",
    }
    assert limited.published() == [] and received(management_api, "b1") == []


def test_rates_are_read_from_settings() -> None:
    settings = Settings.from_env({**TEST_ENV, "JOBS_RATE_LIMIT": "5/30", "MAX_ACTIVE_JOBS_PER_USER": "2"})
    assert settings.jobs_rate_limit == Rate(5, 30)
    assert settings.max_active_jobs_per_user == 2
    assert Settings.from_env({}).messages_rate_limit == Rate(20, 10)
    assert Settings.from_env({}).jobs_rate_limit == Rate(10, 60)
    assert Settings.from_env({}).max_active_jobs_per_user == 3
    for bad in ("5", "0/10", "5/0", "five/10", "-1/10"):
        with pytest.raises(ConfigurationError, match="MESSAGES_RATE_LIMIT"):
            Settings.from_env({**TEST_ENV, "MESSAGES_RATE_LIMIT": bad})


# ---------------------------------------------------------------- cancel


def test_cancelling_a_queued_job_is_immediate_and_the_runner_never_runs_it(
    limited: Limited, management_api: Any
) -> None:
    connect(limited.client, limited.tokens, "alice", "a1")
    job_id = limited.submit("alice")
    response = limited.post("alice", f"/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert json.loads(response.body) == {"job_id": job_id, "status": "cancelled"}
    assert received(management_api, "a1") == [JOBS_UPDATED]
    assert limited.run(limited.published()[0]) is RunOutcome.DUPLICATE
    assert limited.get("alice", f"/jobs/{job_id}")["status"] == "cancelled"
    # Again: nothing changes, nobody is notified again.
    assert json.loads(limited.post("alice", f"/jobs/{job_id}/cancel").body)["status"] == "cancelled"
    assert received(management_api, "a1") == [JOBS_UPDATED]


def test_a_running_job_stops_at_its_next_progress_point_and_is_cancelled(
    limited: Limited, management_api: Any
) -> None:
    connect(limited.client, limited.tokens, "alice", "a1")
    job_id = limited.submit("alice", {"kind": "steps"})
    answers: list[dict[str, Any]] = []

    def cancel_at_step_3(ctx: JobContext, step: int) -> None:
        if step == 3:
            answers.append(json.loads(limited.post("alice", f"/jobs/{job_id}/cancel").body))

    limited.kinds.at_step = cancel_at_step_3
    assert limited.run(limited.published()[0]) is RunOutcome.CANCELLED
    assert answers == [{"job_id": job_id, "status": "running"}]  # the runner stops it
    assert limited.kinds.steps_done == 2  # step 3's progress write found the cancel
    job = limited.get("alice", f"/jobs/{job_id}")
    assert (job["status"], job["progress"], job["result"]) == ("cancelled", 20, None)
    frames = received(management_api, "a1")
    assert frames and set(map(json.dumps, frames)) == {json.dumps(JOBS_UPDATED)}
    limited.submit("alice")  # no longer active


def test_the_heartbeat_finds_a_cancel_too(limited: Limited) -> None:
    """A kind that reports no progress for a while is stopped by its heartbeat's write."""
    store = limited.services.job_store
    job_id = limited.submit("alice")
    claimed, job = store.claim("alice", job_id, token="t1", now_ms=1)
    assert claimed and job is not None
    changed, requested = store.cancel("alice", job_id, now_ms=2)
    assert changed and requested is not None and requested.status == "running"
    with pytest.raises(JobCancelled):
        store.beat("alice", job_id, token="t1", now_ms=3)
    store.finish_cancelled("alice", job_id, token="t1", now_ms=4)
    assert limited.get("alice", f"/jobs/{job_id}")["status"] == "cancelled"


def test_a_cancel_accepted_while_running_is_never_followed_by_succeeded(
    limited: Limited, management_api: Any
) -> None:
    """The owner got 202 `running`; the kind then returned before any progress point: it ends cancelled."""
    connect(limited.client, limited.tokens, "alice", "a1")
    answers: list[dict[str, Any]] = []

    @limited.kinds.registry.register("last-step")
    def last_step(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
        answers.append(json.loads(limited.post("alice", f"/jobs/{ctx.job_id}/cancel").body))
        return {"done": True}  # no progress write, no sleep: nothing checked the cancel

    job_id = limited.submit("alice", {"kind": "last-step"})
    assert limited.run(limited.published()[0]) is RunOutcome.CANCELLED
    assert answers == [{"job_id": job_id, "status": "running"}]
    job = limited.get("alice", f"/jobs/{job_id}")
    assert (job["status"], job["result"]) == ("cancelled", None)
    assert received(management_api, "a1")[-1] == JOBS_UPDATED


def test_a_cancelled_job_in_a_long_step_stays_alive_until_it_stops(limited: Limited) -> None:
    """The heartbeat that found the cancel keeps beating: a long step does not make the job look dead (the
    sweep would fail it as stale); it ends cancelled when the step returns."""
    from chalicelib.jobs import STALE_AFTER_SECONDS, JobRunner

    services = limited.services
    release, started = threading.Event(), threading.Event()

    @limited.kinds.registry.register("long-step")
    def long_step(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
        started.set()
        release.wait(30)  # a step that neither sleeps through ctx nor reports progress
        return {}

    services.job_runner = JobRunner(
        services.job_store, services.notifier, limited.kinds.registry, limited.clock, heartbeat_seconds=0.02
    )
    job_id = limited.submit("alice", {"kind": "long-step"})
    outcome: list[RunOutcome] = []
    runner = threading.Thread(target=lambda: outcome.append(limited.run(limited.published()[0])))
    runner.start()
    try:
        assert started.wait(10)
        assert json.loads(limited.post("alice", f"/jobs/{job_id}/cancel").body)["status"] == "running"
        threading.Event().wait(0.3)  # heartbeats find the cancel
        limited.clock.advance(STALE_AFTER_SECONDS + 30)  # the step goes on for minutes
        threading.Event().wait(0.3)  # heartbeats at the new time
        assert services.jobs.sweep() == 0
        assert limited.get("alice", f"/jobs/{job_id}")["status"] == "running"
    finally:
        release.set()
        runner.join(30)
    assert outcome == [RunOutcome.CANCELLED]
    assert limited.get("alice", f"/jobs/{job_id}")["status"] == "cancelled"


def test_cancel_of_someone_elses_or_an_unknown_job_is_404_and_changes_nothing(limited: Limited) -> None:
    job_id = limited.submit("alice")
    for path in (f"/jobs/{job_id}/cancel", "/jobs/01JD5Q6V3ZK8W1X0J9N2C4B7TA/cancel", "/jobs/nope/cancel"):
        response = limited.post("mallory", path)
        assert response.status_code == 404, path
        assert json.loads(response.body) == {"Code": "NotFoundError", "Message": "job not found"}
    assert limited.get("alice", f"/jobs/{job_id}")["status"] == "queued"


def test_cancel_of_a_finished_job_is_409(limited: Limited) -> None:
    job_id = limited.submit("alice")
    assert limited.run(limited.published()[0]) is RunOutcome.RAN
    response = limited.post("alice", f"/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert "already finished (succeeded)" in json.loads(response.body)["Message"]
    assert limited.get("alice", f"/jobs/{job_id}")["status"] == "succeeded"
