"""The post-deploy smoke test (`python -m ops.smoke`, `make smoke`) run against the local stack, as an
operator runs it against a deployed stage: the same code path on every change.

It passes on a working stack (every step, the test user deleted afterwards), and with the WebSocket
gateway down it exits non-zero naming the step that failed. On a stack started with
`AUTH_PROVIDER=oidc` it signs in with the token `SMOKE_TOKEN_COMMAND` prints (a local issuer's) and
passes every step; a command that fails ends it at the sign-in step. Without a stack:
tests/ops/test_smoke_sign_in.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from chalice_realtime.testing.oidc import LocalIssuer, OidcTokens

from testsupport.localstack import PROJECT_ROOT, LocalStack

pytestmark = pytest.mark.integration

STEPS = (
    "sign in",
    "REST GET /me",
    "open the WebSocket",
    "submit a job (POST /jobs)",
    "hear jobs-updated",
    "job succeeded",
    "clean up",
)


def smoke(stack: LocalStack, token_command: str = "") -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SMOKE_")}
    return subprocess.run(
        [sys.executable, "-m", "ops.smoke", "--stage", "local", "--state-file", str(stack.state_file)],
        cwd=PROJECT_ROOT,
        env={**env, "SMOKE_TOKEN_COMMAND": token_command} if token_command else env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def emulator_has_user(stack: LocalStack, uid: str) -> bool:
    response = requests.post(
        f"http://{stack.auth_emulator_host}/identitytoolkit.googleapis.com/v1/projects/{stack.project_id}"
        "/accounts:lookup",
        json={"localId": [uid]},
        headers={"Authorization": "Bearer owner"},
        timeout=10,
    )
    response.raise_for_status()
    return bool(response.json().get("users"))


def test_the_smoke_test_passes_every_step_on_a_working_stack_and_leaves_no_user(
    local_stack: LocalStack,
) -> None:
    result = smoke(local_stack)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in STEPS:
        assert f"ok   {step} (" in result.stdout, step
    assert "smoke test passed" in result.stdout
    uid = result.stdout.split("ok   sign in (", 1)[1].split("user ", 1)[1].split()[0]
    assert uid.startswith("smoke-") and not emulator_has_user(local_stack, uid)


def test_with_the_websocket_gateway_down_the_smoke_test_fails_naming_that_step(
    local_stack: LocalStack,
) -> None:
    local_stack.stop_gateway()
    try:
        result = smoke(local_stack)
    finally:
        local_stack.start_gateway()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "smoke test FAILED at step 'open the WebSocket'" in result.stderr
    assert "ok   REST GET /me" in result.stdout  # the steps before it passed
    assert "ok   clean up" in result.stdout  # and the test user is gone all the same


def test_without_a_local_stack_the_smoke_test_fails_finding_the_stage(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.smoke", "--stage", "local", "--state-file", f"{tmp_path}/none.json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "smoke test FAILED at step 'find the stage'" in result.stderr


def test_on_an_oidc_stack_the_smoke_test_signs_in_with_the_token_command_and_passes_every_step(
    oidc_stack: LocalStack, oidc_issuer: LocalIssuer, tmp_path: Path
) -> None:
    # The state file tells the smoke test how the stack's users sign in.
    assert oidc_stack.environment["AUTH_PROVIDER"] == "oidc"
    token = OidcTokens(oidc_issuer.issuer, oidc_issuer.keys[0]).id_token("smoke-operator-user")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    result = smoke(oidc_stack, token_command=f"cat {shlex.quote(str(token_file))}")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in STEPS:
        assert f"ok   {step} (" in result.stdout, step
    assert "signing in with the token SMOKE_TOKEN_COMMAND prints" in result.stdout
    assert (
        "user smoke-operator-user (the token SMOKE_TOKEN_COMMAND printed)" in result.stdout
    )  # GET /me agreed
    assert "socket closed, no user deleted: SMOKE_TOKEN_COMMAND's user is the operator's" in result.stdout
    assert token not in result.stdout + result.stderr
    assert token.split(".")[2] not in result.stdout + result.stderr  # not even its signature


def test_on_an_oidc_stack_a_failing_token_command_fails_the_sign_in_step(oidc_stack: LocalStack) -> None:
    result = smoke(oidc_stack, token_command="false")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "smoke test FAILED at step 'sign in': RuntimeError: SMOKE_TOKEN_COMMAND exited with status 1"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "ok   clean up" in result.stdout and "ok   REST GET /me" not in result.stdout
