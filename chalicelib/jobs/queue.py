"""The REST side of jobs: submit (record, then publish to SNS), read, list, and the stale-job sweep."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from chalice_realtime import Notifies, sns_attributes, validate_user_id

from chalicelib.clock import Clock, epoch_ms
from chalicelib.errors import Conflict, NotFound, TemporarilyUnavailable, TooManyRequests
from chalicelib.jobs.kinds import InvalidJobRequest, JobKinds
from chalicelib.jobs.model import (
    ACTIVE_HORIZON_SECONDS,
    CANCELLED,
    FAILED,
    QUEUED,
    QUEUED_STALE_SECONDS,
    RUNNING,
    STALE_AFTER_SECONDS,
    SUCCEEDED,
    Job,
    is_job_id,
    new_job_id,
)
from chalicelib.jobs.runner import JOBS_UPDATED, job_message
from chalicelib.jobs.store import JobStore
from chalicelib.pagination import Page

if TYPE_CHECKING:
    from types_boto3_sns.client import SNSClient

logger = logging.getLogger(__name__)

PARAMS_MAX_BYTES = 4096
# What a user beyond the active-jobs limit is told to wait: a short job's time, after which a retry
# may find a slot (one of theirs finished, or they cancelled one).
ACTIVE_JOBS_RETRY_AFTER_SECONDS = 10
# What a user is told to wait when the stage is full: about the time a short job takes to free a runner.
STAGE_FULL_RETRY_AFTER_SECONDS = 30
SUBMIT_FIELDS = {"kind", "params"}


class QueueUnavailable(TemporarilyUnavailable):
    """The job was recorded but could not be published; it is marked failed. Safe to retry."""


class JobNotFound(NotFound):
    """No job of the caller's has this id (someone else's is not theirs either)."""

    def __init__(self) -> None:
        super().__init__("job not found")


class JobFinished(Conflict):
    """The job has already finished: there is nothing left to cancel."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"the job has already finished ({job.status}); only active jobs can be cancelled")
        self.job = job


class JobQueue:
    """Submit jobs and read them back, always scoped to their owner.

    queue = JobQueue(store, kinds, sns_client, topic_arn, notifier, SYSTEM_CLOCK)
    job = queue.submit("uid-1", {"kind": "report", "params": {"seconds": 30}})
    queue.get("uid-1", job.job_id).status  # 'queued', later 'running', then 'succeeded'
    """

    def __init__(
        self,
        store: JobStore,
        kinds: JobKinds,
        sns: SNSClient,
        topic_arn: str,
        notifier: Notifies,
        clock: Clock,
        *,
        max_active: int = 3,
        max_stage_active: int = 20,
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._sns = sns
        self._topic_arn = topic_arn
        self._notifier = notifier
        self._clock = clock
        self._max_active = max_active
        self._max_stage_active = max_stage_active

    def submit(self, owner: str, request: dict[str, Any]) -> Job:
        """Validate `{"kind", "params"}`, record the job as queued and publish it to the topic.

        `InvalidJobRequest` (nothing written) for bad input; `TooManyRequests` (nothing left behind)
        when the owner already has `max_active` jobs queued or running; `QueueUnavailable` when the
        publish fails, after marking the job failed so it never sits in `queued`.
        """
        try:
            # The runner drops a message whose owner is not a valid user id: refuse now, not 30 min later.
            validate_user_id(owner, "your user id")
        except ValueError as exc:
            raise InvalidJobRequest(str(exc)) from exc
        unknown = sorted(set(request) - SUBMIT_FIELDS)
        if unknown:
            raise InvalidJobRequest(f"unknown field {unknown[0][:64]!r}; expected kind and params")
        if "kind" not in request:
            raise InvalidJobRequest("kind is required")
        params = self._kinds.validate(request["kind"], request.get("params", {}))
        if len(json.dumps(params, separators=(",", ":"))) > PARAMS_MAX_BYTES:
            raise InvalidJobRequest(f"params must be at most {PARAMS_MAX_BYTES} bytes of JSON")
        now = self._clock.now()
        now_ms = epoch_ms(now)
        job = Job(
            owner=owner,
            job_id=new_job_id(now),
            kind=request["kind"],
            params=params,
            status=QUEUED,
            progress=0,
            created_at=now_ms,
            updated_at=now_ms,
        )
        self._store.create(job)
        # Counted after storing, every active job included: of parallel submits, the one counting last sees
        # every other admitted one, so never more than `max_active` are admitted (in a race, maybe fewer).
        since_ms = now_ms - ACTIVE_HORIZON_SECONDS * 1000
        mine = self._store.active_since(owner, since_ms=since_ms)
        if refusal := self._refusal(owner, job.job_id, mine):
            self._store.withdraw(owner, job.job_id)  # never published: no runner, no notification
            raise refusal
        try:
            self._sns.publish(TopicArn=self._topic_arn, Message=job_message(job), **sns_attributes())
        except Exception as exc:
            logger.exception("could not publish job", extra={"job_id": job.job_id, "topic": self._topic_arn})
            if self._store.fail_queued(
                owner,
                job.job_id,
                error="the job could not be queued; please try again",
                now_ms=epoch_ms(self._clock.now()),
            ):
                self._notifier.notify(owner, JOBS_UPDATED)
            raise QueueUnavailable("the job could not be queued; please try again") from exc
        return job

    def _refusal(self, owner: str, job_id: str, mine: int) -> TooManyRequests | None:
        """Why the owner's new job (one of `mine` active) cannot be admitted, or None.

        Per user: at most `max_active`. Per stage: at most `max_stage_active`, the runner's slots; and once
        half of them are taken, fair share: one active job per user, so a few accounts cannot hold every
        slot. The stage is counted on the sparse index (eventually consistent: parallel submits of many
        users may overshoot by the jobs stored within the same moment).
        """
        if mine > self._max_active:
            return TooManyRequests(
                f"you already have {self._max_active} active jobs (queued or running), the most allowed: "
                "wait for one to finish, or cancel one",
                retry_after=ACTIVE_JOBS_RETRY_AFTER_SECONDS,
            )
        others = sum(1 for job in self._store.active() if job.job_id != job_id)
        if others + 1 > self._max_stage_active:
            logger.warning(
                "stage job limit reached", extra={"active": others, "limit": self._max_stage_active}
            )
            return TooManyRequests(
                f"the service runs at most {self._max_stage_active} jobs at once, and is full: retry shortly",
                retry_after=STAGE_FULL_RETRY_AFTER_SECONDS,
            )
        if mine > 1 and others >= self._max_stage_active // 2:
            return TooManyRequests(
                "the service is busy: one active job per user until it is less busy; wait for yours to "
                "finish, or cancel it",
                retry_after=ACTIVE_JOBS_RETRY_AFTER_SECONDS,
            )
        return None

    def get(self, owner: str, job_id: str) -> Job:
        """The owner's job (stale rule applied); `JobNotFound` for an unknown id or someone else's job."""
        job = self._store.get(owner, job_id) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound()
        return self._retire_if_stale(job)

    def page(self, owner: str, *, limit: str | None = None, cursor: str | None = None) -> Page[Job]:
        """One page of the owner's jobs, newest first (stale rule applied).

        `InvalidPage` (a 400) for a bad limit or a cursor this API did not issue for this owner.
        """
        return self._store.page(owner, limit=limit, cursor=cursor).map(self._retire_if_stale)

    def cancel(self, owner: str, job_id: str) -> Job:
        """Cancel the owner's job and return it as it is now.

        A queued job is `cancelled` at once; a running one stays `running` until its runner reaches its
        next progress point, stops and marks it `cancelled`. Either way the owner's sessions get
        `jobs-updated` once it is cancelled. `JobNotFound` for an unknown id or someone else's job,
        `JobFinished` for a job that has succeeded or failed.
        """
        try:
            validate_user_id(owner, "your user id")  # as for submit: never a key DynamoDB would refuse
        except ValueError as exc:
            raise InvalidJobRequest(str(exc)) from exc
        if not is_job_id(job_id):
            raise JobNotFound()
        changed, job = self._store.cancel(owner, job_id, now_ms=epoch_ms(self._clock.now()))
        if job is None:
            raise JobNotFound()
        if changed and job.status == CANCELLED:
            self._notifier.notify(owner, JOBS_UPDATED)
        if job.status in (SUCCEEDED, FAILED):
            raise JobFinished(job)
        return job

    def sweep(self) -> int:
        """Fail every job the stale rule applies to and notify its owner; the number failed.

        Reads only the sparse index of active jobs (one Query per shard), never the table.
        """
        now_ms = epoch_ms(self._clock.now())
        failed = 0
        for active in self._store.active_older_than(now_ms - STALE_AFTER_SECONDS * 1000):
            if active.status not in (QUEUED, RUNNING):
                continue
            if active.status == QUEUED and now_ms - active.updated_at <= QUEUED_STALE_SECONDS * 1000:
                continue  # queued jobs get longer: SNS and Lambda may still be retrying the delivery
            job = self._store.fail_if_stale(active.owner, active.job_id, status=active.status, now_ms=now_ms)
            if job is not None:
                logger.warning("stale job marked failed", extra={"job_id": job.job_id, "was": active.status})
                self._notifier.notify(job.owner, JOBS_UPDATED)
                failed += 1
        return failed

    def _retire_if_stale(self, job: Job) -> Job:
        now_ms = epoch_ms(self._clock.now())
        if not job.is_stale(now_ms):
            return job
        failed = self._store.fail_if_stale(job.owner, job.job_id, status=job.status, now_ms=now_ms)
        if failed is None:
            # It moved on meanwhile (finished, or a heartbeat came in): show the latest.
            return self._store.get(job.owner, job.job_id) or job
        logger.warning("stale job marked failed on read", extra={"job_id": job.job_id, "was": job.status})
        self._notifier.notify(job.owner, JOBS_UPDATED)
        return failed
