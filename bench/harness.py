"""What every benchmark needs: the stand-in processes, the machine's description, tables.

Servers run as separate processes on 127.0.0.1 (never a fixed port) and are stopped by
the benchmark that started them.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# The benchmarks never reach AWS: dummy credentials, one region.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_prefix(cpus: str | None) -> list[str]:
    """`taskset -c CPUS` when asked for and available (Linux), else nothing."""
    if cpus is None or not Path("/usr/bin/taskset").exists():
        return []
    return ["taskset", "-c", cpus]


def server_cpus() -> str | None:
    """Core 1 for the stand-ins on a multi-core machine, so a worker pinned to core 0 has it alone."""
    return "1" if (os.cpu_count() or 1) >= 2 else None


@contextlib.contextmanager
def process(args: Sequence[str], *, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        list(args),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def management_api_standin(delay: float, *, rate: float = 0, burst: float = 0) -> Iterator[str]:
    """The Management API stand-in (bench/standin.py) in its own process, behind a token bucket of `rate`
    requests/s and `burst` tokens when `rate` is set; yields its base URL."""
    args = [*pin_prefix(server_cpus()), PYTHON, "-m", "bench.standin", "--delay", str(delay)]
    if rate:
        args += ["--rate", str(rate), "--burst", str(burst)]
    with process(args) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("the Management API stand-in did not start")
        yield url


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (DynamoDB here) in its own process; yields its URL."""
    port = free_port()
    args = [*pin_prefix(server_cpus()), PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with process(args):
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/moto-api/")
        yield url


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def machine() -> str:
    """One line: cores, CPU model, Python."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores (nproc), {model}, Python {platform.python_version()}, {platform.system()}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads in a terminal and pastes into the README)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])]
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


class CertificateServer:
    """Serves a test key's certificate where firebase-admin downloads Google's, over real HTTP.

    A real server (not `responses`) so that firebase-admin's CacheControl session caches the
    download per `Cache-Control` exactly as it does against Google: `requests` counts downloads.

        with CertificateServer(key) as certs: ...   # firebase-admin now fetches from 127.0.0.1
    """

    def __init__(self, key: Any) -> None:
        self.body = json.dumps({key.kid: key.certificate_pem()}).encode()
        self.requests = 0
        self._server: http.server.ThreadingHTTPServer | None = None

    def __enter__(self) -> CertificateServer:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Date", formatdate(usegmt=True))
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        _point_firebase_at(f"http://127.0.0.1:{self._server.server_address[1]}/certs")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _point_firebase_at(url: str) -> None:
    """Set firebase-admin's certificate URL once it is imported, without importing it here.

    The cold-start benchmark must not pay firebase-admin's import before it starts timing, so
    the URL is set by an import hook as the app imports `firebase_admin._token_gen` itself
    (it is read when firebase-admin builds its verifier, on the first verification).
    """
    import importlib.abc
    import importlib.machinery

    name = "firebase_admin._token_gen"
    if name in sys.modules:
        sys.modules[name].ID_TOKEN_CERT_URI = url
        return

    class Patcher(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                execute(module)
                module.ID_TOKEN_CERT_URI = url

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Patcher())
