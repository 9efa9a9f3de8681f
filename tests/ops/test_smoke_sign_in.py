"""How the post-deploy smoke test (`ops/smoke.py`) signs in, without a stack: which way it picks from
the stack and the environment, the errors when neither is possible, and the token command's failures,
none of which ever shows the token. Its steps over real sockets: tests/integration/test_smoke.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from ops.smoke import TOKEN_COMMAND, Target, command_token, local_target, main, stack_target, token_subject

REST = "https://abc.execute-api.us-east-1.amazonaws.com/api"
WS = "wss://def.execute-api.us-east-1.amazonaws.com/api"
URLS = {"rest_url": REST, "websocket_url": WS}
FIREBASE = {"SMOKE_FIREBASE_API_KEY": "web-api-key"}
COMMAND = {TOKEN_COMMAND: "aws cognito-idp admin-initiate-auth --query AuthenticationResult.IdToken"}


class CloudFormation:
    """describe_stacks of one stack: its URL outputs and the FirebaseProjectId parameter."""

    def __init__(self, firebase_project_id: str) -> None:
        self.firebase_project_id = firebase_project_id

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        outputs = {"EndpointURL": REST + "/", "WebsocketConnectEndpointURL": WS}
        return {
            "Stacks": [
                {
                    "StackName": StackName,
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
                    "Parameters": [
                        {"ParameterKey": "FirebaseProjectId", "ParameterValue": self.firebase_project_id}
                    ],
                }
            ]
        }


def target(firebase_project_id: str, environ: dict[str, str]) -> Target:
    return stack_target("chalice-realtime-dev", environ, CloudFormation(firebase_project_id))


@pytest.mark.parametrize(
    ("firebase_project_id", "environ", "expected"),
    [
        ("my-project", FIREBASE, Target(**URLS, firebase_project_id="my-project", api_key="web-api-key")),
        ("", COMMAND, Target(**URLS, token_command=COMMAND[TOKEN_COMMAND])),
        # The command is explicit: it wins on a stage where a Firebase test user could sign in too.
        ("my-project", {**FIREBASE, **COMMAND}, Target(**URLS, token_command=COMMAND[TOKEN_COMMAND])),
        (
            "my-project",
            {**FIREBASE, TOKEN_COMMAND: "  "},
            Target(**URLS, firebase_project_id="my-project", api_key="web-api-key"),
        ),
    ],
    ids=["firebase", "oidc stage, token command", "both: the command wins", "blank command is unset"],
)
def test_the_stack_and_the_environment_choose_how_the_smoke_test_signs_in(
    firebase_project_id: str, environ: dict[str, str], expected: Target
) -> None:
    assert target(firebase_project_id, environ) == expected


@pytest.mark.parametrize(
    ("firebase_project_id", "environ", "named"),
    [
        ("", {}, ["no FirebaseProjectId", "AUTH_PROVIDER=oidc", TOKEN_COMMAND, "SMOKE_FIREBASE_API_KEY"]),
        ("", FIREBASE, ["no FirebaseProjectId", TOKEN_COMMAND]),
        ("my-project", {}, ["SMOKE_FIREBASE_API_KEY is not set", TOKEN_COMMAND]),
    ],
    ids=["oidc stage without a command", "api key but no project", "firebase stage without an api key"],
)
def test_a_stage_no_way_can_sign_in_to_is_an_error_naming_both_ways(
    firebase_project_id: str, environ: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(ValueError) as refused:
        target(firebase_project_id, environ)
    for words in named:
        assert words in str(refused.value)


def state_file(tmp_path: Path, **auth: str) -> Path:
    path = tmp_path / "stack.json"
    environment = {
        "FIREBASE_PROJECT_ID": "demo-local",
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
        **auth,
    }
    state = {"ready": True, "urls": {"rest": "http://127.0.0.1:8000/", "websocket": "ws://127.0.0.1:8001"}}
    path.write_text(json.dumps({**state, "environment": environment}))
    return path


def test_the_local_stack_signs_in_with_the_emulator_unless_it_runs_oidc(tmp_path: Path) -> None:
    firebase = local_target(state_file(tmp_path), {})
    assert (firebase.auth_emulator_host, firebase.token_command) == ("127.0.0.1:9099", "")
    oidc = state_file(tmp_path, AUTH_PROVIDER="oidc", OIDC_ISSUER="http://127.0.0.1:9/pool")
    assert local_target(oidc, {TOKEN_COMMAND: "cat token"}) == Target(
        "http://127.0.0.1:8000", "ws://127.0.0.1:8001", token_command="cat token"
    )
    with pytest.raises(
        ValueError,
        match=f"runs with AUTH_PROVIDER=oidc: set {TOKEN_COMMAND} .* \\(http://127.0.0.1:9/pool\\)",
    ):
        local_target(oidc, {})


def test_an_oidc_local_stack_without_a_command_fails_finding_the_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = state_file(tmp_path, AUTH_PROVIDER="oidc")
    assert main(["--stage", "local", "--state-file", str(path)], environ={}) == 1
    assert f"smoke test FAILED at step 'find the stage': ValueError: the local stack of {path} runs with" in (
        capsys.readouterr().err
    )


def test_the_token_command_runs_in_the_shell_and_its_stdout_is_the_token() -> None:
    assert command_token("printf '%s\\n' \"$(echo header.payload.signature)\"") == "header.payload.signature"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("false", f"{TOKEN_COMMAND} exited with status 1 (nothing on stderr)"),
        (
            "echo secret.token.value; echo 'NotAuthorizedException: wrong password' >&2; exit 3",
            f"{TOKEN_COMMAND} exited with status 3 (NotAuthorizedException: wrong password)",
        ),
        ("printf '  \\n'", f"{TOKEN_COMMAND} printed no token on stdout"),
    ],
    ids=["fails", "fails with a reason", "prints nothing"],
)
def test_a_failing_token_command_is_named_with_its_reason_never_its_output(command: str, reason: str) -> None:
    with pytest.raises(RuntimeError) as failed:
        command_token(command)
    assert str(failed.value) == reason


def test_a_token_command_that_hangs_is_killed_with_what_it_started() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"{TOKEN_COMMAND} did not finish within 0.5 s"):
        command_token("sleep 30 & sleep 30", timeout=0.5)  # the background sleep holds stdout too
    assert time.monotonic() - started < 5


def test_the_subject_is_read_from_the_token_and_a_non_jwt_is_refused_without_showing_it() -> None:
    assert token_subject(jwt.encode({"sub": "smoke-user"}, "k" * 32, algorithm="HS256")) == "smoke-user"
    with pytest.raises(ValueError, match="printed a JWT without a subject"):
        token_subject(jwt.encode({"aud": "x"}, "k" * 32, algorithm="HS256"))
    with pytest.raises(ValueError) as refused:
        token_subject('{"IdToken": "not-a-secret-token"}')
    assert "printed no JWT" in str(refused.value) and "not-a-secret-token" not in str(refused.value)
