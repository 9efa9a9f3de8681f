"""A job as stored and as shown over REST, its states, ids and timing rules.

Timing is tied to the runner's Lambda timeout: `run_job` is given
`RUNNER_TIMEOUT_SECONDS` as its `lambda_timeout`, a job stops itself cleanly
`RUN_MARGIN_SECONDS` before that, and a job whose heartbeat is older than
`STALE_AFTER_SECONDS` is taken for dead and marked failed.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from chalicelib.clock import iso_utc

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"  # by its owner (`POST /jobs/{id}/cancel`)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

# The runner Lambda's timeout (Lambda's maximum); `.chalice/config.json` must give `run_job` this value.
RUNNER_TIMEOUT_SECONDS = 900
# A job still working this close to the Lambda timeout fails itself with a readable error.
RUN_MARGIN_SECONDS = 60
RUN_DEADLINE_SECONDS = RUNNER_TIMEOUT_SECONDS - RUN_MARGIN_SECONDS
# While a job runs, a background thread refreshes `updated_at` this often ...
HEARTBEAT_SECONDS = 15
# ... so a running job silent for this long has lost its process (crash, kill, Lambda timeout).
STALE_AFTER_SECONDS = 8 * HEARTBEAT_SECONDS
# A queued job no runner has claimed by then (its message was lost or kept failing) fails too.
QUEUED_STALE_SECONDS = 2 * RUNNER_TIMEOUT_SECONDS
# Progress is written and notified at most this often.
PROGRESS_INTERVAL_SECONDS = 1.0
# A job created longer ago than this is not active whatever its row says: queued, it fails as stale
# after QUEUED_STALE_SECONDS; claimed by then, its runner stops by the Lambda timeout and the sweep
# (every minute) fails it STALE_AFTER_SECONDS later. The active-jobs limit counts only younger jobs.
ACTIVE_HORIZON_SECONDS = QUEUED_STALE_SECONDS + RUNNER_TIMEOUT_SECONDS + STALE_AFTER_SECONDS + 60
# Finished or not, a job's row is deleted by DynamoDB TTL this long after it was created.
RETENTION_SECONDS = 30 * 24 * 3600

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
JOB_ID_PATTERN = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def new_job_id(now: float) -> str:
    """A ULID: 48-bit milliseconds then 80 random bits, Crockford base32, so ids sort by creation time.

    new_job_id(time.time())  # '01JD5Q6V3ZK8W1X0J9N2C4B7TA'
    """
    value = (int(now * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def first_job_id_at(epoch_ms: int) -> str:
    """The smallest job id created at `epoch_ms` (random part all zero): the start of a key range
    over creation time, as job ids sort by it."""
    value = epoch_ms << 80
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and JOB_ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class Job:
    """One job of one owner. Times are epoch milliseconds; `updated_at` is the heartbeat while running."""

    owner: str
    job_id: str
    kind: str
    params: dict[str, Any]
    status: str
    progress: int
    created_at: int
    updated_at: int
    result: dict[str, Any] | None = None
    error: str | None = None

    def is_stale(self, now_ms: int) -> bool:
        """Whether the stale rule applies: running without a heartbeat, or queued and never started."""
        if self.status == RUNNING:
            return now_ms - self.updated_at > STALE_AFTER_SECONDS * 1000
        if self.status == QUEUED:
            return now_ms - self.updated_at > QUEUED_STALE_SECONDS * 1000
        return False

    def to_json(self) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` shows it."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "params": self.params,
            "status": self.status,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        """A DynamoDB item (low-level client shape) -> Job."""
        return cls(
            owner=item["owner"]["S"],
            job_id=item["job_id"]["S"],
            kind=item["kind"]["S"],
            params=json.loads(item["params"]["S"]),
            status=item["status"]["S"],
            progress=int(item["progress"]["N"]),
            created_at=int(item["created_at"]["N"]),
            updated_at=int(item["updated_at"]["N"]),
            result=json.loads(item["result"]["S"]) if "result" in item else None,
            error=item["error"]["S"] if "error" in item else None,
        )
