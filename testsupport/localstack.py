"""The local stack (`python -m devserver`) on free ports, for tests over real sockets.

    with LocalStack() as stack:
        uid, token = stack.sign_up()
        requests.get(stack.rest_url + "/me", headers={"Authorization": f"Bearer {token}"})

It runs the same command as `make dev`, as a subprocess with port options, and
waits until the supervisor reports every part ready. Its output goes to a log
file (`stack.log_text()`), shown when it fails to start.

Fixtures call `require_local_stack_tools()` first: without Node or firebase-tools
the test is skipped with how to install them, or fails when `CI=true`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIREBASE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "firebase"
PORT_NAMES = ("rest", "ws", "web", "auth", "aws", "events")


def missing_tools() -> str:
    """Why the local stack cannot run here ('' when it can)."""
    if shutil.which("node") is None:
        return "Node.js 20+ is not installed (the Firebase Auth Emulator runs on it): install Node 20+"
    if not FIREBASE_BIN.exists():
        return "firebase-tools is not installed: run `npm ci` (or `make install`) in the project root"
    return ""


def require_local_stack_tools() -> None:
    """Skip the calling test when the stack's tools are missing; fail instead when `CI=true`."""
    import pytest

    reason = missing_tools()
    if not reason:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the local stack cannot start: {reason}")
    pytest.skip(f"the local stack cannot start: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _die_with_parent() -> None:
    # If the test process is killed, the stack stops itself (SIGTERM) instead of lingering.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class LocalStack:
    """`python -m devserver` on free ports, started and stopped by the test.

    `idle_timeout` / `max_connection_age` (seconds) shorten the gateway's AWS limits; `app_dir`
    serves another Chalice app than this project's (`python -m devserver --app-dir`).
    """

    def __init__(
        self,
        *,
        idle_timeout: float | None = None,
        max_connection_age: float | None = None,
        startup_timeout: float = 150.0,
        extra_env: dict[str, str] | None = None,
        app_dir: Path | None = None,
    ) -> None:
        self.ports = {name: free_port() for name in PORT_NAMES}
        self._dir = Path(tempfile.mkdtemp(prefix="localstack-"))
        self.state_file = self._dir / "stack.json"
        self.log_file = self._dir / "stack.log"
        self._startup_timeout = startup_timeout
        self._extra_env = extra_env or {}
        self._args = [
            *(f"--{name}-port={port}" for name, port in self.ports.items()),
            f"--state-file={self.state_file}",
            f"--startup-timeout={startup_timeout}",
        ]
        if idle_timeout is not None:
            self._args.append(f"--idle-timeout={idle_timeout}")
        if max_connection_age is not None:
            self._args.append(f"--max-connection-age={max_connection_age}")
        if app_dir is not None:
            self._args.append(f"--app-dir={app_dir}")
        self.process: subprocess.Popen[bytes] | None = None
        self.project_id = "demo-realtime"

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self, wait: bool = True) -> None:
        """Start the stack and return once every part answers (RuntimeError with its log otherwise).

        `wait=False` returns as soon as the supervisor is launched (to test an early Ctrl-C).
        """
        # The stack's own settings only: not the test process's DEV_* ports or its Stripe test secret.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("DEV_") and name != "STRIPE_WEBHOOK_SECRET"
        }
        env.update(self._extra_env)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devserver", *self._args],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        if not wait:
            return
        deadline = time.monotonic() + self._startup_timeout + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the local stack exited with {self.process.returncode}:\n{self.log_text()}"
                )
            state = self.state()
            if state.get("ready") and state.get("pid") == self.process.pid:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the local stack was not ready in time:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        """Stop the stack as Ctrl-C does (or with `sig`); returns the supervisor's exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return self.process.returncode

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def state(self) -> dict[str, Any]:
        """The supervisor's state file: urls, each part's pid, the app's environment."""
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def service_pids(self) -> dict[str, int]:
        return {name: info["pid"] for name, info in self.state().get("services", {}).items() if info["pid"]}

    # ------------------------------------------------------------ where things are

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['rest']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['ws']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ws']}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    @property
    def auth_emulator_host(self) -> str:
        return f"127.0.0.1:{self.ports['auth']}"

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['aws']}"

    @property
    def environment(self) -> dict[str, str]:
        """The environment the stack gives the app (table names, topic ARN, ...)."""
        return dict(self.state().get("environment", {}))

    @property
    def stripe_webhook_secret(self) -> str:
        """The secret the app checks Stripe signatures with (sign test events with it)."""
        return self.environment["STRIPE_WEBHOOK_SECRET"]

    def aws_client(self, service: str) -> Any:
        """A boto3 client for `service` in the stack's moto server (e.g. to read the connections table)."""
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def management_client(self, **config: Any) -> Any:
        """boto3's `apigatewaymanagementapi` client on the local gateway, as the app's notifier builds it."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "apigatewaymanagementapi",
            endpoint_url=self.management_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(**config) if config else None,
        )

    # ------------------------------------------------------------ users

    def sign_up(self, email: str | None = None, password: str = "correct-horse-9") -> tuple[str, str]:  # noqa: S107
        """A new user in the Auth Emulator: (uid, ID token), through Firebase's REST API."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        return self._identity("accounts:signUp", email, password)

    def sign_in(self, email: str, password: str) -> tuple[str, str]:
        """A fresh ID token for an existing user: (uid, ID token)."""
        return self._identity("accounts:signInWithPassword", email, password)

    def _identity(self, operation: str, email: str, password: str) -> tuple[str, str]:
        response = requests.post(
            f"http://{self.auth_emulator_host}/identitytoolkit.googleapis.com/v1/{operation}?key=any",
            json={"email": email, "password": password, "returnSecureToken": True},
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        return str(body["localId"]), str(body["idToken"])

    # ------------------------------------------------------------ faults

    def restart_gateway(self, timeout: float = 30.0) -> int:
        """Kill the WebSocket gateway (kill -9, like a crash) and wait for its restart; the new pid."""
        old = self.service_pids()["gateway"]
        os.kill(old, signal.SIGKILL)
        return self._wait_gateway(lambda pid: pid is not None and pid != old, timeout)

    def stop_gateway(self, timeout: float = 30.0) -> None:
        """Kill the gateway (kill -9) and keep it down until `start_gateway()`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)
        self._wait_gateway(lambda pid: pid is None, timeout)

    def start_gateway(self, timeout: float = 30.0) -> int:
        """Start the gateway stopped by `stop_gateway()`; the new pid."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)
        return self._wait_gateway(lambda pid: pid is not None, timeout)

    def _wait_gateway(self, wanted: Any, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid: int | None = requests.get(self.management_url + "/_health", timeout=1).json()["pid"]
            except (requests.RequestException, ValueError, KeyError):
                pid = None
            if wanted(pid):
                return pid or 0
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not reach the wanted state in {timeout} s:\n{self.log_text()}")
