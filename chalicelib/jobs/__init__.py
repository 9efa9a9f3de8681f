"""Long-running jobs: submitted over REST, run by the SNS-subscribed Lambda, read back over REST.

    queue = services.current().jobs
    job = queue.submit("uid-1", {"kind": "report", "params": {"seconds": 30}})  # queued, published
    services.current().job_runner.handle(sns_message)  # queued -> running -> succeeded, notifying
    queue.get("uid-1", job.job_id).to_json()["status"]  # 'succeeded'

New kinds: one function decorated with `@job_kind(name, params=validator)`, in a
module imported here (see `builtin.py`).
"""

from __future__ import annotations

from chalicelib.jobs import builtin as builtin
from chalicelib.jobs.kinds import KINDS, InvalidJobRequest, JobContext, JobError, JobKinds, job_kind
from chalicelib.jobs.model import (
    HEARTBEAT_SECONDS,
    QUEUED_STALE_SECONDS,
    RUN_DEADLINE_SECONDS,
    RUNNER_TIMEOUT_SECONDS,
    STALE_AFTER_SECONDS,
    Job,
)
from chalicelib.jobs.queue import JobFinished, JobNotFound, JobQueue, QueueUnavailable
from chalicelib.jobs.runner import JOBS_UPDATED, JobRunner, RunOutcome
from chalicelib.jobs.store import JobStore

__all__ = [
    "HEARTBEAT_SECONDS",
    "JOBS_UPDATED",
    "KINDS",
    "QUEUED_STALE_SECONDS",
    "RUNNER_TIMEOUT_SECONDS",
    "RUN_DEADLINE_SECONDS",
    "STALE_AFTER_SECONDS",
    "InvalidJobRequest",
    "Job",
    "JobContext",
    "JobError",
    "JobFinished",
    "JobKinds",
    "JobNotFound",
    "JobQueue",
    "JobRunner",
    "JobStore",
    "QueueUnavailable",
    "RunOutcome",
    "job_kind",
]
