from __future__ import annotations

import pytest

from chalicelib.settings import ConfigurationError, Settings


def test_reads_every_setting_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "APP_STAGE": "prod",
            "FIREBASE_PROJECT_ID": "acme",
            "WEBSOCKET_ENDPOINT": "https://x.execute-api.eu-west-1.amazonaws.com/api/",
            "CONNECTIONS_TABLE": "c",
            "MAX_CONNECTIONS_PER_USER": "3",
            "FIREBASE_CHECK_REVOKED": "true",
        }
    )
    assert settings.realtime.stage == "prod"
    assert settings.realtime.firebase_project_id == "acme"
    assert settings.realtime.websocket_endpoint == "https://x.execute-api.eu-west-1.amazonaws.com/api"
    assert settings.realtime.connections_table == "c"
    assert settings.realtime.max_connections_per_user == 3
    assert settings.realtime.check_revoked_tokens is True


def test_defaults_cap_to_ten_connections() -> None:
    assert Settings.from_env({}).realtime.max_connections_per_user == 10


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_auth_emulator_is_refused_outside_local(stage: str) -> None:
    with pytest.raises(ConfigurationError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        Settings.from_env({"APP_STAGE": stage, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})


def test_auth_emulator_is_allowed_locally() -> None:
    settings = Settings.from_env({"APP_STAGE": "local", "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})
    assert settings.realtime.is_local


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
        Settings.from_env(env)


def test_the_local_stage_is_refused_on_aws_lambda() -> None:
    # The Lambda runtime sets AWS_LAMBDA_FUNCTION_NAME; a function deployed with APP_STAGE=local would let
    # the emulator variable through the stage check.
    with pytest.raises(ConfigurationError, match="APP_STAGE is 'local' on AWS Lambda"):
        Settings.from_env(
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
        Settings.from_env({"APP_STAGE": "dev", "WEBSOCKET_ENDPOINT": endpoint})


@pytest.mark.parametrize(
    "endpoint", ["https://abc123.execute-api.eu-west-1.amazonaws.com/api/", "http://127.0.0.1:8001"]
)
def test_https_or_this_machine_is_a_websocket_endpoint(endpoint: str) -> None:
    settings = Settings.from_env({"WEBSOCKET_ENDPOINT": endpoint})
    assert settings.realtime.websocket_endpoint == endpoint.rstrip("/")


def test_the_local_stack_may_serve_its_gateway_on_another_address() -> None:
    # `python -m devserver --host 0.0.0.0 --allow-remote`: the local stage only, never dev or prod.
    env = {"APP_STAGE": "local", "WEBSOCKET_ENDPOINT": "http://0.0.0.0:8001"}
    assert Settings.from_env(env).realtime.websocket_endpoint == "http://0.0.0.0:8001"
    with pytest.raises(ConfigurationError, match="WEBSOCKET_ENDPOINT"):
        Settings.from_env({**env, "APP_STAGE": "dev"})


def test_app_refuses_to_start_on_a_non_local_stage_with_the_emulator_set() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "APP_STAGE": "prod", "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
    result = subprocess.run(
        [sys.executable, "-c", "import app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "FIREBASE_AUTH_EMULATOR_HOST is set on stage 'prod'" in result.stderr


def test_the_stripe_secret_is_never_printed_with_the_settings() -> None:
    settings = Settings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_do_not_print"})
    assert settings.stripe_webhook_secret == "whsec_do_not_print"
    assert "whsec_do_not_print" not in repr(settings)
