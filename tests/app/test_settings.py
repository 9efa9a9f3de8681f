"""The app's settings compose the core's (tested with the core, realtime/tests/test_settings.py) with its
own; an app that cannot run on its stage refuses to start."""

from __future__ import annotations

from chalicelib.settings import Settings


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
