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
from typing import Any

from .oidc import TOKEN_USES as OIDC_TOKEN_USES
from .oidc import url_problem
from .transports import TRANSPORTS

STAGES = ("local", "dev", "prod")
DEFAULT_MAX_CONNECTIONS_PER_USER = 10
DEFAULT_MAX_TOPICS_PER_CONNECTION = 50
DEFAULT_SUBSCRIBE_RATE_LIMIT = (60, 60)  # subscribes per user per window of seconds
DEFAULT_MAX_POSTS_PER_SECOND = 10_000  # API Gateway's default account throttle
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Who issues the tokens `$connect` and `realtime_auth` accept: Firebase Authentication, or any
# OpenID Connect issuer publishing a JWKS (Cognito user pools, Auth0, Keycloak).
AUTH_PROVIDERS = ("firebase", "oidc")
OIDC_VARIABLES = ("OIDC_ISSUER", "OIDC_AUDIENCE", "OIDC_JWKS_URL", "OIDC_TOKEN_USE")


class ConfigurationError(RuntimeError):
    """The environment does not describe a stage this app can run in."""


@dataclass(frozen=True)
class RealtimeSettings:
    stage: str = "dev"
    auth_provider: str = "firebase"
    firebase_project_id: str = ""
    auth_emulator_host: str = ""
    check_revoked_tokens: bool = False
    oidc_issuer: str = ""  # exactly as the tokens' `iss` claim
    oidc_audiences: tuple[str, ...] = ()  # accepted `aud` (or Cognito access tokens' `client_id`)
    oidc_jwks_url: str = ""  # '': the `jwks_uri` of the issuer's discovery document
    oidc_token_uses: tuple[str, ...] = OIDC_TOKEN_USES
    websocket_endpoint: str = ""  # the Management API base URL, stage included
    connections_table: str = "realtime-connections"
    max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
    transport: str = "curl"
    topics_table: str = "realtime-topics"
    max_topics_per_connection: int = DEFAULT_MAX_TOPICS_PER_CONNECTION
    subscribe_rate_limit: tuple[int, int] = DEFAULT_SUBSCRIBE_RATE_LIMIT  # (subscribes, seconds) per user
    topic_authorizer: str = ""  # `module:function` deciding who may subscribe; '' refuses every subscribe
    # Posts per second this process may send at most; the rest of the account's budget is the REST API's.
    max_posts_per_second: int = DEFAULT_MAX_POSTS_PER_SECOND
    log_level: str = "INFO"  # of the app's own loggers (`app`, `chalicelib.*`)
    fanout_queue_url: str = ""  # the fan-out workers' SQS queue; '' delivers every notify inline
    notify_budget_seconds: float = 0.5  # what a notify spends delivering before it hands the rest on

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
        if stage == "local" and environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            # Set by the Lambda runtime: `local` there would let the emulator's unsigned tokens in.
            raise ConfigurationError("APP_STAGE is 'local' on AWS Lambda; set the stage's name (dev, prod)")
        emulator = environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
        if emulator and stage != "local":
            # firebase-admin accepts unsigned tokens when this is set: anyone could sign in as anyone.
            raise ConfigurationError(
                f"FIREBASE_AUTH_EMULATOR_HOST is set on stage {stage!r}; it makes firebase-admin accept "
                "unsigned tokens and is allowed on the 'local' stage only. Unset it."
            )
        provider = one_of(environ, "AUTH_PROVIDER", AUTH_PROVIDERS, default="firebase")
        oidc = oidc_settings(environ) if provider == "oidc" else {}
        stray = [name for name in OIDC_VARIABLES if environ.get(name, "").strip()]
        if provider != "oidc" and stray:
            raise ConfigurationError(
                f"{', '.join(stray)} set but AUTH_PROVIDER is {provider!r}: set AUTH_PROVIDER=oidc to verify "
                "tokens of that issuer, or unset them"
            )
        return cls(
            stage=stage,
            auth_provider=provider,
            firebase_project_id=environ.get("FIREBASE_PROJECT_ID", ""),
            auth_emulator_host=emulator,
            check_revoked_tokens=flag(environ, "FIREBASE_CHECK_REVOKED"),
            **oidc,
            websocket_endpoint=websocket_endpoint(environ, stage),
            connections_table=environ.get("CONNECTIONS_TABLE", "realtime-connections"),
            max_connections_per_user=positive_int(
                environ, "MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER
            ),
            transport=one_of(environ, "REALTIME_TRANSPORT", TRANSPORTS, default="curl"),
            max_posts_per_second=positive_int(
                environ, "REALTIME_MAX_POSTS_PER_SECOND", DEFAULT_MAX_POSTS_PER_SECOND
            ),
            log_level=one_of(environ, "LOG_LEVEL", LOG_LEVELS, default="INFO"),
            topics_table=environ.get("TOPICS_TABLE", "realtime-topics"),
            max_topics_per_connection=positive_int(
                environ, "MAX_TOPICS_PER_CONNECTION", DEFAULT_MAX_TOPICS_PER_CONNECTION
            ),
            subscribe_rate_limit=rate(environ, "SUBSCRIBE_RATE_LIMIT", DEFAULT_SUBSCRIBE_RATE_LIMIT),
            topic_authorizer=import_path(environ, "TOPIC_AUTHORIZER"),
            fanout_queue_url=environ.get("FANOUT_QUEUE_URL", "").strip(),
            notify_budget_seconds=seconds(environ, "REALTIME_NOTIFY_BUDGET_SECONDS", 0.5, most=25.0),
        )


def oidc_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The `oidc_*` fields from `OIDC_*`, each checked; `ConfigurationError` naming the variable otherwise."""
    issuer = environ.get("OIDC_ISSUER", "").strip()
    if not issuer:
        raise ConfigurationError(
            "OIDC_ISSUER must be set with AUTH_PROVIDER=oidc: the issuer exactly as the tokens' `iss` claim "
            "(Cognito: https://cognito-idp.<region>.amazonaws.com/<user-pool-id>)"
        )
    if problem := url_problem(issuer):
        raise ConfigurationError(f"OIDC_ISSUER {issuer!r}: {problem}")
    audiences = words(environ, "OIDC_AUDIENCE")
    if not audiences:
        raise ConfigurationError(
            "OIDC_AUDIENCE must be set with AUTH_PROVIDER=oidc: the accepted audiences, comma-separated "
            "(Cognito: the app client id)"
        )
    jwks_url = environ.get("OIDC_JWKS_URL", "").strip()
    if jwks_url and (problem := url_problem(jwks_url)):
        raise ConfigurationError(f"OIDC_JWKS_URL {jwks_url!r}: {problem}")
    token_uses = words(environ, "OIDC_TOKEN_USE") or OIDC_TOKEN_USES
    if unknown := [use for use in token_uses if use not in OIDC_TOKEN_USES]:
        raise ConfigurationError(
            f"OIDC_TOKEN_USE must be id, access or both (comma-separated), not {unknown[0]!r}"
        )
    return {
        "oidc_issuer": issuer,
        "oidc_audiences": audiences,
        "oidc_jwks_url": jwks_url,
        "oidc_token_uses": token_uses,
    }


def websocket_endpoint(environ: Mapping[str, str], stage: str) -> str:
    """`WEBSOCKET_ENDPOINT` without its trailing slash: https://, or http:// to this machine or on the local
    stack (`--allow-remote` serves it on another address). The notifier signs its Management API calls:
    over http:// to anywhere else the signature would travel in clear."""
    endpoint = environ.get("WEBSOCKET_ENDPOINT", "").strip().rstrip("/")
    local_http = stage == "local" and endpoint.startswith("http://")
    if endpoint and not local_http and (problem := url_problem(endpoint)):
        raise ConfigurationError(f"WEBSOCKET_ENDPOINT {endpoint!r}: {problem}")
    return endpoint


def words(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """`environ[name]` split at commas, blanks dropped."""
    return tuple(word.strip() for word in environ.get(name, "").split(",") if word.strip())


def positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """`environ[name]` as an integer >= 1, `default` when unset; `ConfigurationError` otherwise."""
    raw = environ.get(name, "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def seconds(environ: Mapping[str, str], name: str, default: float, *, most: float) -> float:
    """`environ[name]` as seconds, 0 to `most`, `default` when unset; `ConfigurationError` otherwise."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw) or float(raw) > most:
        raise ConfigurationError(f"{name} must be a number of seconds from 0 to {most:g}, not {raw!r}")
    return float(raw)


def rate(environ: Mapping[str, str], name: str, default: tuple[int, int]) -> tuple[int, int]:
    """`environ[name]` as `<requests>/<seconds>`, `default` when unset; else a `ConfigurationError`."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    match = re.fullmatch(r"([0-9]+)\s*/\s*([0-9]+)", raw)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise ConfigurationError(
            f"{name} must be <requests>/<seconds> with both at least 1, like 60/60, not {raw!r}"
        )
    return int(match[1]), int(match[2])


def import_path(environ: Mapping[str, str], name: str) -> str:
    """`environ[name]` as `package.module:function` ('' when unset); `ConfigurationError` otherwise."""
    raw = environ.get(name, "").strip()
    if raw and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", raw):
        raise ConfigurationError(f"{name} must name a function as package.module:function, not {raw!r}")
    return raw


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


DEFAULT_FANOUT_QUEUE = "realtime-fanout"


def fanout_queue_name(environ: Mapping[str, str] | None = None) -> str:
    """The queue the blueprint's fan-out worker is registered on: the last part of `FANOUT_QUEUE_URL`,
    else `realtime-fanout`. Read when the blueprint is imported (Chalice's deploy imports it with the
    stage's variables).

    >>> fanout_queue_name({"FANOUT_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/111122223333/app-dev-fanout"})
    'app-dev-fanout'
    """
    url = (os.environ if environ is None else environ).get("FANOUT_QUEUE_URL", "").strip().rstrip("/")
    return url.rsplit("/", 1)[-1] if url else DEFAULT_FANOUT_QUEUE


@functools.cache
def get_settings() -> RealtimeSettings:
    """The process's realtime settings, read from `os.environ` on first use."""
    return RealtimeSettings.from_env(os.environ)
