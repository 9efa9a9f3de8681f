"""The limits over real sockets on the local stack: REST through Chalice's local server, frames through the
gateway, jobs run by the stack's SNS-subscribed runner.

The fourth active job of a user is a 429 with `Retry-After`; cancelling a job over REST brings a
`jobs-updated` frame on the owner's socket and the job reads `cancelled`. The same limits in
process, with the injectable clock: `tests/limits/test_limits.py`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import requests

from tests.integration.faults_support import Client, connect
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

LONG_REPORT = {"kind": "report", "params": {"seconds": 600}}
WAIT = 30.0


def call(stack: LocalStack, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method, stack.rest_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def status_of(stack: LocalStack, token: str, job_id: str) -> str:
    answer = call(stack, token, "GET", f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def wait_for_status(stack: LocalStack, token: str, job_id: str, wanted: str) -> None:
    deadline = time.monotonic() + WAIT
    while status_of(stack, token, job_id) != wanted:
        assert time.monotonic() < deadline, f"job {job_id} never became {wanted}"
        time.sleep(0.2)


def test_the_fourth_active_job_is_429_and_cancel_brings_a_frame(local_stack: LocalStack) -> None:
    user, token = local_stack.sign_up()

    async def scenario() -> None:
        client = Client(user, await connect(local_stack, token))
        jobs = []
        for _ in range(3):
            answer = await asyncio.to_thread(call, local_stack, token, "POST", "/jobs", LONG_REPORT)
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["job_id"])
        refused = await asyncio.to_thread(call, local_stack, token, "POST", "/jobs", LONG_REPORT)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "10"
        assert refused.headers["Access-Control-Expose-Headers"].count("Retry-After") == 1
        assert refused.json()["Code"] == "TooManyRequestsError"
        listed = await asyncio.to_thread(call, local_stack, token, "GET", "/jobs")
        assert sorted(job["job_id"] for job in listed.json()["jobs"]) == sorted(jobs)

        # Cancel a running one: it stops at its next progress point, and the socket hears it.
        await asyncio.to_thread(wait_for_status, local_stack, token, jobs[0], "running")
        client.frames.clear()
        answer = await asyncio.to_thread(call, local_stack, token, "POST", f"/jobs/{jobs[0]}/cancel")
        assert answer.status_code == 202, answer.text
        assert answer.json()["job_id"] == jobs[0]
        await asyncio.to_thread(wait_for_status, local_stack, token, jobs[0], "cancelled")
        deadline = time.monotonic() + WAIT
        while {"event": "jobs-updated"} not in client.frames and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert {"event": "jobs-updated"} in client.frames

        # Another user cannot cancel this user's job.
        _, other = local_stack.sign_up()
        stranger = await asyncio.to_thread(call, local_stack, other, "POST", f"/jobs/{jobs[1]}/cancel")
        assert stranger.status_code == 404

        # The cancelled job's slot is free; then nothing is left running on the shared stack.
        fourth = await asyncio.to_thread(call, local_stack, token, "POST", "/jobs", LONG_REPORT)
        assert fourth.status_code == 202, fourth.text
        for job_id in [*jobs[1:], fourth.json()["job_id"]]:
            answer = await asyncio.to_thread(call, local_stack, token, "POST", f"/jobs/{job_id}/cancel")
            assert answer.status_code == 202, answer.text
        for job_id in [*jobs[1:], fourth.json()["job_id"]]:
            await asyncio.to_thread(wait_for_status, local_stack, token, job_id, "cancelled")
        await client.close()

    asyncio.run(scenario())
