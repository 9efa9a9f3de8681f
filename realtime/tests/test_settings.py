"""The core's settings, read from the environment: every value checked, unsafe combinations refused."""

from __future__ import annotations

import pytest
from chalice_realtime import ConfigurationError, RealtimeSettings


def test_reads_every_setting_from_the_environment() -> None:
    settings = RealtimeSettings.from_env(
        {
            "APP_STAGE": "prod",
            "FIREBASE_PROJECT_ID": "acme",
            "WEBSOCKET_ENDPOINT": "https://x.execute-api.eu-west-1.amazonaws.com/api/",
            "CONNECTIONS_TABLE": "c",
            "MAX_CONNECTIONS_PER_USER": "3",
            "FIREBASE_CHECK_REVOKED": "true",
        }
    )
    assert settings.stage == "prod"
    assert settings.firebase_project_id == "acme"
    assert settings.websocket_endpoint == "https://x.execute-api.eu-west-1.amazonaws.com/api"
    assert settings.connections_table == "c"
    assert settings.max_connections_per_user == 3
    assert settings.check_revoked_tokens is True


def test_defaults_cap_to_ten_connections() -> None:
    assert RealtimeSettings.from_env({}).max_connections_per_user == 10


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_auth_emulator_is_refused_outside_local(stage: str) -> None:
    with pytest.raises(ConfigurationError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        RealtimeSettings.from_env({"APP_STAGE": stage, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})


def test_auth_emulator_is_allowed_locally() -> None:
    settings = RealtimeSettings.from_env(
        {"APP_STAGE": "local", "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
    )
    assert settings.is_local


@pytest.mark.parametrize(
    "env, message",
    [
        ({"APP_STAGE": "staging"}, "APP_STAGE"),
        ({"MAX_CONNECTIONS_PER_USER": "0"}, "MAX_CONNECTIONS_PER_USER"),
        ({"MAX_CONNECTIONS_PER_USER": "ten"}, "MAX_CONNECTIONS_PER_USER"),
        ({"FIREBASE_CHECK_REVOKED": "maybe"}, "FIREBASE_CHECK_REVOKED"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RealtimeSettings.from_env(env)


def test_the_local_stage_is_refused_on_aws_lambda() -> None:
    # The Lambda runtime sets AWS_LAMBDA_FUNCTION_NAME; a function deployed with APP_STAGE=local would let
    # the emulator variable through the stage check.
    with pytest.raises(ConfigurationError, match="APP_STAGE is 'local' on AWS Lambda"):
        RealtimeSettings.from_env(
            {"APP_STAGE": "local", "AWS_LAMBDA_FUNCTION_NAME": "chalice-realtime-dev-APIHandler"}
        )


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://abc123.execute-api.eu-west-1.amazonaws.com/api",
        "http://10.0.0.5:8001",
        "ftp://x/api",
        "abc/api",
    ],
)
def test_a_websocket_endpoint_that_would_send_signed_calls_in_clear_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="WEBSOCKET_ENDPOINT"):
        RealtimeSettings.from_env({"APP_STAGE": "dev", "WEBSOCKET_ENDPOINT": endpoint})


@pytest.mark.parametrize(
    "endpoint", ["https://abc123.execute-api.eu-west-1.amazonaws.com/api/", "http://127.0.0.1:8001"]
)
def test_https_or_this_machine_is_a_websocket_endpoint(endpoint: str) -> None:
    assert RealtimeSettings.from_env({"WEBSOCKET_ENDPOINT": endpoint}).websocket_endpoint == endpoint.rstrip(
        "/"
    )


def test_the_local_stack_may_serve_its_gateway_on_another_address() -> None:
    # `python -m devserver --host 0.0.0.0 --allow-remote`: the local stage only, never dev or prod.
    env = {"APP_STAGE": "local", "WEBSOCKET_ENDPOINT": "http://0.0.0.0:8001"}
    assert RealtimeSettings.from_env(env).websocket_endpoint == "http://0.0.0.0:8001"
    with pytest.raises(ConfigurationError, match="WEBSOCKET_ENDPOINT"):
        RealtimeSettings.from_env({**env, "APP_STAGE": "dev"})
