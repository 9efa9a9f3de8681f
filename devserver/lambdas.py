"""Invoke the app's handlers the way Lambda does: the registered handler object, an event dict, a context.

The local stack finds handlers from what the `Chalice` object registered
(`websocket_handlers`, `event_sources`, `handler_map`), so a new
`@app.on_sns_message` or `@app.schedule` runs locally without any change here.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.app import (
    Chalice,
    Rate,
    ScheduledEventConfig,
    ScheduleExpression,
    SNSEventConfig,
    SQSEventConfig,
)
from chalice.config import Config
from chalice.local import LambdaContext

from devserver.config import PROJECT_ROOT

logger = logging.getLogger("devserver.lambda")

# Lambda's defaults when `.chalice/config.json` says nothing.
DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_MEMORY_MB = 128


class AppNotFound(RuntimeError):
    """The app directory has no `app.py`, or its modules would come from somewhere else."""


def load_app(app_dir: Path = PROJECT_ROOT) -> Chalice:
    """Import `app.py` from `app_dir` (this project's by default), as Lambda imports the deployed package.

    Its `chalicelib` is the one next to it: the check below refuses to serve an app whose
    `app` or `chalicelib` module was found elsewhere on `sys.path` (this project's, say).
    """
    app_dir = app_dir.resolve()
    if not (app_dir / "app.py").is_file():
        raise AppNotFound(f"{app_dir} has no app.py: --app-dir names a Chalice app's folder")
    if sys.path[:1] != [str(app_dir)]:
        sys.path.insert(0, str(app_dir))
    import app as app_module

    for name in ("app", "chalicelib"):
        module = sys.modules.get(name)
        found = Path(getattr(module, "__file__", None) or app_dir).resolve()
        if module is not None and not found.is_relative_to(app_dir):
            raise AppNotFound(f"`{name}` was imported from {found}, not from the app's folder {app_dir}")
    logger.info("serving %s", app_dir / "app.py")
    return app_module.app


@dataclass(frozen=True)
class LambdaFunction:
    """One handler of the app, invoked with an event dict and a fresh context, as Lambda does.

    function = LambdaFunction.named(app, "run_job")
    function.invoke({"Records": [...]})
    """

    name: str
    handler: Callable[[Any, Any], Any]
    app_name: str
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB

    @classmethod
    def named(cls, app: Chalice, name: str, app_dir: Path = PROJECT_ROOT) -> LambdaFunction:
        """The handler registered under `name`, with its timeout and memory from `.chalice/config.json`."""
        config = chalice_config(name, app_dir)
        return cls(
            name,
            app.handler_map[name],
            app.app_name,
            timeout_seconds=config.lambda_timeout
            or function_setting(name, "lambda_timeout", app_dir)
            or DEFAULT_TIMEOUT_SECONDS,
            memory_mb=config.lambda_memory_size
            or function_setting(name, "lambda_memory_size", app_dir)
            or DEFAULT_MEMORY_MB,
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler in this thread and return what it returns; its exceptions propagate."""
        context = LambdaContext(
            function_name=f"{self.app_name}-local-{self.name}",
            memory_size=self.memory_mb,
            max_runtime_ms=self.timeout_seconds * 1000,
        )
        started = time.monotonic()
        try:
            return self.handler(event, context)
        finally:
            logger.debug("%s took %.0f ms", self.name, (time.monotonic() - started) * 1000)


def chalice_config(function_name: str = "api_handler", app_dir: Path = PROJECT_ROOT) -> Config:
    """Chalice's view of the app's `.chalice/config.json` for one function on stage `local`.

    The file has no `local` stage: the top-level and per-function values apply,
    and the environment comes from the local stack, not from the file.
    """
    return Config.create(
        chalice_stage="local",
        function_name=function_name,
        project_dir=str(app_dir),
        config_from_disk=_config_from_disk(app_dir),
    )


def function_setting(function_name: str, key: str, app_dir: Path = PROJECT_ROOT) -> Any:
    """`lambda_functions.<function>.<key>` at the top level of `.chalice/config.json` (Chalice's lookup for
    stage `local` reads only a stage's own `lambda_functions`); None when unset."""
    return _config_from_disk(app_dir).get("lambda_functions", {}).get(function_name, {}).get(key)


@functools.cache
def _config_from_disk(app_dir: Path) -> dict[str, Any]:
    path = app_dir / ".chalice" / "config.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def websocket_functions(app: Chalice, app_dir: Path = PROJECT_ROOT) -> dict[str, LambdaFunction]:
    """Route key (`$connect`, `$default`, `$disconnect`) -> the app's handler for it."""
    return {
        route_key: LambdaFunction.named(app, config.name, app_dir)
        for route_key, config in app.websocket_handlers.items()
    }


def sns_functions(app: Chalice, app_dir: Path = PROJECT_ROOT) -> dict[str, list[LambdaFunction]]:
    """Topic name -> the handlers subscribed to it (`@app.on_sns_message(topic=...)`).

    A topic given as an ARN is keyed by its name, the last part of the ARN.
    """
    topics: dict[str, list[LambdaFunction]] = {}
    for source in app.event_sources:
        if isinstance(source, SNSEventConfig):
            name = source.topic.rsplit(":", 1)[-1]
            topics.setdefault(name, []).append(LambdaFunction.named(app, source.name, app_dir))
    return topics


@dataclass(frozen=True)
class QueueConsumer:
    """A handler on an SQS queue (`@app.on_sqs_message`), with what Lambda's poller would honour."""

    function: LambdaFunction
    queue: str
    batch_size: int
    concurrency: int  # the function's reserved concurrency, else the poller's own cap


# Lambda's SQS poller starts with five concurrent batches; a reserved concurrency caps it or lets it grow.
DEFAULT_QUEUE_CONCURRENCY = 5


def sqs_consumers(app: Chalice, app_dir: Path = PROJECT_ROOT) -> dict[str, QueueConsumer]:
    """Queue name -> the handler registered on it (`@app.on_sqs_message(queue=...)`, or by ARN)."""
    consumers = {}
    for source in app.event_sources:
        if isinstance(source, SQSEventConfig):
            name = source.queue or (source.queue_arn or "").rsplit(":", 1)[-1]
            reserved = chalice_config(source.name, app_dir).reserved_concurrency or function_setting(
                source.name, "reserved_concurrency", app_dir
            )
            concurrency = source.maximum_concurrency or reserved or DEFAULT_QUEUE_CONCURRENCY
            function = LambdaFunction.named(app, source.name, app_dir)
            consumers[name] = QueueConsumer(function, name, source.batch_size, concurrency)
    return consumers


@dataclass(frozen=True)
class Schedule:
    function: LambdaFunction
    expression: str
    every_seconds: float | None  # None: a cron expression, which the local stack does not run


def schedules(app: Chalice, app_dir: Path = PROJECT_ROOT) -> list[Schedule]:
    """Every `@app.schedule` handler with its period in seconds."""
    found = []
    for source in app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            expression = _expression_text(source.schedule_expression)
            function = LambdaFunction.named(app, source.name, app_dir)
            found.append(Schedule(function, expression, rate_seconds(expression)))
    return found


def rate_seconds(expression: str) -> float | None:
    """`rate(5 minutes)` -> 300.0; a cron expression -> None.

    >>> rate_seconds("rate(1 minute)")
    60.0
    """
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return float(int(match.group(1)) * unit)


def _expression_text(expression: str | ScheduleExpression) -> str:
    if isinstance(expression, Rate | ScheduleExpression):
        return expression.to_string()
    return str(expression)
