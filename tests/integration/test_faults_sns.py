"""SNS delivers a job message three times at once (it may: at-least-once): the job runs once.

Over real sockets on the local stack: the job is submitted by the app's own `JobQueue.submit`,
whose publish to moto's SNS happens three times concurrently; moto delivers each copy to the
stack's event receiver, which runs the `run_job` Lambda for each, concurrently. Exactly one
delivery claims the job (a conditional write); the other two find it taken and do nothing.

The unit-level versions, and the job Lambda killed mid-run, are in
`tests/jobs/test_jobs.py::test_three_concurrent_deliveries_run_the_job_once`,
`tests/jobs/test_jobs.py::test_the_same_message_delivered_three_times_runs_the_job_once` and
`tests/jobs/test_jobs_killed_runner.py` (a runner process SIGKILLed mid-job ends `failed` by the
stale-running rule and the owner is notified).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from chalicelib.jobs import Job
from tests.integration.faults_support import StackLog, open_clients, shipped_services
from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration

DELIVERIES = 3


class RepeatingSNS:
    """An SNS client whose every publish is sent `copies` times at once, as SNS may deliver it."""

    def __init__(self, sns: Any, copies: int) -> None:
        self._sns = sns
        self._copies = copies
        self.message_ids: list[str] = []

    def publish(self, **request: Any) -> dict[str, Any]:
        start = threading.Barrier(self._copies)
        answers: list[dict[str, Any]] = []

        def send() -> None:
            start.wait()
            answers.append(self._sns.publish(**request))

        threads = [threading.Thread(target=send) for _ in range(self._copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(answers) == self._copies
        self.message_ids.extend(answer["MessageId"] for answer in answers)
        return answers[0]


def test_a_job_message_delivered_three_times_at_once_runs_the_job_once(local_stack: LocalStack) -> None:
    owner, token = local_stack.sign_up()
    log = StackLog(local_stack)
    with shipped_services(local_stack) as services:
        sns = RepeatingSNS(local_stack.aws_client("sns"), DELIVERIES)
        services.sns = sns

        async def scenario() -> tuple[Job | None, list[dict[str, Any]]]:
            (client,) = await open_clients(local_stack, owner, token, 1)
            job = await asyncio.to_thread(
                services.jobs.submit, owner, {"kind": "report", "params": {"seconds": 2}}
            )
            deadline = time.monotonic() + 60
            current: Job | None = job
            while current and current.status not in ("succeeded", "failed") and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                current = await asyncio.to_thread(services.jobs.get, owner, job.job_id)
            await asyncio.sleep(1.0)  # a second run would still be writing and notifying now
            await client.close()
            return await asyncio.to_thread(services.jobs.get, owner, job.job_id), client.frames

        finished, frames = asyncio.run(scenario())

    assert len(set(sns.message_ids)) == DELIVERIES  # three distinct SNS deliveries of one message
    assert finished is not None and finished.status == "succeeded"
    assert finished.result == {"summary": "report of 2 steps", "steps": 2, "checksum": 1 + 4}
    text = log.text()
    assert text.count("duplicate delivery ignored") == DELIVERIES - 1
    assert text.count("job finished") == 1
    # Started, progress (at most once a second) and finished: one run's frames, all the same key.
    assert 2 <= len(frames) <= 4 and all(frame == {"event": "jobs-updated"} for frame in frames)
