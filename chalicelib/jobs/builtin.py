"""The job kinds the app ships: `report` (the long happy path) and `fail` (the failure path)."""

from __future__ import annotations

from typing import Any

from chalicelib.jobs.kinds import JobContext, JobError, int_param, job_kind, no_params, only
from chalicelib.jobs.model import RUN_DEADLINE_SECONDS

MAX_REPORT_SECONDS = 600
# Well inside the runner's time: a report always finishes before the job's own deadline.
assert MAX_REPORT_SECONDS <= RUN_DEADLINE_SECONDS - 60


def report_params(params: dict[str, Any]) -> dict[str, Any]:
    """`{"seconds": 1..600}`."""
    only(params, {"seconds"})
    return {"seconds": int_param(params, "seconds", 1, MAX_REPORT_SECONDS)}


@job_kind("report", params=report_params)
def report(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Works through one step a second for `seconds`, reporting progress; returns a summary."""
    steps = params["seconds"]
    total = 0
    for step in range(1, steps + 1):
        ctx.sleep(1)
        total += step * step
        ctx.progress(100 * step / steps)
    return {"summary": f"report of {steps} steps", "steps": steps, "checksum": total}


@job_kind("fail", params=no_params)
def fail(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Gets halfway, then fails on purpose (the failure path, end to end)."""
    ctx.sleep(1)
    ctx.progress(50)
    ctx.sleep(1)
    raise JobError("this job fails on purpose (kind 'fail')")
