"""`python -m devserver`: start every part of the local stack, wait until each answers, stop all on Ctrl-C.

Each part runs in its own process group, so stopping the stack stops every
process it started (the Auth Emulator's too) and frees every port. A part that
runs the app's code (REST, gateway, events, web) is restarted when it dies
unexpectedly; moto and the Auth Emulator hold the stack's state, so their death
stops the stack.

Signals: SIGINT / SIGTERM stop the stack. SIGUSR1 kills the WebSocket gateway
(kill -9, like a crash) and keeps it down; SIGUSR2 starts it again. The current
process ids and URLs are in the state file (`.dev/stack.json` by default).
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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devserver.config import PROJECT_ROOT, StackConfig, app_environ, stated_environment

RESTARTABLE = ("rest", "gateway", "events", "web")
STOP_GRACE_SECONDS = 5.0
FIREBASE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "firebase"


class StackError(RuntimeError):
    """The stack could not start (a port in use, a missing tool, a part that died)."""


@dataclass
class Service:
    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str]
    cwd: Path
    ready_statuses: range = range(200, 300)  # the answers of `ready_url` that mean it is up
    process: subprocess.Popen[bytes] | None = None
    held: bool = False  # stopped on purpose; not restarted until released
    restarts: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def answers(url: str, timeout: float = 1.0, statuses: range = range(200, 300)) -> bool:
    """True when `url` answers with one of `statuses` (2xx by default)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local http URLs)
            return int(response.status) in statuses
    except urllib.error.HTTPError as error:
        return error.code in statuses
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies without cleaning up (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Runs the local stack described by `config`.

    supervisor = Supervisor(StackConfig())
    supervisor.run()  # blocks until SIGINT/SIGTERM, then stops everything
    """

    def __init__(self, config: StackConfig, out: IO[str] | None = None) -> None:
        self.config = config
        self._out = out or sys.stdout
        self._out_lock = threading.Lock()
        self._runtime = Path(tempfile.mkdtemp(prefix="devserver-"))
        self._services: dict[str, Service] = {}
        self._stop = threading.Event()
        self._gateway_hold: bool | None = None  # set by SIGUSR1 (True) / SIGUSR2 (False)
        self._ready = False

    # ------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Start, serve until asked to stop, stop. The exit status: 0 on a clean stop."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, lambda *_: self._set_gateway_hold(True))
        signal.signal(signal.SIGUSR2, lambda *_: self._set_gateway_hold(False))
        try:
            self.start()
            self._print_ready()
            return self._watch()
        except StackError as exc:
            self.log("devserver", f"error: {exc}")
            return 1
        finally:
            self.stop()

    def start(self) -> None:
        """Start every part and return when all of them answer (StackError otherwise)."""
        started = time.monotonic()
        self._check_ports()
        self._services = self._plan()
        for service in self._services.values():
            self._spawn(service)
        deadline = started + self.config.startup_timeout
        self._wait_ready(["aws"], deadline)
        from devserver.provision import create_tables_and_topic, subscribe_event_receiver

        create_tables_and_topic(self.config)
        self._wait_ready(["events"], deadline)
        topics = self._events_topics()
        subscribe_event_receiver(self.config, topics)
        self._wait_ready(list(self._services), deadline)
        self._ready = True
        self._write_state(ready=True)
        self.log("devserver", f"ready in {time.monotonic() - started:.1f} s; SNS topics {topics}")

    def stop(self) -> None:
        """Stop every process group, politely first, and remove the runtime files."""
        running = [s for s in self._services.values() if s.running()]
        for service in running:
            self._signal_group(service, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for service in running:
            assert service.process is not None
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log("devserver", f"{service.name} did not stop in time; killing it")
            # Also reaps any grandchild left in the group (the Auth Emulator's helpers).
            self._signal_group(service, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=2)
        with contextlib.suppress(FileNotFoundError):
            state = json.loads(Path(self.config.state_file).read_text())
            if state.get("pid") == os.getpid():
                Path(self.config.state_file).unlink()
        shutil.rmtree(self._runtime, ignore_errors=True)

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            hold = self._gateway_hold
            if hold is not None:
                self._gateway_hold = None
                self._hold_gateway(hold)
            for service in self._services.values():
                if service.running() or service.held:
                    continue
                code = service.process.returncode if service.process is not None else None
                if service.name not in RESTARTABLE:
                    self.log("devserver", f"{service.name} exited ({code}); stopping the stack")
                    return 1
                self._restart(service, code)
        self.log("devserver", "stopping")
        return 0

    def _restart(self, service: Service, code: int | None) -> None:
        now = time.monotonic()
        service.restarts = [t for t in service.restarts if now - t < 30] + [now]
        if len(service.restarts) > 5:
            # Probably a mistake in the code (e.g. a syntax error): wait for a fix instead of spinning.
            self.log("devserver", f"{service.name} keeps exiting ({code}); retrying in 5 s")
            self._stop.wait(5)
            service.restarts.clear()
        else:
            self.log("devserver", f"{service.name} exited ({code}); restarting it")
        self._signal_group(service, signal.SIGKILL)
        self._spawn(service)
        self._write_state(ready=True)

    def _hold_gateway(self, hold: bool) -> None:
        gateway = self._services["gateway"]
        if hold and not gateway.held:
            gateway.held = True
            self._signal_group(gateway, signal.SIGKILL)
            if gateway.process is not None:
                gateway.process.wait()
            self.log("devserver", "gateway killed (SIGUSR1); SIGUSR2 starts it again")
        elif not hold and gateway.held:
            gateway.held = False
            self._spawn(gateway)
            self.log("devserver", "gateway started again (SIGUSR2)")
        self._write_state(ready=True)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if not self._ready:
            # Still starting: leave the wait loops at once (`run` then stops what was started).
            raise KeyboardInterrupt

    def _set_gateway_hold(self, hold: bool) -> None:
        self._gateway_hold = hold

    # ------------------------------------------------------------ parts

    def _plan(self) -> dict[str, Service]:
        c = self.config
        py = [sys.executable, "-m"]
        app_env = {**app_environ(c), "PYTHONUNBUFFERED": "1"}
        host = ["--host", c.host]
        app = ["--app-dir", c.app_dir]  # the parts that run the app's handlers
        page = ["--page-origin", c.web_url]  # the one page allowed to call local-only endpoints
        web_args = ["--config", json.dumps(c.web_config())]  # the Stripe secret goes in its environment
        gateway_args = [
            "--idle-timeout",
            str(c.idle_timeout),
            "--max-connection-age",
            str(c.max_connection_age),
        ]
        return {
            "aws": Service(
                "aws",
                [*py, "devserver.aws", "-H", c.host, "-p", str(c.aws_port)],
                f"{c.aws_url}/moto-api/data.json",
                app_env,
                PROJECT_ROOT,
            ),
            "auth": self._auth_emulator(),
            "rest": Service(
                "rest",
                [*py, "devserver.rest", *host, *app, "--port", str(c.rest_port)],
                f"{c.rest_url}/health",
                app_env,
                PROJECT_ROOT,
                # This project's app answers 200; another may have no /health, and any answer short of a
                # 5xx means its routes are served (the server listens only once the app is loaded).
                range(200, 300) if Path(c.app_dir).resolve() == PROJECT_ROOT else range(200, 500),
            ),
            "gateway": Service(
                "gateway",
                [*py, "devserver.gateway", *host, *app, "--port", str(c.ws_port), *page, *gateway_args],
                f"{c.management_url}/_health",
                app_env,
                PROJECT_ROOT,
            ),
            "events": Service(
                "events",
                [*py, "devserver.events", *host, *app, "--port", str(c.events_port), *page],
                f"{c.events_url}/_health",
                app_env,
                PROJECT_ROOT,
            ),
            "web": Service(
                "web",
                [*py, "devserver.web", *host, "--port", str(c.web_port), *web_args],
                f"{c.web_url}/config.json",
                app_env,
                PROJECT_ROOT,
            ),
        }

    def _auth_emulator(self) -> Service:
        """The Firebase Auth Emulator, with a firebase.json made for the chosen ports, in a private dir."""
        if shutil.which("node") is None or not FIREBASE_BIN.exists():
            raise StackError(
                "the Firebase Auth Emulator needs Node 20+ and firebase-tools: "
                "run `npm ci` (or `make install`)"
            )
        c = self.config
        firebase = json.loads((PROJECT_ROOT / "firebase.json").read_text())
        emulators = firebase.setdefault("emulators", {})
        emulators["auth"] = {"host": c.host, "port": c.auth_port}
        # The hub and logging ports are fixed by default (4400, 4500): two stacks would collide.
        emulators["hub"] = {"host": c.host, "port": free_port(c.host)}
        emulators["logging"] = {"host": c.host, "port": free_port(c.host)}
        emulators["ui"] = {"enabled": False}
        (self._runtime / "firebase.json").write_text(json.dumps(firebase, indent=2))
        tmp = self._runtime / "tmp"  # the emulator writes its hub locator file there
        tmp.mkdir()
        env = {
            **os.environ,
            "TMPDIR": str(tmp),
            "NO_UPDATE_NOTIFIER": "1",  # no update check over the network
            "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "true",
        }
        command = [str(FIREBASE_BIN), "emulators:start", "--only", "auth", "--project", c.project_id]
        command += ["--config", str(self._runtime / "firebase.json")]
        return Service("auth", command, f"http://{c.auth_emulator_host}/", env, self._runtime)

    def _spawn(self, service: Service) -> None:
        service.process = subprocess.Popen(
            service.command,
            cwd=service.cwd,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, never by the terminal's ^C
            preexec_fn=_die_with_parent,  # spawned from the main thread only
        )
        threading.Thread(
            target=self._relay, args=(service.name, service.process), name=f"log-{service.name}", daemon=True
        ).start()

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self.log(name, raw.decode(errors="replace").rstrip())

    def _signal_group(self, service: Service, sig: int) -> None:
        if service.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.process.pid, sig)

    # ------------------------------------------------------------ readiness and state

    def _check_ports(self) -> None:
        for name, port in self.config.ports().items():
            if port_in_use(self.config.host, port):
                raise StackError(
                    f"port {port} ({name}) is in use: stop what uses it or choose another port "
                    f"(`python -m devserver --help` lists the options and DEV_* variables)"
                )

    def _wait_ready(self, names: list[str], deadline: float) -> None:
        pending = [self._services[name] for name in names]
        while pending:
            for service in list(pending):
                if not service.running():
                    code = service.process.returncode if service.process is not None else None
                    raise StackError(
                        f"{service.name} exited with {code} while starting (its output is above)"
                    )
                if answers(service.ready_url, statuses=service.ready_statuses):
                    pending.remove(service)
            if not pending:
                return
            if time.monotonic() > deadline:
                waiting = ", ".join(f"{s.name} ({s.ready_url})" for s in pending)
                raise StackError(f"not ready after {self.config.startup_timeout:.0f} s: {waiting}")
            time.sleep(0.1)

    def _events_topics(self) -> list[str]:
        with urllib.request.urlopen(self._services["events"].ready_url, timeout=2) as response:  # noqa: S310
            return list(json.loads(response.read())["topics"])

    def _write_state(self, *, ready: bool) -> None:
        c = self.config
        state = {
            "pid": os.getpid(),
            "ready": ready,
            "urls": {
                "rest": c.rest_url,
                "websocket": c.ws_url,
                "management": c.management_url,
                "web": c.web_url,
                "auth_emulator": f"http://{c.auth_emulator_host}",
                "aws": c.aws_url,
                "events": c.events_url,
            },
            "services": {
                name: {"pid": s.pid, "held": s.held, "command": s.command[:3]}
                for name, s in self._services.items()
            },
            "environment": stated_environment(c),
        }
        path = Path(c.state_file)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        # Owner-only: it holds the app's environment, the Stripe webhook secret included (a real one when
        # taken from `stripe listen`). Created so, never chmod-ed after: no moment where others can read it.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(state, indent=2))
        os.replace(tmp, path)

    def _print_ready(self) -> None:
        c = self.config
        lines = [
            "",
            "Local stack is up:",
            f"  demo page       {c.web_url}",
            f"  REST API        {c.rest_url}",
            f"  WebSocket       {c.ws_url}   (Management API on the same port)",
            f"  Auth Emulator   http://{c.auth_emulator_host}   (project {c.project_id})",
            f"  DynamoDB + SNS  {c.aws_url}   (moto)",
            "Ctrl-C stops everything.",
            "",
        ]
        with self._out_lock:
            self._out.write("\n".join(lines) + "\n")
            self._out.flush()

    def log(self, name: str, line: str) -> None:
        """One line of output, prefixed with the part it comes from."""
        with self._out_lock:
            self._out.write(f"{name:>8} | {line}\n")
            self._out.flush()


def main(argv: list[str] | None = None, run: Callable[[Supervisor], int] = Supervisor.run) -> int:
    """The command line of `python -m devserver`."""
    config = StackConfig.from_args(sys.argv[1:] if argv is None else argv, os.environ)
    if config.remote_warning:
        print(config.remote_warning, file=sys.stderr, flush=True)
    try:
        return run(Supervisor(config))
    except KeyboardInterrupt:
        return 130
