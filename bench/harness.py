"""What every benchmark needs: the stand-in processes, the machine's description, tables.

Servers run as separate processes on 127.0.0.1 (never a fixed port) and are stopped by
the benchmark that started them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

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
def management_api_standin(delay: float) -> Iterator[str]:
    """The Management API stand-in (bench/standin.py) in its own process; yields its base URL."""
    args = [*pin_prefix(server_cpus()), PYTHON, "-m", "bench.standin", "--delay", str(delay)]
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
