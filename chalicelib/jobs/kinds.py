"""The registry of job kinds: adding a kind is one decorated function.

    @job_kind("thumbnail", params=lambda p: {"url": str_param(p, "url")})
    def thumbnail(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.progress(50)
        return {"width": 128}

A kind receives its validated params and a `JobContext`; it reports progress with
`ctx.progress`, waits with `ctx.sleep`, returns a small JSON-able dict (the result)
or raises `JobError` with a message the user can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.errors import RequestRefused

ParamsValidator = Callable[[dict[str, Any]], dict[str, Any]]


class JobError(Exception):
    """A job failed for a reason the user may read (it becomes the job's `error`)."""


class InvalidJobRequest(RequestRefused):
    """`POST /jobs` asked for something this API refuses; the message says what (a 400)."""


class JobContext(Protocol):
    """What a running kind may do."""

    @property
    def job_id(self) -> str: ...

    @property
    def owner(self) -> str: ...

    def progress(self, percent: float) -> None:
        """Record progress 0-100 (written and notified at most about once a second)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (instantly in tests); raises `JobError` once the job's time is up."""
        ...

    def elapsed(self) -> float:
        """Seconds since the job started running."""
        ...


Runner = Callable[[JobContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Runner
    validate: ParamsValidator


class JobKinds:
    """Named job kinds and their params validators.

    kinds = JobKinds()
    kinds.register("noop")(lambda ctx, params: {})
    kinds.validate("noop", {})  # {}
    """

    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def register(self, name: str, *, params: ParamsValidator | None = None) -> Callable[[Runner], Runner]:
        """Decorator: register `run` under `name`, with `params` checking and normalizing its params."""

        def decorate(run: Runner) -> Runner:
            if name in self._kinds:
                raise ValueError(f"job kind {name!r} is registered twice")
            self._kinds[name] = JobKind(name, run, params or no_params)
            return run

        return decorate

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def validate(self, kind: object, params: object) -> dict[str, Any]:
        """The normalized params of a `POST /jobs` request; else `InvalidJobRequest` saying what is wrong."""
        if not isinstance(kind, str) or not kind:
            raise InvalidJobRequest(f"kind must be a string, one of: {', '.join(self.names())}")
        registered = self._kinds.get(kind)
        if registered is None:
            raise InvalidJobRequest(f"unknown kind {kind[:64]!r}; expected one of: {', '.join(self.names())}")
        if not isinstance(params, dict):
            raise InvalidJobRequest("params must be a JSON object")
        try:
            return registered.validate(params)
        except ValueError as exc:
            raise InvalidJobRequest(f"invalid params for {kind!r}: {exc}") from exc


KINDS = JobKinds()


def job_kind(
    name: str, *, params: ParamsValidator | None = None, registry: JobKinds = KINDS
) -> Callable[[Runner], Runner]:
    """Register a job kind in the app's registry (or `registry`).

    @job_kind("report", params=report_params)
    def report(ctx, params): ...
    """
    return registry.register(name, params=params)


# ---------------------------------------------------------------- params helpers


def no_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validator for kinds that take no params."""
    only(params, set())
    return {}


def only(params: dict[str, Any], allowed: set[str]) -> None:
    """Refuse params outside `allowed`, naming the first one."""
    for name in params:
        if name not in allowed:
            raise ValueError(f"unknown parameter {str(name)[:64]!r}")


def int_param(params: dict[str, Any], name: str, low: int, high: int) -> int:
    """`params[name]`, which must be an integer from `low` to `high` (JSON `true` is not one)."""
    value = params.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value
