"""The SNS-subscribed side: claim a job once, run its kind, record progress and the outcome.

SNS delivers at least once, so the same message may arrive several times, even
concurrently. Only the runner whose conditional claim (queued -> running) wins
runs the job; every later write of that runner is conditional on its run token,
so a runner the stale rule has written off stops instead of overwriting a
finished job.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from chalice_realtime import Notifies, validate_user_id

from chalicelib.clock import Clock, epoch_ms
from chalicelib.jobs.kinds import JobError, JobKinds
from chalicelib.jobs.model import (
    HEARTBEAT_SECONDS,
    PROGRESS_INTERVAL_SECONDS,
    RUN_DEADLINE_SECONDS,
    Job,
    is_job_id,
)
from chalicelib.jobs.store import JobCancelled, JobStore, LeaseLost

logger = logging.getLogger(__name__)

JOBS_UPDATED = "jobs-updated"
RESULT_MAX_BYTES = 16 * 1024
INTERNAL_ERROR = "the job failed because of an internal error"


class RunOutcome(enum.Enum):
    RAN = "ran"  # this delivery ran the job to succeeded or failed
    DUPLICATE = "duplicate"  # another delivery runs or ran it: nothing done
    FAILED_STALE = "failed-stale"  # found running without a heartbeat: marked failed
    LEASE_LOST = "lease-lost"  # this run was written off meanwhile and stopped
    CANCELLED = "cancelled"  # its owner cancelled it while it ran: stopped and marked cancelled
    UNKNOWN_JOB = "unknown-job"
    MALFORMED = "malformed"


def job_message(job: Job) -> str:
    """The SNS message that asks the runner to run `job`."""
    return json.dumps({"owner": job.owner, "job_id": job.job_id}, separators=(",", ":"))


def parse_job_message(message: str) -> tuple[str, str]:
    """`(owner, job_id)` from an SNS message; `ValueError` if it is not one of ours."""
    try:
        body = json.loads(message)
    except (TypeError, ValueError) as exc:
        raise ValueError("job message is not JSON") from exc
    if not isinstance(body, dict) or not is_job_id(body.get("job_id")):
        raise ValueError("job message has no valid job_id")
    return validate_user_id(body.get("owner"), "owner"), str(body["job_id"])


class _RunContext:
    """The `JobContext` a kind gets: progress and sleeps, the deadline, and the lease."""

    def __init__(
        self,
        job: Job,
        token: str,
        store: JobStore,
        clock: Clock,
        notify: Callable[[], None],
        deadline_seconds: float,
    ) -> None:
        self._job = job
        self._token = token
        self._store = store
        self._clock = clock
        self._notify = notify
        self._started = clock.now()
        self._deadline = self._started + deadline_seconds
        self._deadline_seconds = deadline_seconds
        self._reported = job.progress
        self._pending = job.progress
        self._last_write = self._started
        self.lease_lost = threading.Event()
        self.cancelled = threading.Event()  # the heartbeat found the owner's cancel

    @property
    def job_id(self) -> str:
        return self._job.job_id

    @property
    def owner(self) -> str:
        return self._job.owner

    def progress(self, percent: float) -> None:
        self._check()
        self._pending = max(self._pending, min(100, max(0, int(percent))))
        self._flush()

    def sleep(self, seconds: float) -> None:
        self._check()
        end = min(self._clock.now() + seconds, self._deadline)
        due = self._last_write + PROGRESS_INTERVAL_SECONDS
        if self._pending != self._reported and due < end:
            # Progress held back by the rate limit is written when due, not after a long sleep.
            self._clock.sleep(max(0.0, due - self._clock.now()))
            self._flush()
        self._clock.sleep(max(0.0, end - self._clock.now()))
        self._check()

    def elapsed(self) -> float:
        return self._clock.now() - self._started

    def beat(self) -> None:
        """The heartbeat thread's write: only `updated_at`. Once the cancel is known it keeps beating, so a
        job in a long step is not taken for dead (and failed as stale) before its runner can stop it."""
        self._store.beat(
            self.owner,
            self.job_id,
            token=self._token,
            now_ms=epoch_ms(self._clock.now()),
            notice_cancel=not self.cancelled.is_set(),
        )

    def _check(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(self.job_id)
        if self.cancelled.is_set():
            raise JobCancelled(self.job_id)
        if self._clock.now() >= self._deadline:
            raise JobError(f"the job ran out of time (limit {self._deadline_seconds:g} s)")

    def _flush(self) -> None:
        now = self._clock.now()
        if self._pending == self._reported or now - self._last_write < PROGRESS_INTERVAL_SECONDS:
            return
        self._store.beat(
            self.owner, self.job_id, token=self._token, now_ms=epoch_ms(now), progress=self._pending
        )
        self._reported, self._last_write = self._pending, now
        self._notify()


class _Heartbeat:
    """Refreshes the job's `updated_at` every `interval` seconds while the runner's process lives."""

    def __init__(self, context: _RunContext, interval: float) -> None:
        self._context = context
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{context.job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._context.beat()
            except LeaseLost:
                self._context.lease_lost.set()
                return
            except JobCancelled:
                self._context.cancelled.set()  # the kind stops at its next check; beats go on until then
            except Exception:
                # A missed beat is harmless; only a long run of them makes the job look stale.
                logger.warning("heartbeat failed", exc_info=True, extra={"job_id": self._context.job_id})


class JobRunner:
    """Runs the job named by an SNS message, at most once however often the message arrives.

    runner = JobRunner(store, notifier, KINDS, SYSTEM_CLOCK)
    runner.handle('{"owner": "uid-1", "job_id": "01JD5Q6V3ZK8W1X0J9N2C4B7TA"}')  # RunOutcome.RAN
    """

    def __init__(
        self,
        store: JobStore,
        notifier: Notifies,
        kinds: JobKinds,
        clock: Clock,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        deadline_seconds: float = RUN_DEADLINE_SECONDS,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._kinds = kinds
        self._clock = clock
        self._heartbeat_seconds = heartbeat_seconds
        self._deadline_seconds = deadline_seconds

    def handle(self, message: str) -> RunOutcome:
        """Claim and run the job in `message`, or leave it to the delivery that already has it.

        A malformed message or unknown job is logged and dropped (retrying cannot help);
        DynamoDB errors propagate so Lambda retries the delivery.
        """
        try:
            owner, job_id = parse_job_message(message)
        except ValueError as exc:
            logger.error("dropping malformed job message: %s", exc)
            return RunOutcome.MALFORMED
        token = uuid.uuid4().hex
        now_ms = epoch_ms(self._clock.now())
        claimed, job = self._store.claim(owner, job_id, token=token, now_ms=now_ms)
        if job is None:
            logger.warning("dropping message for unknown job", extra={"job_id": job_id})
            return RunOutcome.UNKNOWN_JOB
        if not claimed:
            if job.is_stale(now_ms) and self._store.fail_if_stale(
                owner, job_id, status=job.status, now_ms=now_ms
            ):
                logger.warning("redelivered job had no heartbeat: marked failed", extra={"job_id": job_id})
                self._notify(owner)
                return RunOutcome.FAILED_STALE
            logger.info("duplicate delivery ignored", extra={"job_id": job_id, "status": job.status})
            return RunOutcome.DUPLICATE
        self._notify(owner)
        return self._run(job, token)

    def _run(self, job: Job, token: str) -> RunOutcome:
        context = _RunContext(
            job, token, self._store, self._clock, lambda: self._notify(job.owner), self._deadline_seconds
        )
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            with _Heartbeat(context, self._heartbeat_seconds):
                result = self._execute(job, context)
        except LeaseLost:
            logger.warning("job was written off while running; stopped", extra={"job_id": job.job_id})
            return RunOutcome.LEASE_LOST
        except JobCancelled:
            return self._stop_cancelled(job, token)
        except JobError as exc:
            error = str(exc) or "the job failed"
        except Exception:
            logger.exception("job raised", extra={"job_id": job.job_id, "kind": job.kind})
            error = INTERNAL_ERROR
        try:
            self._store.finish(
                job.owner,
                job.job_id,
                token=token,
                now_ms=epoch_ms(self._clock.now()),
                result=result,
                error=error,
            )
        except LeaseLost:
            logger.warning("job was written off before it finished", extra={"job_id": job.job_id})
            return RunOutcome.LEASE_LOST
        except JobCancelled:
            # Cancelled after its last check: the 202 the owner got means it ends cancelled, not succeeded.
            return self._stop_cancelled(job, token)
        logger.info(
            "job finished", extra={"job_id": job.job_id, "kind": job.kind, "failed": error is not None}
        )
        self._notify(job.owner)
        return RunOutcome.RAN

    def _stop_cancelled(self, job: Job, token: str) -> RunOutcome:
        try:
            self._store.finish_cancelled(
                job.owner, job.job_id, token=token, now_ms=epoch_ms(self._clock.now())
            )
        except LeaseLost:
            logger.warning("job was written off before it stopped", extra={"job_id": job.job_id})
            return RunOutcome.LEASE_LOST
        logger.info("job cancelled by its owner; stopped", extra={"job_id": job.job_id, "kind": job.kind})
        self._notify(job.owner)
        return RunOutcome.CANCELLED

    def _execute(self, job: Job, context: _RunContext) -> dict[str, Any]:
        kind = self._kinds.get(job.kind)
        if kind is None:
            raise JobError(f"job kind {job.kind!r} is no longer supported")
        result = kind.run(context, job.params)
        if not isinstance(result, dict):
            raise TypeError(f"job kind {job.kind!r} returned {type(result).__name__}, not a dict")
        if len(json.dumps(result, separators=(",", ":"))) > RESULT_MAX_BYTES:
            raise ValueError(f"job kind {job.kind!r} returned a result over {RESULT_MAX_BYTES} bytes")
        return result

    def _notify(self, owner: str) -> None:
        self._notifier.notify(owner, JOBS_UPDATED)
