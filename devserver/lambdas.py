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
from typing import Any

from chalice.app import Chalice, Rate, ScheduledEventConfig, ScheduleExpression, SNSEventConfig
from chalice.config import Config
from chalice.local import LambdaContext

from devserver.config import PROJECT_ROOT

logger = logging.getLogger("devserver.lambda")

# Lambda's defaults when `.chalice/config.json` says nothing.
DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_MEMORY_MB = 128


def load_app() -> Chalice:
    """Import `app.py` from the project root, as Lambda imports the deployed package."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    import app as app_module

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
    def named(cls, app: Chalice, name: str) -> LambdaFunction:
        """The handler registered under `name`, with its timeout and memory from `.chalice/config.json`."""
        config = chalice_config(name)
        return cls(
            name,
            app.handler_map[name],
            app.app_name,
            timeout_seconds=config.lambda_timeout or DEFAULT_TIMEOUT_SECONDS,
            memory_mb=config.lambda_memory_size or DEFAULT_MEMORY_MB,
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


def chalice_config(function_name: str = "api_handler") -> Config:
    """Chalice's view of `.chalice/config.json` for one function on stage `local`.

    The file has no `local` stage: the top-level and per-function values apply,
    and the environment comes from the local stack, not from the file.
    """
    return Config.create(
        chalice_stage="local",
        function_name=function_name,
        project_dir=str(PROJECT_ROOT),
        config_from_disk=_config_from_disk(),
    )


@functools.cache
def _config_from_disk() -> dict[str, Any]:
    path = PROJECT_ROOT / ".chalice" / "config.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def websocket_functions(app: Chalice) -> dict[str, LambdaFunction]:
    """Route key (`$connect`, `$default`, `$disconnect`) -> the app's handler for it."""
    return {
        route_key: LambdaFunction.named(app, config.name)
        for route_key, config in app.websocket_handlers.items()
    }


def sns_functions(app: Chalice) -> dict[str, list[LambdaFunction]]:
    """Topic name -> the handlers subscribed to it (`@app.on_sns_message(topic=...)`).

    A topic given as an ARN is keyed by its name, the last part of the ARN.
    """
    topics: dict[str, list[LambdaFunction]] = {}
    for source in app.event_sources:
        if isinstance(source, SNSEventConfig):
            name = source.topic.rsplit(":", 1)[-1]
            topics.setdefault(name, []).append(LambdaFunction.named(app, source.name))
    return topics


@dataclass(frozen=True)
class Schedule:
    function: LambdaFunction
    expression: str
    every_seconds: float | None  # None: a cron expression, which the local stack does not run


def schedules(app: Chalice) -> list[Schedule]:
    """Every `@app.schedule` handler with its period in seconds."""
    found = []
    for source in app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            expression = _expression_text(source.schedule_expression)
            found.append(
                Schedule(LambdaFunction.named(app, source.name), expression, rate_seconds(expression))
            )
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
