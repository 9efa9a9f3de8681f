"""A job Lambda killed mid-run (SIGKILL, no cleanup) ends `failed` by the stale rule, and its owner hears it.

The runner is a real separate process, talking HTTP to moto's server (found through
AWS_ENDPOINT_URL) exactly as it would talk to AWS; the test process plays the REST API
and the scheduled sweep against the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.connections import Connection
from chalice_realtime.testing.firebase import TokenFactory
from chalice_realtime.testing.management_api import received as frames_posted
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.sns.models import sns_backends

from app import app
from chalicelib import aws
from chalicelib import services as services_module
from chalicelib.jobs import STALE_AFTER_SECONDS
from chalicelib.settings import Settings
from infra.tables import create_tables
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENT = {"event": "jobs-updated"}
RUNNER = "import json, sys, app; app.run_job(json.loads(sys.argv[1]), None)"


class LaterClock:
    """The real clock, read `offset` seconds in the future: the REST side after the runner went quiet."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def stack(moto_server: str, firebase_certs: Any) -> Iterator[dict[str, Any]]:
    env = {**TEST_ENV, "WEBSOCKET_ENDPOINT": moto_server}
    create_tables(aws.client("dynamodb"), {k: v for k, v in env.items() if k.endswith("_TABLE")})
    env["JOBS_TOPIC_ARN"] = aws.client("sns").create_topic(Name="test-jobs")["TopicArn"]
    built = services_module.Services(Settings.from_env(env))
    built.clock = LaterClock(0)
    services_module.use(built)
    yield {"env": env, "services": built}
    services_module.use(None)


def received(connection_id: str) -> list[dict[str, str]]:
    return frames_posted(apigatewaymanagementapi_backends["123456789012"]["us-east-1"], connection_id)


def test_a_killed_runner_leaves_the_job_failed_and_the_owner_notified(
    stack: dict[str, Any], tokens: TokenFactory, moto_server: str
) -> None:
    services = stack["services"]
    now_ms = int(time.time() * 1000)
    services.realtime.connections.add(Connection("a1", "alice", now_ms))
    services.realtime.connections.add(Connection("b1", "bob", now_ms))
    alice = {"Authorization": f"Bearer {tokens.mint('alice')}", "Content-Type": "application/json"}

    with Client(app) as client:
        response = client.http.post(
            "/jobs", headers=alice, body=json.dumps({"kind": "report", "params": {"seconds": 60}})
        )
        assert response.status_code == 202, response.body
        job_id = json.loads(response.body)["job_id"]
        topic = sns_backends["123456789012"]["us-east-1"].topics[stack["env"]["JOBS_TOPIC_ARN"]]
        [(_, message, *_)] = topic.sent_notifications
        event = client.events.generate_sns_event(message=message)

        runner = subprocess.Popen(
            [sys.executable, "-c", RUNNER, json.dumps(event)],
            cwd=ROOT,
            env={**os.environ, **stack["env"], "AWS_ENDPOINT_URL": moto_server, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and runner.poll() is None:
                job = json.loads(client.http.get(f"/jobs/{job_id}", headers=alice).body)
                # Killed only once the progress is both recorded and notified (the runner writes, then posts).
                if job["status"] == "running" and job["progress"] > 0 and len(received("a1")) >= 2:
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"the runner never reported progress (exit code {runner.poll()})")
        finally:
            runner.kill()  # SIGKILL: no handler, no finally, no heartbeat from here on
            runner.wait(timeout=30)

        killed_at = json.loads(client.http.get(f"/jobs/{job_id}", headers=alice).body)
        assert (killed_at["status"], killed_at["progress"]) == ("running", 1)
        frames_before = len(received("a1"))
        assert frames_before >= 2  # running, and the progress it reached

        # The scheduled sweep, run as the minute after the heartbeat went stale.
        services.clock.offset = STALE_AFTER_SECONDS + 15
        sweep = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, resources=[])
        client.lambda_.invoke("sweep_stale_jobs", sweep)

        job = json.loads(client.http.get(f"/jobs/{job_id}", headers=alice).body)
        assert job["status"] == "failed"
        assert job["error"].startswith("the job stopped responding")
        assert job["progress"] == 1
        assert received("a1") == [EVENT] * (frames_before + 1)
        assert received("b1") == []
