"""After a deploy: does a browser get its frames? One run of the whole path, step by step.

    python -m ops.smoke --stage dev               # the stack chalice-realtime-dev (make smoke STAGE=dev)
    python -m ops.smoke --stage local             # the local stack `make dev` runs (.dev/stack.json)

It signs in, calls `GET /me` (which must answer the signed-in user), opens the WebSocket with the
token, submits `POST /jobs {"kind": "report", "params": {"seconds": 1}}`, waits for the
`jobs-updated` frame, refetches the job until it succeeded, then cleans up: closes the socket and
deletes the test user if it made one. Exit status 0 when every step passed; otherwise 1, with the
step that failed named on stderr (`smoke test FAILED at step 'open the WebSocket': ...`).

How it signs in (environment; the URLs and the project id come from the stack's outputs and its
`FirebaseProjectId` parameter):

- `SMOKE_TOKEN_COMMAND` set: with the token that shell command prints on stdout, for a user the
  operator keeps for the purpose (not deleted). The way for an `AUTH_PROVIDER=oidc` stage (Cognito,
  Auth0, Keycloak: no admin API common to all of them), whose stack has no `FirebaseProjectId`; it
  wins over the Firebase way when both are possible. The token is never printed, only its subject.
- otherwise a fresh Firebase test user `smoke-<hex>` (a custom token from the Admin SDK, exchanged
  at the Identity Toolkit endpoint, which the Auth Emulator serves too), deleted afterwards: the
  stack needs `FirebaseProjectId`, the environment `SMOKE_FIREBASE_API_KEY` (the project's Web API
  key, Project settings > General) and a Google credential allowed to mint custom tokens and delete
  users (`GOOGLE_APPLICATION_CREDENTIALS` naming a service-account key or workload identity
  federation config). The local stack needs nothing: the emulator takes unsigned tokens; a local
  stack started with `AUTH_PROVIDER=oidc` needs `SMOKE_TOKEN_COMMAND` like a deployed one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCAL_STATE_FILE = ROOT / ".dev" / "stack.json"
IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com"
JOB = {"kind": "report", "params": {"seconds": 1}}
JOBS_UPDATED = "jobs-updated"
HTTP_TIMEOUT_SECONDS = 15.0
FRAME_TIMEOUT_SECONDS = 30.0  # SNS, a cold job runner, its first progress write
JOB_TIMEOUT_SECONDS = 90.0
TOKEN_COMMAND = "SMOKE_TOKEN_COMMAND"  # noqa: S105 (a variable's name, no secret)
TOKEN_COMMAND_TIMEOUT_SECONDS = 60.0  # an issuer's CLI, a cold credential process


class SmokeFailure(Exception):
    """A step failed; the message names it and says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"smoke test FAILED at step {step!r}: {reason}")
        self.step = step


@dataclass(frozen=True)
class Target:
    """Where the stage is and how the smoke test signs in: with the token `token_command` prints, or
    as a fresh Firebase test user of `firebase_project_id`."""

    rest_url: str  # no trailing slash
    websocket_url: str
    firebase_project_id: str = ""
    api_key: str = ""  # the Firebase Web API key ("any" for the emulator)
    auth_emulator_host: str = ""  # host:port of the Firebase Auth Emulator (local stack only)
    token_command: str = ""  # SMOKE_TOKEN_COMMAND: a shell command printing a bearer token

    @property
    def identity_toolkit(self) -> str:
        if self.auth_emulator_host:
            return f"http://{self.auth_emulator_host}/identitytoolkit.googleapis.com"
        return IDENTITY_TOOLKIT


def local_target(state_file: Path, environ: Mapping[str, str]) -> Target:
    """The local stack's URLs and emulator, from the state file `python -m devserver` writes."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {state_file} ({exc}): is the local stack running (make dev)?") from exc
    if not state.get("ready"):
        raise ValueError(f"the local stack of {state_file} is not ready")
    environment = state["environment"]
    target = Target(rest_url=state["urls"]["rest"].rstrip("/"), websocket_url=state["urls"]["websocket"])
    if token_command := environ.get(TOKEN_COMMAND, "").strip():
        return replace(target, token_command=token_command)
    if environment.get("AUTH_PROVIDER") == "oidc":
        raise ValueError(
            f"the local stack of {state_file} runs with AUTH_PROVIDER=oidc: set {TOKEN_COMMAND} to a "
            f"command printing a token of its issuer ({environment.get('OIDC_ISSUER', 'OIDC_ISSUER unset')})"
        )
    return replace(
        target,
        firebase_project_id=environment["FIREBASE_PROJECT_ID"],
        api_key="any",
        auth_emulator_host=environment["FIREBASE_AUTH_EMULATOR_HOST"],
    )


def stack_target(stack_name: str, environ: Mapping[str, str], cloudformation: Any = None) -> Target:
    """A deployed stage's URLs from its stack's outputs; `SMOKE_TOKEN_COMMAND` if set, else its Firebase
    project from the stack's parameter and `SMOKE_FIREBASE_API_KEY`."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation")
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    target = Target(
        rest_url=outputs["EndpointURL"].rstrip("/"), websocket_url=outputs["WebsocketConnectEndpointURL"]
    )
    if token_command := environ.get(TOKEN_COMMAND, "").strip():
        return replace(target, token_command=token_command)
    if not parameters.get("FirebaseProjectId"):
        raise ValueError(
            f"stack {stack_name} has no FirebaseProjectId, so no Firebase test user can sign in: on an "
            f"AUTH_PROVIDER=oidc stage set {TOKEN_COMMAND} to a command printing a token of the stage's "
            "issuer; on a Firebase stage deploy with FirebaseProjectId and set SMOKE_FIREBASE_API_KEY"
        )
    api_key = environ.get("SMOKE_FIREBASE_API_KEY", "")
    if not api_key:
        raise ValueError(
            "SMOKE_FIREBASE_API_KEY is not set: the Firebase project's Web API key "
            f"(or set {TOKEN_COMMAND} to sign in with the token a command prints)"
        )
    return replace(target, firebase_project_id=parameters["FirebaseProjectId"], api_key=api_key)


def command_token(command: str, timeout: float = TOKEN_COMMAND_TIMEOUT_SECONDS) -> str:
    """The bearer token `command` prints on stdout, run by the shell as the operator would run it (their
    variables, pipes); RuntimeError on failure, naming the command's exit and its stderr, never stdout."""
    process = subprocess.Popen(  # noqa: S602 (the operator's own command, from their own environment)
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # on a timeout, the whole group is killed: the shell and what it started
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"{TOKEN_COMMAND} did not finish within {timeout:g} s") from None
    if process.returncode != 0:
        said = stderr.strip().splitlines()[-1][:200] if stderr.strip() else "nothing on stderr"
        raise RuntimeError(f"{TOKEN_COMMAND} exited with status {process.returncode} ({said})")
    token = stdout.strip()
    if not token:
        raise RuntimeError(f"{TOKEN_COMMAND} printed no token on stdout")
    return token


def token_subject(token: str) -> str:
    """The `sub` claim of a JWT, read without verifying it: the app verifies it, and `GET /me` must
    answer this subject. ValueError, never showing the token, when it is no JWT with a subject."""
    import jwt

    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError as exc:
        raise ValueError(f"{TOKEN_COMMAND} printed no JWT ({len(token)} characters; {exc})") from None
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"{TOKEN_COMMAND} printed a JWT without a subject (no 'sub' claim)")
    return subject


@dataclass
class SmokeTest:
    """The steps, run in order by `run()`; `log` hears one line per step."""

    target: Target
    log: Callable[[str], None] = print
    uid: str = field(default_factory=lambda: f"smoke-{secrets.token_hex(6)}")
    _app: Any = None
    _socket: Any = None
    _token: str = ""
    _job_id: str = ""

    def run(self) -> None:
        """Every step, then the cleanup (after a failure too); `SmokeFailure` naming the first that failed."""
        try:
            self._step("sign in", self._sign_in)
            self._step("REST GET /me", self._me)
            self._step("open the WebSocket", self._open_socket)
            self._step("submit a job (POST /jobs)", self._submit_job)
            self._step(f"hear {JOBS_UPDATED}", self._hear_jobs_updated)
            self._step("job succeeded", self._job_succeeded)
        finally:
            self._step("clean up", self._clean_up)

    def _step(self, name: str, action: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail = action()
        except SmokeFailure:
            raise
        except Exception as exc:
            raise SmokeFailure(name, f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self.log(f"ok   {name} ({time.monotonic() - started:.2f} s){': ' + detail if detail else ''}")

    # ------------------------------------------------------------ steps

    def _sign_in(self) -> str:
        if self.target.token_command:
            self._token = command_token(self.target.token_command)
            self.uid = token_subject(self._token)
            return f"user {self.uid} (the token {TOKEN_COMMAND} printed)"
        import requests
        from firebase_admin import auth

        custom = auth.create_custom_token(self.uid, app=self._firebase_app())
        response = requests.post(
            f"{self.target.identity_toolkit}/v1/accounts:signInWithCustomToken",
            params={"key": self.target.api_key},
            json={
                "token": custom.decode() if isinstance(custom, bytes) else custom,
                "returnSecureToken": True,
            },
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        self._expect(response, 200, "the Identity Toolkit")
        self._token = str(response.json()["idToken"])
        return f"user {self.uid}"

    def _me(self) -> str:
        response = self._rest("GET", "/me")
        self._expect(response, 200, "GET /me")
        if response.json() != {"user_id": self.uid}:
            raise AssertionError(f"GET /me answered {response.json()}, not this user")
        return ""

    def _open_socket(self) -> str:
        from websockets.sync.client import connect

        opening = connect(
            self.target.websocket_url,
            subprotocols=["bearer", self._token],  # type: ignore[list-item]
            open_timeout=HTTP_TIMEOUT_SECONDS,
        )
        # Entered as websockets asks (its plain-call form is deprecated); the cleanup closes it.
        self._socket = opening.__enter__()
        return ""

    def _submit_job(self) -> str:
        response = self._rest("POST", "/jobs", JOB)
        self._expect(response, 202, "POST /jobs")
        self._job_id = str(response.json()["job_id"])
        return f"job {self._job_id}"

    def _hear_jobs_updated(self) -> str:
        started = time.monotonic()
        self._next_event(JOBS_UPDATED, FRAME_TIMEOUT_SECONDS)
        return f"after {time.monotonic() - started:.2f} s"

    def _job_succeeded(self) -> str:
        # Push to refetch: each frame says "look again"; a frame may also be missed, so look on a timer too.
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while True:
            response = self._rest("GET", f"/jobs/{self._job_id}")
            self._expect(response, 200, f"GET /jobs/{self._job_id}")
            job = response.json()
            if job["status"] == "succeeded":
                return f"progress {job['progress']}, result {json.dumps(job['result'])[:80]}"
            if job["status"] in ("failed", "cancelled"):
                raise AssertionError(f"the job ended {job['status']}: {job.get('error')}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the job is still {job['status']} after {JOB_TIMEOUT_SECONDS:.0f} s")
            with contextlib.suppress(TimeoutError):
                self._next_event(JOBS_UPDATED, min(5.0, remaining))

    def _clean_up(self) -> str:
        problems, done = [], []
        if self._socket is not None:
            try:
                self._socket.close()
                done.append("socket closed")
            except Exception as exc:
                problems.append(f"closing the socket: {exc}")
        if self.target.token_command:
            done.append(f"no user deleted: {TOKEN_COMMAND}'s user is the operator's")
        elif self._app is not None:
            from firebase_admin import auth

            try:
                auth.delete_user(self.uid, app=self._app)
                done.append(f"test user {self.uid} deleted")
            except auth.UserNotFoundError:
                done.append(f"test user {self.uid} never created")
            except Exception as exc:
                problems.append(f"deleting the test user {self.uid}: {exc}")
        if problems:
            raise RuntimeError("; ".join(problems))
        return ", ".join(done)

    # ------------------------------------------------------------ helpers

    def _next_event(self, key: str, timeout: float) -> None:
        """Wait for a frame `{"event": key}` (pongs and other keys are skipped); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                raw = self._socket.recv(timeout=remaining)
            except TimeoutError:
                break
            if json.loads(raw).get("event") == key:
                return
        raise TimeoutError(f"no {key!r} frame within {timeout:.0f} s")

    def _rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        return requests.request(
            method,
            self.target.rest_url + path,
            headers={"Authorization": f"Bearer {self._token}"},
            json=body,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    @staticmethod
    def _expect(response: Any, status: int, what: str) -> None:
        if response.status_code != status:
            raise AssertionError(f"{what} answered {response.status_code}: {response.text[:200]}")

    def _firebase_app(self) -> Any:
        if self._app is None:
            import firebase_admin
            import google.auth.credentials
            from firebase_admin import credentials

            credential: credentials.Base
            if self.target.auth_emulator_host:
                # firebase-admin reads this from the environment at each call: custom tokens unsigned, user
                # calls to the emulator, no Google credential needed.
                os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = self.target.auth_emulator_host

                class _Anonymous(credentials.Base):
                    def get_credential(self) -> google.auth.credentials.Credentials:
                        return google.auth.credentials.AnonymousCredentials()

                credential = _Anonymous()
            else:
                credential = credentials.ApplicationDefault()  # GOOGLE_APPLICATION_CREDENTIALS
            options = {"projectId": self.target.firebase_project_id}
            self._app = firebase_admin.initialize_app(credential, options, name=f"smoke-{self.uid}")
        return self._app


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="local, or the deployed stage (dev, prod)")
    parser.add_argument("--stack", help="the stage's CloudFormation stack (default chalice-realtime-<stage>)")
    parser.add_argument(
        "--state-file", type=Path, default=LOCAL_STATE_FILE, help="the local stack's state file"
    )
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        try:
            if args.stage == "local":
                target = local_target(args.state_file, environ)
            else:
                target = stack_target(args.stack or f"chalice-realtime-{args.stage}", environ)
        except Exception as exc:
            raise SmokeFailure("find the stage", f"{type(exc).__name__}: {exc}") from exc
        signing_in = f"the token {TOKEN_COMMAND} prints" if target.token_command else "a Firebase test user"
        print(f"smoke test of {args.stage}: {target.rest_url}, {target.websocket_url}")
        print(f"signing in with {signing_in}")
        SmokeTest(target).run()
    except SmokeFailure as failure:
        print(str(failure), file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
