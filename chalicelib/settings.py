"""Settings of the app, read once per process from environment variables.

`.chalice/config.json` sets them per stage on AWS; the local stack sets them for
`local`. Nothing else in the app reads `os.environ`. AWS endpoints are not
settings: boto3 reads `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` itself.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

STAGES = ("local", "dev", "prod")
DEFAULT_MAX_CONNECTIONS_PER_USER = 10
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigurationError(RuntimeError):
    """The environment does not describe a stage this app can run in."""


@dataclass(frozen=True)
class Settings:
    stage: str
    firebase_project_id: str
    websocket_endpoint: str
    connections_table: str
    jobs_table: str
    messages_table: str
    payments_table: str
    jobs_topic_arn: str
    stripe_webhook_secret: str = field(repr=False)  # never printed with the settings
    stripe_webhook_secret_param: str
    max_connections_per_user: int
    check_revoked_tokens: bool
    auth_emulator_host: str
    log_level: str = "INFO"  # of the app's own loggers (`app`, `chalicelib.*`)

    @property
    def is_local(self) -> bool:
        return self.stage == "local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from `environ`, refusing unsafe combinations.

        >>> Settings.from_env({"APP_STAGE": "local", "FIREBASE_PROJECT_ID": "demo-x"}).stage
        'local'
        """
        stage = environ.get("APP_STAGE", "dev")
        if stage not in STAGES:
            raise ConfigurationError(f"APP_STAGE must be one of {', '.join(STAGES)}, not {stage!r}")
        emulator = environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
        if emulator and stage != "local":
            # firebase-admin accepts unsigned tokens when this is set: anyone could sign in as anyone.
            raise ConfigurationError(
                f"FIREBASE_AUTH_EMULATOR_HOST is set on stage {stage!r}; it makes firebase-admin accept "
                "unsigned tokens and is allowed on the 'local' stage only. Unset it."
            )
        return cls(
            stage=stage,
            firebase_project_id=environ.get("FIREBASE_PROJECT_ID", ""),
            websocket_endpoint=environ.get("WEBSOCKET_ENDPOINT", "").rstrip("/"),
            connections_table=environ.get("CONNECTIONS_TABLE", "realtime-connections"),
            jobs_table=environ.get("JOBS_TABLE", "realtime-jobs"),
            messages_table=environ.get("MESSAGES_TABLE", "realtime-messages"),
            payments_table=environ.get("PAYMENTS_TABLE", "realtime-payments"),
            jobs_topic_arn=environ.get("JOBS_TOPIC_ARN", ""),
            stripe_webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET", ""),
            stripe_webhook_secret_param=environ.get("STRIPE_WEBHOOK_SECRET_PARAM", ""),
            max_connections_per_user=_positive_int(
                environ, "MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER
            ),
            check_revoked_tokens=_flag(environ, "FIREBASE_CHECK_REVOKED"),
            auth_emulator_host=emulator,
            log_level=_log_level(environ),
        )


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def _log_level(environ: Mapping[str, str]) -> str:
    raw = environ.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if raw not in LOG_LEVELS:
        raise ConfigurationError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return raw


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from `os.environ` on first use."""
    return Settings.from_env(os.environ)
