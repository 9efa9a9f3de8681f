"""Long-running jobs end to end: POST /jobs -> SNS (moto) -> the `run_job` Lambda -> GET /jobs.

Every request carries a real RSA-signed token; DynamoDB, SNS and the Management API
run in moto. Time is a fake clock, so a 3-second report runs instantly.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.testing.clock import FakeClock
from chalice_realtime.testing.dynamodb import CountingDynamoDB
from chalice_realtime.testing.events import connect
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received
from moto.dynamodb.models import dynamodb_backends
from moto.sns.models import sns_backends

import app as app_module
from chalicelib.jobs import (
    QUEUED_STALE_SECONDS,
    RUN_DEADLINE_SECONDS,
    STALE_AFTER_SECONDS,
    JobContext,
    JobKinds,
    JobRunner,
    RunOutcome,
)
from chalicelib.jobs.builtin import fail, report, report_params
from chalicelib.jobs.kinds import int_param, no_params
from chalicelib.jobs.store import LeaseLost
from chalicelib.pagination import encode_cursor
from testsupport.api import RestApi

EVENT = {"event": "jobs-updated"}


class SteeredKinds:
    """A registry with the shipped kinds plus ones the tests steer."""

    def __init__(self) -> None:
        self.registry = JobKinds()
        self.registry.register("report", params=report_params)(report)
        self.registry.register("fail", params=no_params)(fail)
        self.runs: list[str] = []
        self.during: Callable[[JobContext], None] = lambda ctx: None

        @self.registry.register("probe", params=lambda p: {"n": int_param(p, "n", 0, 100)} if p else {})
        def probe(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
            self.runs.append(ctx.job_id)
            self.during(ctx)
            return {"ran": len(self.runs)}


class Killed(BaseException):
    """Stands for the runner's process dying mid-job: nothing after it runs."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kinds() -> SteeredKinds:
    return SteeredKinds()


@pytest.fixture(autouse=True)  # before `client`: the app's components are built from it
def dynamodb(services: Any, clock: FakeClock, kinds: SteeredKinds) -> CountingDynamoDB:
    counting = CountingDynamoDB(services.dynamodb)
    # Installed before the jobs components are built from them.
    services.dynamodb = counting
    services.clock = clock
    services.job_kinds = kinds.registry
    return counting


class Api(RestApi):
    """The jobs routes, as a given user."""

    def post_raw(self, uid: str, body: str) -> Any:
        return self.post(uid, "/jobs", body)

    def submit(self, uid: str, kind: str, params: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"kind": kind}
        if params is not None:
            body["params"] = params
        response = self.post_raw(uid, json.dumps(body))
        assert response.status_code == 202, response.body
        return str(json.loads(response.body)["job_id"])

    def job(self, uid: str, job_id: str) -> dict[str, Any]:
        return self.ok(uid, f"/jobs/{job_id}")

    def jobs(self, uid: str, query: str = "") -> dict[str, Any]:
        return self.ok(uid, f"/jobs?{query}")


@pytest.fixture
def api(client: Client, tokens: TokenFactory) -> Api:
    return Api(client, tokens)


def published(services: Any) -> list[str]:
    """The messages moto's SNS topic received, oldest first."""
    topic = sns_backends["123456789012"]["us-east-1"].topics[services.settings.jobs_topic_arn]
    return [message for _, message, *_ in topic.sent_notifications]


def deliver(client: Client, message: str) -> None:
    """One SNS delivery to the `run_job` Lambda."""
    client.lambda_.invoke("run_job", client.events.generate_sns_event(message=message))


def job_rows(aws: dict[str, Any], services: Any) -> list[dict[str, Any]]:
    # The test's own look at the whole table; the app itself never scans.
    return list(aws["dynamodb"].scan(TableName=services.settings.jobs_table)["Items"])


def row(aws: dict[str, Any], services: Any, owner: str, job_id: str) -> dict[str, Any]:
    key = {"owner": {"S": owner}, "job_id": {"S": job_id}}
    return dict(aws["dynamodb"].get_item(TableName=services.settings.jobs_table, Key=key)["Item"])


# ---------------------------------------------------------------- the whole flow


def test_a_report_runs_from_post_through_sns_to_the_owner_only(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any, services: Any, clock: FakeClock
) -> None:
    connect(client, tokens, "alice", "a1", "a2")
    connect(client, tokens, "bob", "b1")

    response = api.post_raw("alice", json.dumps({"kind": "report", "params": {"seconds": 3}}))

    assert response.status_code == 202
    body = json.loads(response.body)
    assert body == {"job_id": body["job_id"], "status": "queued"}
    queued = api.job("alice", body["job_id"])
    assert (queued["status"], queued["progress"], queued["result"], queued["error"]) == (
        "queued",
        0,
        None,
        None,
    )
    assert queued["kind"] == "report" and queued["params"] == {"seconds": 3}

    [message] = published(services)
    assert json.loads(message) == {"owner": "alice", "job_id": body["job_id"]}
    deliver(client, message)

    done = api.job("alice", body["job_id"])
    assert done["status"] == "succeeded"
    assert done["progress"] == 100
    assert done["result"] == {"summary": "report of 3 steps", "steps": 3, "checksum": 14}
    assert done["error"] is None
    assert done["created_at"] == "2023-11-14T22:13:20.000Z"
    assert done["updated_at"] == "2023-11-14T22:13:23.000Z"
    # running, progress at 33/66/100 (one write a second), succeeded: on every connection of alice.
    assert received(management_api, "a1") == [EVENT] * 5
    assert received(management_api, "a2") == [EVENT] * 5
    assert received(management_api, "b1") == []


def test_progress_is_visible_while_the_job_runs(
    api: Api, client: Client, kinds: SteeredKinds, services: Any
) -> None:
    seen: list[dict[str, Any]] = []

    def during(ctx: JobContext) -> None:
        ctx.sleep(2)
        ctx.progress(40)
        seen.append(api.job("alice", ctx.job_id))

    kinds.during = during
    job_id = api.submit("alice", "probe", {})
    deliver(client, published(services)[0])

    assert [(s["status"], s["progress"]) for s in seen] == [("running", 40)]
    assert api.job("alice", job_id)["status"] == "succeeded"


def test_progress_is_written_and_notified_at_most_once_a_second(
    api: Api, client: Client, tokens: TokenFactory, kinds: SteeredKinds, management_api: Any, services: Any
) -> None:
    connect(client, tokens, "alice", "a1")
    seen: list[int] = []

    def during(ctx: JobContext) -> None:
        for percent in range(1, 100):
            ctx.sleep(0.1)
            ctx.progress(percent)
            if percent % 10 == 0:
                seen.append(api.job("alice", ctx.job_id)["progress"])

    kinds.during = during
    api.submit("alice", "probe", {})
    deliver(client, published(services)[0])

    # 99 updates over 9.9 s: about one write a second, so readers see a recent value, never a stale one.
    assert seen == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert received(management_api, "a1") == [EVENT] * (1 + 9 + 1)


def test_the_fail_kind_ends_failed_with_a_readable_error(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any, services: Any
) -> None:
    connect(client, tokens, "alice", "a1")
    job_id = api.submit("alice", "fail")
    deliver(client, published(services)[0])

    job = api.job("alice", job_id)
    assert job["status"] == "failed"
    assert job["error"] == "this job fails on purpose (kind 'fail')"
    assert job["result"] is None
    assert job["progress"] == 50
    assert received(management_api, "a1") == [EVENT] * 3  # running, 50 %, failed


def test_an_unexpected_error_in_a_kind_fails_the_job_without_leaking_internals(
    api: Api, client: Client, kinds: SteeredKinds, services: Any
) -> None:
    def during(ctx: JobContext) -> None:
        raise KeyError("secret-internal-detail")

    kinds.during = during
    job_id = api.submit("alice", "probe", {})
    deliver(client, published(services)[0])

    job = api.job("alice", job_id)
    assert job["status"] == "failed"
    assert job["error"] == "the job failed because of an internal error"


def test_a_job_past_its_deadline_fails_before_the_lambda_timeout(
    api: Api, client: Client, kinds: SteeredKinds, services: Any, clock: FakeClock
) -> None:
    kinds.during = lambda ctx: ctx.sleep(RUN_DEADLINE_SECONDS + 300)
    job_id = api.submit("alice", "probe", {})
    started = clock.now()
    deliver(client, published(services)[0])

    job = api.job("alice", job_id)
    assert job["status"] == "failed"
    assert job["error"] == f"the job ran out of time (limit {RUN_DEADLINE_SECONDS} s)"
    assert clock.now() - started == RUN_DEADLINE_SECONDS


# ---------------------------------------------------------------- who may read what


def test_reading_another_users_job_or_an_unknown_id_is_404(api: Api, services: Any) -> None:
    job_id = api.submit("alice", "report", {"seconds": 5})

    for path in (f"/jobs/{job_id}", "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/jobs/not-a-job-id"):
        response = api.get("bob", path)
        assert response.status_code == 404
        assert json.loads(response.body) == {"Code": "NotFoundError", "Message": "job not found"}
    assert api.jobs("bob") == {"jobs": [], "next_cursor": None}
    assert [job["job_id"] for job in api.jobs("alice")["jobs"]] == [job_id]


def test_job_routes_need_a_token(client: Client) -> None:
    assert client.http.get("/jobs").status_code == 401
    assert (
        client.http.post("/jobs", body="{}", headers={"Content-Type": "application/json"}).status_code == 401
    )


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{", "Error Parsing JSON"),
        ("[]", "the request body must be a JSON object"),
        ('"report"', "the request body must be a JSON object"),
        ("null", "the request body must be a JSON object"),
        ("{}", "kind is required"),
        ('{"kind": 5}', "kind must be a string, one of: fail, probe, report"),
        ('{"kind": ""}', "kind must be a string"),
        ('{"kind": ["report"]}', "kind must be a string"),
        ('{"kind": "nope"}', "unknown kind 'nope'; expected one of: fail, probe, report"),
        ('{"kind": "report"}', "invalid params for 'report': seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": null}', "params must be a JSON object"),
        ('{"kind": "report", "params": [1]}', "params must be a JSON object"),
        ('{"kind": "report", "params": {"seconds": 0}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": 601}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": -1}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": "10"}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": true}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": 1.5}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": 1e999}}', "seconds must be an integer from 1 to 600"),
        ('{"kind": "report", "params": {"seconds": 5, "rows": 1}}', "unknown parameter 'rows'"),
        ('{"kind": "fail", "params": {"x": 1}}', "invalid params for 'fail': unknown parameter 'x'"),
        ('{"kind": "fail", "priority": 1}', "unknown field 'priority'; expected kind and params"),
    ],
)
def test_bad_input_is_a_400_with_the_reason_and_nothing_is_written(
    api: Api, aws: dict[str, Any], services: Any, body: str, message: str
) -> None:
    response = api.post_raw("alice", body)

    assert response.status_code == 400, response.body
    error = json.loads(response.body)
    assert error["Code"] == "BadRequestError"
    assert message in error["Message"]
    assert job_rows(aws, services) == []
    assert published(services) == []


def test_whole_number_floats_are_accepted_as_seconds(api: Api, services: Any) -> None:
    job_id = api.submit("alice", "report", {"seconds": 600.0})
    assert api.job("alice", job_id)["params"] == {"seconds": 600}


# ---------------------------------------------------------------- publish failure


def test_a_failed_publish_marks_the_job_failed_and_answers_503(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any, services: Any, aws: dict[str, Any]
) -> None:
    connect(client, tokens, "alice", "a1")
    # Installed before the job queue is built: a topic that does not exist, so moto's SNS refuses.
    services.settings = dataclasses.replace(
        services.settings, jobs_topic_arn="arn:aws:sns:us-east-1:123456789012:missing"
    )

    response = api.post_raw("alice", json.dumps({"kind": "report", "params": {"seconds": 5}}))

    assert response.status_code == 503
    assert json.loads(response.body) == {
        "Code": "ServiceUnavailable",
        "Message": "the job could not be queued; please try again",
    }
    [job] = api.jobs("alice")["jobs"]
    assert job["status"] == "failed"
    assert job["error"] == "the job could not be queued; please try again"
    assert received(management_api, "a1") == [EVENT]
    # Nothing is left for the sweep: the job is no longer active.
    assert "active_shard" not in job_rows(aws, services)[0]


# ---------------------------------------------------------------- at-least-once delivery


def test_the_same_message_delivered_three_times_runs_the_job_once(
    api: Api, client: Client, tokens: TokenFactory, kinds: SteeredKinds, management_api: Any, services: Any
) -> None:
    connect(client, tokens, "alice", "a1")
    job_id = api.submit("alice", "probe", {})
    [message] = published(services)

    for _ in range(3):
        deliver(client, message)

    assert kinds.runs == [job_id]
    assert api.job("alice", job_id)["result"] == {"ran": 1}
    assert received(management_api, "a1") == [EVENT] * 2  # running, succeeded


@pytest.fixture
def atomic_moto_updates(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional update atomically; moto checks then writes without a lock.

    Serializing moto's UpdateItem restores DynamoDB's guarantee, so the test below checks the
    app's use of it, not moto's races.
    """
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    original = backend.update_item
    lock = threading.Lock()

    def update_item(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    monkeypatch.setattr(backend, "update_item", update_item)


def test_three_concurrent_deliveries_run_the_job_once(
    api: Api,
    client: Client,
    tokens: TokenFactory,
    kinds: SteeredKinds,
    management_api: Any,
    services: Any,
    atomic_moto_updates: None,
) -> None:
    connect(client, tokens, "alice", "a1")
    job_id = api.submit("alice", "probe", {})
    event = client.events.generate_sns_event(message=published(services)[0])
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def lambda_invocation() -> None:
        try:
            start.wait()
            # The Lambda entry point itself, as the runtime calls it (event, context).
            app_module.run_job(event, None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lambda_invocation) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert kinds.runs == [job_id]
    assert api.job("alice", job_id)["status"] == "succeeded"
    assert received(management_api, "a1") == [EVENT] * 2


@pytest.mark.parametrize("kind", ["probe", "fail"])
def test_a_finished_job_never_moves_back(
    api: Api, client: Client, tokens: TokenFactory, management_api: Any, services: Any, kind: str
) -> None:
    connect(client, tokens, "alice", "a1")
    job_id = api.submit("alice", kind, {})
    [message] = published(services)
    deliver(client, message)
    finished = api.job("alice", job_id)
    frames = len(received(management_api, "a1"))

    deliver(client, message)
    store = services.job_store
    claimed, _ = store.claim("alice", job_id, token="late-runner", now_ms=2_000_000_000_000)
    with pytest.raises(LeaseLost):
        store.finish("alice", job_id, token="late-runner", now_ms=2_000_000_000_000, result={})

    assert claimed is False
    assert store.fail_if_stale("alice", job_id, status="running", now_ms=9_000_000_000_000) is None
    assert api.job("alice", job_id) == finished
    assert len(received(management_api, "a1")) == frames


def test_a_late_message_for_a_job_that_failed_to_publish_does_not_run_it(
    api: Api, client: Client, kinds: SteeredKinds, services: Any
) -> None:
    job_id = api.submit("alice", "probe", {})
    services.job_store.fail_queued("alice", job_id, error="the job could not be queued", now_ms=1)

    deliver(client, published(services)[0])

    assert kinds.runs == []
    assert api.job("alice", job_id)["status"] == "failed"


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[]",
        '{"owner": "alice"}',
        '{"owner": "alice", "job_id": "../../etc"}',
        '{"owner": "a/b", "job_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}',
        '{"owner": "alice", "job_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}',
    ],
)
def test_a_malformed_or_unknown_message_is_dropped_without_writing(
    client: Client, aws: dict[str, Any], services: Any, message: str
) -> None:
    deliver(client, message)
    assert job_rows(aws, services) == []


# ---------------------------------------------------------------- crash mid-job: the stale rule


@pytest.fixture
def crashed_job(api: Api, client: Client, tokens: TokenFactory, kinds: SteeredKinds, services: Any) -> str:
    """A job whose runner died at 30 %: it is left `running`, and its heartbeat stops."""
    connect(client, tokens, "alice", "a1", "a2")
    connect(client, tokens, "bob", "b1")

    def during(ctx: JobContext) -> None:
        ctx.sleep(1)
        ctx.progress(30)
        raise Killed

    kinds.during = during
    job_id = api.submit("alice", "probe", {})
    with pytest.raises(Killed):
        deliver(client, published(services)[0])
    assert api.job("alice", job_id)["status"] == "running"
    return job_id


STALE_ERROR = (
    f"the job stopped responding (no heartbeat for {STALE_AFTER_SECONDS} s) "
    "and was marked failed; please try again"
)


def assert_failed_as_stale(api: Api, management_api: Any, job_id: str, frames_before: int) -> None:
    job = api.job("alice", job_id)
    assert (job["status"], job["progress"], job["error"]) == ("failed", 30, STALE_ERROR)
    assert received(management_api, "a1") == [EVENT] * (frames_before + 1)
    assert received(management_api, "a2") == [EVENT] * (frames_before + 1)
    assert received(management_api, "b1") == []


def test_a_redelivery_leaves_a_live_running_job_alone(
    api: Api, client: Client, crashed_job: str, management_api: Any, services: Any, clock: FakeClock
) -> None:
    clock.advance(STALE_AFTER_SECONDS - 1)
    deliver(client, published(services)[0])
    assert api.job("alice", crashed_job)["status"] == "running"
    assert received(management_api, "a1") == [EVENT] * 2  # running, 30 %


def test_a_redelivery_fails_a_stale_running_job_and_notifies_the_owner(
    api: Api, client: Client, crashed_job: str, management_api: Any, services: Any, clock: FakeClock
) -> None:
    clock.advance(STALE_AFTER_SECONDS + 1)
    runner = services.job_runner
    assert runner.handle(published(services)[0]) is RunOutcome.FAILED_STALE
    assert_failed_as_stale(api, management_api, crashed_job, frames_before=2)


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs"])
def test_reading_a_stale_running_job_fails_it_and_notifies_the_owner(
    api: Api, crashed_job: str, management_api: Any, clock: FakeClock, path: str
) -> None:
    clock.advance(STALE_AFTER_SECONDS + 1)
    response = api.get("alice", path.format(id=crashed_job))
    assert response.status_code == 200
    assert "failed" in response.body.decode()
    assert_failed_as_stale(api, management_api, crashed_job, frames_before=2)


def sweep(client: Client) -> None:
    """One run of the scheduled `sweep_stale_jobs` Lambda."""
    event = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, resources=[])
    client.lambda_.invoke("sweep_stale_jobs", event)


def test_the_sweep_fails_stale_jobs_from_the_sparse_index_without_a_scan(
    api: Api,
    client: Client,
    crashed_job: str,
    management_api: Any,
    services: Any,
    clock: FakeClock,
    dynamodb: CountingDynamoDB,
    aws: dict[str, Any],
) -> None:
    never_started = api.submit("alice", "report", {"seconds": 5})  # its message is "lost"
    clock.advance(STALE_AFTER_SECONDS + 1)
    fresh = api.submit("bob", "report", {"seconds": 5})
    dynamodb.clear()

    sweep(client)

    assert_failed_as_stale(api, management_api, crashed_job, frames_before=2)
    assert api.job("alice", never_started)["status"] == "queued"  # queued jobs get longer
    assert api.job("bob", fresh)["status"] == "queued"
    # One Query per shard of the sparse index; never a Scan.
    assert dynamodb.calls_on("active_jobs") == ["query"] * 4
    assert "scan" not in dynamodb.calls
    # Finished jobs leave the sparse index; active ones stay in it.
    rows = {item["job_id"]["S"]: item for item in job_rows(aws, services)}
    assert "active_shard" not in rows[crashed_job]
    assert "active_shard" in rows[fresh]

    clock.advance(QUEUED_STALE_SECONDS)
    sweep(client)
    job = api.job("alice", never_started)
    assert job["status"] == "failed"
    assert (
        job["error"] == f"the job did not start within {QUEUED_STALE_SECONDS // 60} minutes; please try again"
    )


def test_a_runner_written_off_as_stale_stops_and_cannot_overwrite_the_failure(
    api: Api, client: Client, tokens: TokenFactory, kinds: SteeredKinds, services: Any, clock: FakeClock
) -> None:
    after: list[str] = []

    def during(ctx: JobContext) -> None:
        clock.advance(STALE_AFTER_SECONDS + 1)  # e.g. a very long pause, then someone reads the job
        assert api.job("alice", ctx.job_id)["status"] == "failed"
        ctx.progress(80)
        after.append("kept running")

    kinds.during = during
    job_id = api.submit("alice", "probe", {})
    assert services.job_runner.handle(published(services)[0]) is RunOutcome.LEASE_LOST

    assert after == []
    job = api.job("alice", job_id)
    assert (job["status"], job["error"], job["result"]) == ("failed", STALE_ERROR, None)


def test_the_heartbeat_keeps_a_silent_job_alive(
    api: Api, services: Any, kinds: SteeredKinds, clock: FakeClock, aws: dict[str, Any]
) -> None:
    beaten = threading.Event()

    def during(ctx: JobContext) -> None:
        clock.advance(60)  # a kind busy for a minute without reporting progress
        for _ in range(500):
            if int(row(aws, services, "alice", ctx.job_id)["updated_at"]["N"]) == int(clock.now() * 1000):
                beaten.set()
                return
            threading.Event().wait(0.01)

    kinds.during = during
    job_id = api.submit("alice", "probe", {})
    runner = JobRunner(services.job_store, services.notifier, kinds.registry, clock, heartbeat_seconds=0.01)
    assert runner.handle(published(services)[0]) is RunOutcome.RAN

    assert beaten.is_set()
    assert api.job("alice", job_id)["status"] == "succeeded"


# ---------------------------------------------------------------- listing


def test_jobs_are_listed_newest_first_page_by_page(api: Api, clock: FakeClock) -> None:
    created = []
    for _ in range(5):
        created.append(api.submit("alice", "report", {"seconds": 1}))
        clock.advance(0.002)
    api.submit("bob", "report", {"seconds": 1})

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = api.jobs("alice", f"limit=2&cursor={cursor}")
        pages += 1
        assert len(page["jobs"]) <= 2
        seen.extend(job["job_id"] for job in page["jobs"])
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]

    assert seen == list(reversed(created))
    assert pages == 3
    first = api.jobs("alice")["jobs"][0]
    assert set(first) == {
        "job_id",
        "kind",
        "params",
        "status",
        "progress",
        "result",
        "error",
        "created_at",
        "updated_at",
    }


def tampered(cursor: str) -> str:
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw["owner"]["S"] = "bob"
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "make_query",
    [
        lambda cursor: f"cursor={tampered(cursor)}",
        lambda cursor: f"cursor={cursor[:-3]}",
        lambda cursor: "cursor=%%%",
        lambda cursor: "cursor=" + str(encode_cursor({"owner": {"S": "alice"}, "job_id": {"S": "x"}})),
        lambda cursor: "cursor=" + str(encode_cursor({"owner": {"S": "alice"}})),
        lambda cursor: "limit=0",
        lambda cursor: "limit=101",
        lambda cursor: "limit=ten",
    ],
)
def test_a_tampered_cursor_or_bad_limit_is_a_400(
    api: Api, clock: FakeClock, make_query: Callable[[str], str]
) -> None:
    for _ in range(3):
        api.submit("alice", "report", {"seconds": 1})
        clock.advance(0.002)
    cursor = api.jobs("alice", "limit=1")["next_cursor"]

    response = api.get("alice", f"/jobs?{make_query(cursor)}")

    assert response.status_code == 400
    error = json.loads(response.body)
    assert error["Code"] == "BadRequestError"
    assert error["Message"] in ("invalid cursor", "limit must be an integer from 1 to 100")


# ---------------------------------------------------------------- the registry


def test_a_new_kind_is_one_decorated_function() -> None:
    registry = JobKinds()

    @registry.register("echo", params=lambda p: {"n": int_param(p, "n", 1, 3)})
    def echo(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
        return params

    assert registry.names() == ["echo"]
    assert registry.validate("echo", {"n": 2}) == {"n": 2}
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("echo")(echo)


def test_the_report_cap_is_well_inside_the_runner_deadline() -> None:
    assert report_params({"seconds": 600}) == {"seconds": 600}
    assert 600 <= RUN_DEADLINE_SECONDS - 60
    with pytest.raises(ValueError, match="from 1 to 600"):
        report_params({"seconds": 601})
