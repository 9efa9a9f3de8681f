"""Jobs in DynamoDB, where every state change is a conditional write.

Table: partition key `owner`, sort key `job_id` (a ULID, so a Query with
`ScanIndexForward=False` lists a user's jobs newest first, and reading someone
else's job is structurally impossible: the caller is part of the key).

Sparse index `active_jobs` (partition `active_shard`, sort `updated_at`): only
queued and running jobs carry `active_shard`, so the stale-job sweep Queries the
few active jobs, never Scans. The shard spreads heartbeat writes over several
index partitions.

Transitions, each guarded by its condition so redelivered SNS messages and racing
runners cannot run a job twice or move a finished job back:

    queued  -> running            claim: status = queued (the winner's run token is stored)
    running -> running            progress / heartbeat: status = running and run_token = mine
    running -> succeeded | failed finish: status = running and run_token = mine
    queued  -> failed             publish failed: status = queued
    queued | running -> failed    stale rule: same status and updated_at older than the threshold
    queued  -> cancelled          cancel: status = queued
    running -> running            cancel: status = running; sets `cancel_requested`, which fails the
                                  runner's next progress or heartbeat write (`JobCancelled`)
    running -> cancelled          the runner stops: status = running and run_token = mine
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.jobs.model import (
    CANCELLED,
    FAILED,
    QUEUED,
    QUEUED_STALE_SECONDS,
    RETENTION_SECONDS,
    RUNNING,
    STALE_AFTER_SECONDS,
    SUCCEEDED,
    Job,
    first_job_id_at,
    is_job_id,
)
from chalicelib.pagination import Listing, Page, query_page

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

ACTIVE_INDEX = "active_jobs"
ACTIVE_SHARDS = 4
ERROR_MAX_CHARS = 500
ANY_TIME_MS = 2**53  # later than any `updated_at`
# `GET /jobs`: an owner's jobs, whose cursors name one of that owner's job ids.
JOBS_OF_OWNER = Listing(("owner", "job_id"), accepts_start=lambda key: is_job_id(key["job_id"].get("S")))


class LeaseLost(BaseException):
    """This runner no longer owns the job (the stale rule failed it): stop without writing.

    A BaseException, like `KeyboardInterrupt`, so a kind's `except Exception` cannot swallow it.
    """


class JobCancelled(BaseException):
    """The owner cancelled this job while it ran: stop and mark it cancelled.

    A BaseException for the same reason as `LeaseLost`: a kind's `except Exception` cannot swallow it.
    """


@dataclass(frozen=True)
class ActiveJob:
    """What the sweep reads from the sparse index."""

    owner: str
    job_id: str
    status: str
    updated_at: int


def _shard(job_id: str) -> str:
    return str(zlib.crc32(job_id.encode()) % ACTIVE_SHARDS)


def _is_conditional_failure(exc: ClientError) -> bool:
    return aws.error_code(exc) == "ConditionalCheckFailedException"


class JobStore:
    """Reads and conditional writes of the jobs table.

    store = JobStore("realtime-jobs", dynamodb_client)
    store.create(job)
    claimed, current = store.claim("uid-1", job.job_id, token="t1", now_ms=now)
    """

    def __init__(self, table_name: str, dynamodb: DynamoDBClient) -> None:
        self._table = table_name
        self._dynamodb = dynamodb

    # ------------------------------------------------------------ reads

    def get(self, owner: str, job_id: str) -> Job | None:
        """The owner's job, or None (unknown id, or another owner's: the owner is in the key)."""
        item = self._dynamodb.get_item(
            TableName=self._table, Key=self._key(owner, job_id), ConsistentRead=True
        )
        return Job.from_item(item["Item"]) if "Item" in item else None

    def page(self, owner: str, *, limit: str | None, cursor: str | None) -> Page[Job]:
        """One page of the owner's jobs, newest first (`?limit=`, `?cursor=`; `InvalidPage` if bad)."""
        partition = {"owner": {"S": owner}}
        query = {
            "TableName": self._table,
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":o": partition["owner"]},
            "ScanIndexForward": False,
        }
        page = query_page(self._dynamodb, query, JOBS_OF_OWNER, partition, limit=limit, cursor=cursor)
        return page.map(Job.from_item)

    def active_older_than(self, cutoff_ms: int) -> Iterator[ActiveJob]:
        """Queued or running jobs whose `updated_at` is before `cutoff_ms`: one Query per shard and page."""
        for shard in range(ACTIVE_SHARDS):
            args: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": ACTIVE_INDEX,
                "KeyConditionExpression": "active_shard = :shard AND updated_at < :cutoff",
                "ExpressionAttributeValues": {":shard": {"S": str(shard)}, ":cutoff": {"N": str(cutoff_ms)}},
            }
            while True:
                response = self._dynamodb.query(**args)
                for item in response.get("Items", []):
                    yield ActiveJob(
                        owner=item["owner"]["S"],
                        job_id=item["job_id"]["S"],
                        status=item["status"]["S"],
                        updated_at=int(item["updated_at"]["N"]),
                    )
                if not response.get("LastEvaluatedKey"):
                    break
                args["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def active(self) -> list[ActiveJob]:
        """Every queued or running job of the stage, from the sparse index (eventually consistent: a job
        stored a moment ago may be missing)."""
        return list(self.active_older_than(ANY_TIME_MS))

    def active_since(self, owner: str, *, since_ms: int) -> int:
        """How many of the owner's jobs created from `since_ms` on are queued or running: one strongly
        consistent Query over that key range (a COUNT, per 1 MB page)."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#o = :o AND job_id >= :first",
            "FilterExpression": "#s IN (:queued, :running)",
            "ExpressionAttributeNames": {"#o": "owner", "#s": "status"},
            "ExpressionAttributeValues": {
                ":o": {"S": owner},
                ":first": {"S": first_job_id_at(since_ms)},
                ":queued": {"S": QUEUED},
                ":running": {"S": RUNNING},
            },
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        count = 0
        while True:
            response = self._dynamodb.query(**query)
            count += response.get("Count", 0)
            if not response.get("LastEvaluatedKey"):
                return count
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # ------------------------------------------------------------ writes

    def create(self, job: Job) -> None:
        """Store a new queued job (its id must be new)."""
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                **self._key(job.owner, job.job_id),
                "kind": {"S": job.kind},
                "params": {"S": json.dumps(job.params, separators=(",", ":"))},
                "status": {"S": QUEUED},
                "progress": {"N": "0"},
                "created_at": {"N": str(job.created_at)},
                "updated_at": {"N": str(job.updated_at)},
                "active_shard": {"S": _shard(job.job_id)},
                "expires_at": {"N": str(job.created_at // 1000 + RETENTION_SECONDS)},
            },
            ConditionExpression="attribute_not_exists(job_id)",
        )

    def claim(self, owner: str, job_id: str, *, token: str, now_ms: int) -> tuple[bool, Job | None]:
        """queued -> running for the runner holding `token`.

        Returns (True, the running job) for the one winner; (False, the job as it is)
        for everyone else; (False, None) when there is no such job.
        """
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(owner, job_id),
                UpdateExpression=(
                    "SET #s = :running, run_token = :token, started_at = :now, updated_at = :now"
                ),
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":running": {"S": RUNNING},
                    ":queued": {"S": QUEUED},
                    ":token": {"S": token},
                    ":now": {"N": str(now_ms)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            # ReturnValuesOnConditionCheckFailure: the job as it was, if there is one.
            item = exc.response.get("Item")
            return False, Job.from_item(item) if isinstance(item, dict) and item else None
        return True, Job.from_item(response["Attributes"])

    def withdraw(self, owner: str, job_id: str) -> None:
        """Delete a job still queued and never published (refused by the active-jobs limit)."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=self._key(owner, job_id),
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":queued": {"S": QUEUED}},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def cancel(self, owner: str, job_id: str, *, now_ms: int) -> tuple[bool, Job | None]:
        """Cancel the owner's job: a queued one at once (no runner will claim it), a running one by
        setting `cancel_requested` for its runner to find at its next progress or heartbeat write.

        Returns (whether this call changed the job, the job as it is now); (False, None) when the
        owner has no such job. A finished job is returned unchanged.
        """
        values = {":queued": {"S": QUEUED}, ":cancelled": {"S": CANCELLED}, ":now": {"N": str(now_ms)}}
        changed, item = self._update_if(
            owner,
            job_id,
            "SET #s = :cancelled, updated_at = :now, finished_at = :now REMOVE active_shard",
            "#s = :queued",
            values,
        )
        if changed or item is None or item["status"]["S"] != RUNNING:
            return changed, Job.from_item(item) if item else None
        changed, item = self._update_if(
            owner,
            job_id,
            "SET cancel_requested = :now",
            "#s = :running AND attribute_not_exists(cancel_requested)",
            {":running": {"S": RUNNING}, ":now": {"N": str(now_ms)}},
        )
        return changed, Job.from_item(item) if item else None

    def finish_cancelled(self, owner: str, job_id: str, *, token: str, now_ms: int) -> None:
        """running -> cancelled, by the runner that found `cancel_requested`; `LeaseLost` if not its job."""
        self._guarded_update(
            owner,
            job_id,
            token,
            "SET #s = :cancelled, updated_at = :now, finished_at = :now REMOVE active_shard",
            {":cancelled": {"S": CANCELLED}, ":now": {"N": str(now_ms)}},
        )

    def beat(
        self,
        owner: str,
        job_id: str,
        *,
        token: str,
        now_ms: int,
        progress: int | None = None,
        notice_cancel: bool = True,
    ) -> None:
        """Refresh the heartbeat (and progress) of a job this runner holds; `LeaseLost` if it does not,
        `JobCancelled` if its owner cancelled it (unless `notice_cancel` is False: the runner knows, and keeps
        the job alive until it stops)."""
        update = "SET updated_at = :now" + (", progress = :progress" if progress is not None else "")
        values: dict[str, Any] = {":now": {"N": str(now_ms)}}
        if progress is not None:
            values[":progress"] = {"N": str(progress)}
        self._guarded_update(owner, job_id, token, update, values, unless_cancelled=notice_cancel)

    def finish(
        self,
        owner: str,
        job_id: str,
        *,
        token: str,
        now_ms: int,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """running -> succeeded (with `result`) or failed (with `error`); `LeaseLost` if not this runner's,
        `JobCancelled` if its owner cancelled it meanwhile (the cancel was accepted: it ends cancelled)."""
        values: dict[str, Any] = {":now": {"N": str(now_ms)}}
        if error is None:
            update = "SET #s = :succeeded, progress = :hundred, #r = :result"
            values.update(
                {
                    ":succeeded": {"S": SUCCEEDED},
                    ":hundred": {"N": "100"},
                    ":result": {"S": json.dumps(result or {}, separators=(",", ":"))},
                }
            )
        else:
            update = "SET #s = :failed, #e = :error"
            values.update({":failed": {"S": FAILED}, ":error": {"S": error[:ERROR_MAX_CHARS]}})
        update += ", updated_at = :now, finished_at = :now REMOVE active_shard"
        self._guarded_update(owner, job_id, token, update, values, unless_cancelled=True)

    def fail_queued(self, owner: str, job_id: str, *, error: str, now_ms: int) -> bool:
        """queued -> failed (the publish failed); False if the job had already left `queued`."""
        return (
            self._fail_if(owner, job_id, error, now_ms, "#s = :queued", {":queued": {"S": QUEUED}})
            is not None
        )

    def fail_if_stale(self, owner: str, job_id: str, *, status: str, now_ms: int) -> Job | None:
        """Apply the stale rule: fail a job still in `status` whose heartbeat is older than that
        status allows. The failed job, or None if it moved on meanwhile (or is not stale)."""
        if status == RUNNING:
            cutoff = now_ms - STALE_AFTER_SECONDS * 1000
            error = (
                f"the job stopped responding (no heartbeat for {STALE_AFTER_SECONDS} s) "
                "and was marked failed; please try again"
            )
        elif status == QUEUED:
            cutoff = now_ms - QUEUED_STALE_SECONDS * 1000
            error = f"the job did not start within {QUEUED_STALE_SECONDS // 60} minutes; please try again"
        else:
            return None
        return self._fail_if(
            owner,
            job_id,
            error,
            now_ms,
            "#s = :status AND updated_at < :cutoff",
            {":status": {"S": status}, ":cutoff": {"N": str(cutoff)}},
        )

    # ------------------------------------------------------------ internals

    @staticmethod
    def _key(owner: str, job_id: str) -> dict[str, Any]:
        return {"owner": {"S": owner}, "job_id": {"S": job_id}}

    def _guarded_update(
        self,
        owner: str,
        job_id: str,
        token: str,
        update: str,
        values: dict[str, Any],
        *,
        unless_cancelled: bool = False,
    ) -> None:
        names = {"#s": "status"}
        if "#r" in update:
            names["#r"] = "result"
        if "#e" in update:
            names["#e"] = "error"
        condition = "#s = :running_now AND run_token = :token"
        if unless_cancelled:
            condition += " AND attribute_not_exists(cancel_requested)"
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(owner, job_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, ":running_now": {"S": RUNNING}, ":token": {"S": token}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            item = exc.response.get("Item")
            still_mine = (
                isinstance(item, dict)
                and item.get("status", {}).get("S") == RUNNING
                and item.get("run_token", {}).get("S") == token
            )
            if still_mine and isinstance(item, dict) and "cancel_requested" in item:
                raise JobCancelled(job_id) from exc
            raise LeaseLost(job_id) from exc

    def _update_if(
        self, owner: str, job_id: str, update: str, condition: str, values: dict[str, Any]
    ) -> tuple[bool, dict[str, Any] | None]:
        """One conditional UpdateItem: (True, the item after) or (False, the item as it was, or None)."""
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(owner, job_id),
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(job_id) AND {condition}",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            item = exc.response.get("Item")
            return False, item if isinstance(item, dict) and item else None
        return True, dict(response["Attributes"])

    def _fail_if(
        self, owner: str, job_id: str, error: str, now_ms: int, condition: str, values: dict[str, Any]
    ) -> Job | None:
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(owner, job_id),
                UpdateExpression="SET #s = :failed, #e = :error, updated_at = :now, finished_at = :now "
                "REMOVE active_shard",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={
                    **values,
                    ":failed": {"S": FAILED},
                    ":error": {"S": error[:ERROR_MAX_CHARS]},
                    ":now": {"N": str(now_ms)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return Job.from_item(response["Attributes"])
