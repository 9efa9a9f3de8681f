"""Settings of the app, read once per process from environment variables.

`.chalice/config.json` sets them per stage on AWS; the local stack sets them for
`local`. Nothing else in the app reads `os.environ`: the realtime core's own
settings (`chalice_realtime.RealtimeSettings`) are read from the same environment and
composed here. AWS endpoints are not settings: boto3 reads `AWS_ENDPOINT_URL`
and `AWS_ENDPOINT_URL_<SERVICE>` itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalice_realtime import ConfigurationError, RealtimeSettings

from chalicelib.limits import Rate

__all__ = ["ConfigurationError", "RealtimeSettings", "Settings", "get_settings"]

DEFAULT_MAX_ACTIVE_JOBS_PER_USER = 3
# Jobs queued or running on the whole stage: the job runner's reserved concurrency (`.chalice/config.json`),
# so an admitted job finds a runner instead of waiting in Lambda's queue until it is failed as stale.
DEFAULT_MAX_ACTIVE_JOBS = 20
DEFAULT_JOBS_RATE_LIMIT = Rate(10, 60)
DEFAULT_MESSAGES_RATE_LIMIT = Rate(20, 10)
DEFAULT_ROOMS_RATE_LIMIT = Rate(10, 60)
DEFAULT_ROOM_MESSAGES_RATE_LIMIT = Rate(20, 10)


@dataclass(frozen=True)
class Settings:
    realtime: RealtimeSettings  # stage, Firebase, connections table, WebSocket endpoint, log level
    jobs_table: str
    messages_table: str
    payments_table: str
    jobs_topic_arn: str
    stripe_webhook_secret: str = field(repr=False)  # never printed with the settings
    stripe_webhook_secret_param: str
    rate_limits_table: str = "realtime-rate-limits"
    max_active_jobs_per_user: int = DEFAULT_MAX_ACTIVE_JOBS_PER_USER  # queued or running
    max_active_jobs: int = DEFAULT_MAX_ACTIVE_JOBS  # queued or running on the stage, every user's
    jobs_rate_limit: Rate = DEFAULT_JOBS_RATE_LIMIT  # POST /jobs per user
    messages_rate_limit: Rate = DEFAULT_MESSAGES_RATE_LIMIT  # POST /messages per user
    rooms_table: str = "realtime-rooms"
    rooms_rate_limit: Rate = DEFAULT_ROOMS_RATE_LIMIT  # POST /rooms and POST /rooms/{id}/members per user
    room_messages_rate_limit: Rate = DEFAULT_ROOM_MESSAGES_RATE_LIMIT  # POST /rooms/{id}/messages per user

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from `environ`, refusing unsafe combinations.

        >>> Settings.from_env({"APP_STAGE": "local", "FIREBASE_PROJECT_ID": "demo-x"}).realtime.stage
        'local'
        """
        return cls(
            realtime=RealtimeSettings.from_env(environ),
            jobs_table=environ.get("JOBS_TABLE", "realtime-jobs"),
            messages_table=environ.get("MESSAGES_TABLE", "realtime-messages"),
            payments_table=environ.get("PAYMENTS_TABLE", "realtime-payments"),
            jobs_topic_arn=environ.get("JOBS_TOPIC_ARN", ""),
            stripe_webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET", ""),
            stripe_webhook_secret_param=environ.get("STRIPE_WEBHOOK_SECRET_PARAM", ""),
            rate_limits_table=environ.get("RATE_LIMITS_TABLE", "realtime-rate-limits"),
            max_active_jobs_per_user=positive_int(
                environ, "MAX_ACTIVE_JOBS_PER_USER", DEFAULT_MAX_ACTIVE_JOBS_PER_USER
            ),
            max_active_jobs=positive_int(environ, "MAX_ACTIVE_JOBS", DEFAULT_MAX_ACTIVE_JOBS),
            jobs_rate_limit=rate(environ, "JOBS_RATE_LIMIT", DEFAULT_JOBS_RATE_LIMIT),
            messages_rate_limit=rate(environ, "MESSAGES_RATE_LIMIT", DEFAULT_MESSAGES_RATE_LIMIT),
            rooms_table=environ.get("ROOMS_TABLE", "realtime-rooms"),
            rooms_rate_limit=rate(environ, "ROOMS_RATE_LIMIT", DEFAULT_ROOMS_RATE_LIMIT),
            room_messages_rate_limit=rate(
                environ, "ROOM_MESSAGES_RATE_LIMIT", DEFAULT_ROOM_MESSAGES_RATE_LIMIT
            ),
        )


def rate(environ: Mapping[str, str], name: str, default: Rate) -> Rate:
    """`environ[name]` as `<requests>/<seconds>` (`10/60`), `default` when unset; else a
    `ConfigurationError`."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return Rate.parse(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


def positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """`environ[name]` as an integer >= 1, `default` when unset; `ConfigurationError` otherwise."""
    raw = environ.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from `os.environ` on first use."""
    return Settings.from_env(os.environ)
