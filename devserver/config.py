"""Ports, timeouts and the environment the local stack gives the app.

Every value has a default matching the README and can be overridden by a
command-line option or an environment variable (`DEV_REST_PORT=9000 make dev`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from devserver.local_only import is_loopback

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The local webhook secret: public on purpose, it signs test events on a laptop only.
LOCAL_STRIPE_SECRET = "whsec_local_devserver_not_a_secret"  # noqa: S105
# The Auth Emulator accepts any API key; the Firebase JS SDK insists on having one.
LOCAL_FIREBASE_API_KEY = "demo-api-key"
FAKE_ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
JOBS_TOPIC_NAME = "chalice-realtime-jobs"
# The queue the core's `fanout_worker` is registered on (chalice_realtime's blueprint): the local stack
# creates it (with a dead-letter queue) and runs the worker on its messages as Lambda's poller would.
FANOUT_QUEUE_NAME = "realtime-fanout"
# API Gateway's limits (docs/local-stack.md): a connection idle this long is closed, and any after this age.
AWS_IDLE_TIMEOUT_SECONDS = 600.0
AWS_MAX_CONNECTION_AGE_SECONDS = 7200.0


@dataclass(frozen=True)
class StackConfig:
    """Where each part of the local stack listens and how the gateway behaves.

    config = StackConfig.from_args(["--rest-port", "9000"], os.environ)
    config.rest_url  # 'http://127.0.0.1:9000'
    """

    host: str = "127.0.0.1"
    rest_port: int = 8000
    ws_port: int = 8001
    web_port: int = 8080
    auth_port: int = 9099
    aws_port: int = 8002
    events_port: int = 8003
    project_id: str = "demo-realtime"
    idle_timeout: float = AWS_IDLE_TIMEOUT_SECONDS
    max_connection_age: float = AWS_MAX_CONNECTION_AGE_SECONDS
    state_file: str = str(PROJECT_ROOT / ".dev" / "stack.json")
    startup_timeout: float = 90.0
    stripe_webhook_secret: str = LOCAL_STRIPE_SECRET
    # The Chalice app to serve (its `app.py`, `chalicelib/` and `.chalice/config.json`): this project's by
    # default, or another app that adopted the realtime core (docs/adopt.md).
    app_dir: str = str(PROJECT_ROOT)
    # Listen on an address other machines can reach (`--allow-remote`; never from the environment).
    allow_remote: bool = False

    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str]) -> StackConfig:
        """Options win over `DEV_*` environment variables, which win over the defaults."""
        parser = argparse.ArgumentParser(
            prog="python -m devserver",
            description="Run the whole app locally: REST, WebSocket gateway, SNS, DynamoDB, Firebase Auth.",
        )
        for field in fields(cls):
            if isinstance(field.default, bool):
                # An opt-in is given on the command line each time, never inherited from the environment.
                parser.add_argument(
                    "--" + field.name.replace("_", "-"), action="store_true", help=OPT_INS[field.name]
                )
                continue
            env_name = ENV_NAMES[field.name]
            convert: Callable[[Any], Any] = type(field.default)
            parser.add_argument(
                "--" + field.name.replace("_", "-"),
                type=convert,
                # Converted here too: a bad DEV_* value fails at start with the variable's name.
                default=convert(environ.get(env_name, field.default)),
                help=f"(env {env_name}, default {field.default})",
            )
        args = parser.parse_args(list(argv))
        config = cls(**vars(args))
        if not config.project_id.startswith("demo-"):
            parser.error("--project-id must start with 'demo-': the emulator then never reaches Google")
        if not config.allow_remote and not is_loopback(config.host):
            parser.error(
                f"--host {config.host} is reachable from other machines, and the stack trusts whoever "
                "reaches it (the Auth Emulator accepts unsigned tokens). Use a loopback address such as "
                "127.0.0.1, or add --allow-remote if you really mean it"
            )
        return config

    @property
    def remote_warning(self) -> str:
        """What to print when the stack listens on a non-loopback address ('' when it does not)."""
        if is_loopback(self.host):
            return ""
        return (
            f"WARNING: the local stack listens on {self.host} (--allow-remote). Anyone who can reach this "
            "address can use it, and its Firebase Auth Emulator accepts unsigned tokens: they can sign in "
            "as any user, read and change every table, and drive the local-only endpoints."
        )

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.ws_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    @property
    def auth_emulator_host(self) -> str:
        return f"{self.host}:{self.auth_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def events_url(self) -> str:
        return f"http://{self.host}:{self.events_port}"

    @property
    def jobs_topic_arn(self) -> str:
        return f"arn:aws:sns:{REGION}:{FAKE_ACCOUNT_ID}:{JOBS_TOPIC_NAME}"

    @property
    def fanout_queue_url(self) -> str:
        return f"{self.aws_url}/{FAKE_ACCOUNT_ID}/{FANOUT_QUEUE_NAME}"

    def ports(self) -> dict[str, int]:
        return {
            "rest": self.rest_port,
            "gateway": self.ws_port,
            "web": self.web_port,
            "auth": self.auth_port,
            "aws": self.aws_port,
            "events": self.events_port,
        }

    def app_environment(self) -> dict[str, str]:
        """The variables the app's settings read (with the core's) and boto3 reads, for stage `local`."""
        return {
            "APP_STAGE": "local",
            "FIREBASE_PROJECT_ID": self.project_id,
            "FIREBASE_AUTH_EMULATOR_HOST": self.auth_emulator_host,
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "CONNECTIONS_TABLE": "local-connections",
            "JOBS_TABLE": "local-jobs",
            "MESSAGES_TABLE": "local-messages",
            "PAYMENTS_TABLE": "local-payments",
            "RATE_LIMITS_TABLE": "local-rate-limits",
            "TOPICS_TABLE": "local-topics",
            "ROOMS_TABLE": "local-rooms",
            "JOBS_TOPIC_ARN": self.jobs_topic_arn,
            "FANOUT_QUEUE_URL": self.fanout_queue_url,
            "WEBSOCKET_ENDPOINT": self.management_url,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            **self.topic_authorizer(),
        }

    def topic_authorizer(self) -> dict[str, str]:
        """`TOPIC_AUTHORIZER` as the app's `.chalice/config.json` sets it for every stage (none: {})."""
        path = Path(self.app_dir) / ".chalice" / "config.json"
        try:
            variables = json.loads(path.read_text()).get("environment_variables", {})
        except (OSError, ValueError):
            return {}
        value = variables.get("TOPIC_AUTHORIZER") if isinstance(variables, dict) else None
        return {"TOPIC_AUTHORIZER": value} if isinstance(value, str) and value else {}

    def web_config(self) -> dict[str, str]:
        """What the demo page reads from `GET /config.json`."""
        return {
            "restUrl": self.rest_url,
            "wsUrl": self.ws_url,
            "authEmulatorUrl": f"http://{self.auth_emulator_host}",
            "firebaseProjectId": self.project_id,
            "firebaseApiKey": LOCAL_FIREBASE_API_KEY,
        }


OPT_INS = {
    "allow_remote": "listen on a non-loopback --host (anyone reaching it can sign in as anyone: the Auth "
    "Emulator accepts unsigned tokens)",
}

ENV_NAMES = {
    "host": "DEV_HOST",
    "rest_port": "DEV_REST_PORT",
    "ws_port": "DEV_WS_PORT",
    "web_port": "DEV_WEB_PORT",
    "auth_port": "DEV_AUTH_PORT",
    "aws_port": "DEV_AWS_PORT",
    "events_port": "DEV_EVENTS_PORT",
    "project_id": "DEV_FIREBASE_PROJECT_ID",
    "idle_timeout": "DEV_WS_IDLE_TIMEOUT",
    "max_connection_age": "DEV_WS_MAX_CONNECTION_AGE",
    "state_file": "DEV_STATE_FILE",
    "startup_timeout": "DEV_STARTUP_TIMEOUT",
    # The app's own name: `stripe listen` prints a secret to use instead of the local one.
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "app_dir": "DEV_APP_DIR",
}


def app_environ(config: StackConfig) -> dict[str, str]:
    """`os.environ` without settings that would leak into the local app, plus the local ones."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        # A developer's real AWS profile or endpoint must never be used by the local stack.
        if not name.startswith(("AWS_", "FIREBASE_", "STRIPE_"))
        and name not in {"APP_STAGE", "WEBSOCKET_ENDPOINT", "JOBS_TOPIC_ARN", "FANOUT_QUEUE_URL"}
        and not name.endswith("_TABLE")
    }
    return {**inherited, **config.app_environment()}


def stated_environment(config: StackConfig) -> dict[str, str]:
    """The app's environment as the state file records it: the local stack's own variables and the
    sign-in settings inherited with them (`AUTH_PROVIDER=oidc OIDC_ISSUER=... make dev`), so a client
    of the stack (the smoke test) knows how its users sign in; nothing else of the shell's."""
    signing_in = {
        name: value
        for name, value in app_environ(config).items()
        if name == "AUTH_PROVIDER" or name.startswith("OIDC_")
    }
    return {**signing_in, **config.app_environment()}


def configure_logging() -> None:
    """INFO from the app and the stack, WARNING from chatty libraries (credentials found, each request)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("botocore", "boto3", "urllib3", "werkzeug", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
