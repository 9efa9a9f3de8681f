"""Fixtures shared by every test layer: environment, signing keys, moto, the app."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

TEST_ENV = {
    "APP_STAGE": "dev",
    "FIREBASE_PROJECT_ID": "test-project",
    "WEBSOCKET_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/api",
    "CONNECTIONS_TABLE": "test-connections",
    "JOBS_TABLE": "test-jobs",
    "MESSAGES_TABLE": "test-messages",
    "PAYMENTS_TABLE": "test-payments",
    "RATE_LIMITS_TABLE": "test-rate-limits",
    "TOPICS_TABLE": "test-topics",
    "ROOMS_TABLE": "test-rooms",
    "TOPIC_AUTHORIZER": "chalicelib.services:may_subscribe",
    "JOBS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:test-jobs",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
    "MAX_CONNECTIONS_PER_USER": "10",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# The `settings` fixture's limits: out of the way of the feature tests (tests/limits/test_limits.py sets its
# own). Not in the process environment, so the local stack the tests start keeps the shipped defaults.
FEATURE_TEST_LIMITS = {
    "MAX_ACTIVE_JOBS_PER_USER": "100",
    "MAX_ACTIVE_JOBS": "1000",
    "JOBS_RATE_LIMIT": "1000/60",
    "MESSAGES_RATE_LIMIT": "1000/60",
    "ROOMS_RATE_LIMIT": "1000/60",
    "ROOM_MESSAGES_RATE_LIMIT": "1000/60",
    "SUBSCRIBE_RATE_LIMIT": "1000/60",
}
# Set before any test module imports `app`: its import reads the settings.
for _name in ("FIREBASE_AUTH_EMULATOR_HOST", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_name, None)
os.environ.update(TEST_ENV)

from chalice_realtime import Realtime  # noqa: E402
from chalice_realtime.testing.firebase import SigningKey, TokenFactory  # noqa: E402
from chalice_realtime.testing.management_api import serving_moto  # noqa: E402

from chalicelib import services as services_module  # noqa: E402
from chalicelib.settings import Settings  # noqa: E402

# The kit's lower-level fixtures: `signing_key`, `attacker_key`, `firebase_certs`, the OIDC issuer
# (`issuer_key`, `oidc_attacker_key`, `local_issuer`, `oidc_tokens`) and `management_api_url`, moto's
# server, where the app's shipped transport (SigV4-signed) posts frames over a real socket.
pytest_plugins = ["chalice_realtime.testing.fixtures"]


@pytest.fixture(scope="session")
def tokens(signing_key: SigningKey) -> TokenFactory:
    return TokenFactory(TEST_ENV["FIREBASE_PROJECT_ID"], signing_key)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({**TEST_ENV, **FEATURE_TEST_LIMITS})


@pytest.fixture
def aws(settings: Settings) -> Iterator[dict[str, Any]]:
    """moto in-process, with the app's tables and topic created from infra/resources.json."""
    import boto3
    from moto import mock_aws

    from infra.tables import create_tables

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        create_tables(dynamodb, {k: v for k, v in TEST_ENV.items() if k.endswith("_TABLE")})
        sns.create_topic(Name="test-jobs")
        yield {"dynamodb": dynamodb, "sns": sns}


@pytest.fixture
def ssm(aws: dict[str, Any]) -> Any:
    """moto's SSM, in the same in-process account as `aws`."""
    import boto3

    return boto3.client("ssm", region_name="us-east-1")


def services_for(settings: Settings, management_api_url: str, **clients: Any) -> Any:
    """The app's services on `settings`, posting frames with the shipped transport (`REALTIME_TRANSPORT`'s
    default) to the Management API at `management_api_url`; `clients` as `Services` takes them."""
    realtime_settings = dataclasses.replace(settings.realtime, websocket_endpoint=management_api_url)
    core = Realtime(realtime_settings, dynamodb=clients.get("dynamodb"))
    return services_module.Services(settings, realtime=core, **clients)


@pytest.fixture
def services(
    settings: Settings, aws: dict[str, Any], firebase_certs: Any, management_api_url: str
) -> Iterator[Any]:
    """The app's services against moto, installed for the handlers in `app.py` and the core's blueprint."""
    with installed_services(settings, management_api_url, aws) as built:
        yield built


@contextlib.contextmanager
def installed_services(settings: Settings, management_api_url: str, aws: dict[str, Any]) -> Iterator[Any]:
    """`services_for(settings, ...)` against moto's clients (`aws`), installed for the handlers in
    `app.py` and the core's blueprint until the block ends."""
    built = services_for(settings, management_api_url, dynamodb=aws["dynamodb"], sns=aws["sns"])
    services_module.use(built)
    try:
        yield built
    finally:
        services_module.use(None)
        built.realtime.close()


@pytest.fixture
def management_api(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's Management API: `.connections[cid].data` is what was posted; `.faults` (a
    `chalice_realtime.testing.faults.FaultPlan`) and `.gone` (ids answering 410) inject what AWS would
    answer."""
    from chalice_realtime.testing.management_api import faulty_backend

    return faulty_backend(monkeypatch)


@pytest.fixture
def client(services: Any) -> Iterator[Any]:
    """chalice's test client over `app`, with the `services` fixture installed."""
    from chalice.test import Client

    from app import app

    with Client(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Any]:
    """`python -m devserver` on free ports, once per test session (integration and browser tests share it).

    Skipped without Node/firebase-tools outside CI; a failure under `CI=true`.
    """
    from testsupport.localstack import LocalStack, require_local_stack_tools

    require_local_stack_tools()
    with LocalStack() as stack:
        yield stack


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server on a free loopback port; boto3 finds it through `AWS_ENDPOINT_URL`."""
    from testsupport.aws_clients import clear_clients

    with serving_moto() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        clear_clients()  # clients built before the variable was set point elsewhere
        yield url
    clear_clients()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def recorded(
    settings: Settings, aws: dict[str, Any], firebase_certs: Any, realtime_frames: Any
) -> Iterator[Any]:
    """The app's services notifying through the core the testing kit installs (`realtime_frames` of
    `chalice_realtime.testing`): frames are recorded instead of posted, and a test reads what each user
    heard as an adopting app's tests do. Serve the app with `chalice.test.Client(app)`."""
    built = services_module.Services(
        settings, realtime=realtime_frames.realtime, dynamodb=aws["dynamodb"], sns=aws["sns"]
    )
    services_module.use(built)
    yield realtime_frames
    services_module.use(None)
