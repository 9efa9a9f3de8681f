"""Settings of the app, read once per process from environment variables.

`.chalice/config.json` sets them per stage on AWS; the local stack sets them for
`local`. Nothing else in the app reads `os.environ`: the realtime core's own
settings (`chalicelib.realtime.settings`) are read from the same environment and
composed here. AWS endpoints are not settings: boto3 reads `AWS_ENDPOINT_URL`
and `AWS_ENDPOINT_URL_<SERVICE>` itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.realtime.settings import ConfigurationError, RealtimeSettings

__all__ = ["ConfigurationError", "RealtimeSettings", "Settings", "get_settings"]


@dataclass(frozen=True)
class Settings:
    realtime: RealtimeSettings  # stage, Firebase, connections table, WebSocket endpoint, log level
    jobs_table: str
    messages_table: str
    payments_table: str
    jobs_topic_arn: str
    stripe_webhook_secret: str = field(repr=False)  # never printed with the settings
    stripe_webhook_secret_param: str

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
        )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from `os.environ` on first use."""
    return Settings.from_env(os.environ)
