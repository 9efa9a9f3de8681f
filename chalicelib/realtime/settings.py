"""What the realtime core needs to know, read once per process from environment variables.

This module is the core's only reader of `os.environ`. An app that has its own settings
composes `RealtimeSettings.from_env(environ)` into them; AWS endpoints are not settings
(boto3 reads `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` itself).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

STAGES = ("local", "dev", "prod")
DEFAULT_MAX_CONNECTIONS_PER_USER = 10
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# How frames reach the Management API: libcurl's multi interface (the least CPU per frame,
# `python -m bench.fanout`), aiohttp (no native library) or a boto3 client on a thread pool.
TRANSPORTS = ("curl", "aiohttp", "boto3")


class ConfigurationError(RuntimeError):
    """The environment does not describe a stage this app can run in."""


@dataclass(frozen=True)
class RealtimeSettings:
    stage: str = "dev"
    firebase_project_id: str = ""
    auth_emulator_host: str = ""
    check_revoked_tokens: bool = False
    websocket_endpoint: str = ""  # the Management API base URL, stage included
    connections_table: str = "realtime-connections"
    max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
    transport: str = "curl"
    log_level: str = "INFO"  # of the app's own loggers (`app`, `chalicelib.*`)

    @property
    def is_local(self) -> bool:
        return self.stage == "local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RealtimeSettings:
        """Build settings from `environ`, refusing unsafe combinations.

        >>> RealtimeSettings.from_env({"APP_STAGE": "local", "FIREBASE_PROJECT_ID": "demo-x"}).stage
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
            auth_emulator_host=emulator,
            check_revoked_tokens=flag(environ, "FIREBASE_CHECK_REVOKED"),
            websocket_endpoint=environ.get("WEBSOCKET_ENDPOINT", "").rstrip("/"),
            connections_table=environ.get("CONNECTIONS_TABLE", "realtime-connections"),
            max_connections_per_user=positive_int(
                environ, "MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER
            ),
            transport=one_of(environ, "REALTIME_TRANSPORT", TRANSPORTS, default="curl"),
            log_level=one_of(environ, "LOG_LEVEL", LOG_LEVELS, default="INFO"),
        )


def positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """`environ[name]` as an integer >= 1, `default` when unset; `ConfigurationError` otherwise."""
    raw = environ.get(name, "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def one_of(environ: Mapping[str, str], name: str, choices: tuple[str, ...], *, default: str) -> str:
    """`environ[name]` if one of `choices` (any case), `default` when unset; else `ConfigurationError`."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    raw = next((choice for choice in choices if choice.lower() == raw.lower()), raw)
    if raw not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def flag(environ: Mapping[str, str], name: str) -> bool:
    """`environ[name]` as a boolean (unset: False); `ConfigurationError` for anything but yes/no words."""
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


@functools.cache
def get_settings() -> RealtimeSettings:
    """The process's realtime settings, read from `os.environ` on first use."""
    return RealtimeSettings.from_env(os.environ)
