"""The import contracts in pyproject.toml hold here, and each one fails on an import that breaks it.

`lint-imports` runs on a copy of the project's packages with one bad import added,
so a contract that could never fail (a typo in a module name, a wildcard matching
nothing) shows up here instead of passing silently in `make lint`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
ROOT_PACKAGES = ("chalicelib", "devserver", "bench", "tests", "testsupport", "infra", "ops")
CORE_SOURCES = Path("realtime", "src")  # the core's package, analysed from its sources


def lint_imports(project: Path, *contract_ids: str) -> subprocess.CompletedProcess[str]:
    only = [f"--contract={contract_id}" for contract_id in contract_ids]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *only],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / CORE_SOURCES)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_project(destination: Path) -> Path:
    for package in ROOT_PACKAGES:
        shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / CORE_SOURCES, destination / CORE_SOURCES, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_project_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


# (module that gets the import, the import, the id of the contract it breaks, what lint-imports says)
VIOLATIONS = [
    pytest.param(
        "realtime/src/chalice_realtime/delivery.py",
        "from chalicelib.jobs.model import Job",
        "core-self-contained",
        "chalice_realtime is not allowed to import chalicelib",
        id="core-imports-a-feature",
    ),
    pytest.param(
        "realtime/src/chalice_realtime/notifier.py",
        "from chalicelib import settings",
        "core-self-contained",
        "chalice_realtime is not allowed to import chalicelib",
        id="core-imports-the-app-settings",
    ),
    pytest.param(
        "realtime/src/chalice_realtime/runtime.py",
        "import devserver",
        "core-self-contained",
        "chalice_realtime is not allowed to import devserver",
        id="core-imports-the-local-stack",
    ),
    pytest.param(
        "chalicelib/payments.py",
        "from chalice_realtime.clock import SYSTEM_CLOCK",
        "public-api-only",
        "chalicelib is not allowed to import chalice_realtime.clock",
        id="feature-imports-a-core-internal",
    ),
    pytest.param(
        "chalicelib/jobs/queue.py",
        "from chalice_realtime.transports import curl",
        "public-api-only",
        "chalicelib is not allowed to import chalice_realtime.transports",
        id="feature-imports-a-core-subpackage",
    ),
    pytest.param(
        "devserver/gateway.py",
        "from chalice_realtime.transports import curl",
        "public-api-only",
        "devserver is not allowed to import chalice_realtime.transports",
        id="local-stack-imports-a-core-internal",
    ),
    pytest.param(
        "chalicelib/messages.py",
        "from tests import conftest",
        "deployed-code",
        "chalicelib is not allowed to import tests",
        id="feature-imports-tests",
    ),
    pytest.param(
        "chalicelib/payments.py",
        "from devserver import gateway",
        "deployed-code",
        "chalicelib is not allowed to import devserver",
        id="feature-imports-the-local-stack",
    ),
    pytest.param(
        "bench/cost.py",
        "from tests import conftest",
        "shared-test-support",
        "bench is not allowed to import tests",
        id="benchmark-imports-tests",
    ),
    pytest.param(
        "testsupport/stripe_events.py",
        "from tests.jobs import test_jobs",
        "shared-test-support",
        "testsupport is not allowed to import tests",
        id="test-support-imports-tests",
    ),
    pytest.param(
        "tests/chat/test_messages.py",
        "from bench import costmodel",
        "tests-apart-from-bench",
        "tests is not allowed to import bench",
        id="feature-test-imports-bench",
    ),
    pytest.param(
        "testsupport/localstack.py",
        "import bench.fanout",
        "tests-apart-from-bench",
        "testsupport is not allowed to import bench",
        id="test-support-imports-bench",
    ),
    pytest.param(
        "chalicelib/pagination.py",
        "from chalicelib import messages",
        "no-cycles",
        ".pagination -> .messages",
        id="cycle-between-features",
    ),
    pytest.param(
        "realtime/src/chalice_realtime/settings.py",
        "from . import blueprint",
        "no-cycles",
        ".settings -> .blueprint",
        id="cycle-inside-the-core",
    ),
]


@pytest.mark.parametrize(("module", "line", "contract", "reported"), VIOLATIONS)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str, reported: str
) -> None:
    project = copy_of_project(tmp_path)
    with (project / module).open("a") as source:
        source.write(f"\n{line}  # the import under test\n")

    result = lint_imports(project, contract)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout, result.stdout
    assert reported in result.stdout.split("Broken contracts", 1)[-1], result.stdout


def test_the_unchanged_copy_keeps_every_contract(tmp_path: Path) -> None:
    """The copy itself is sound: the failures above come from the added import alone."""
    result = lint_imports(copy_of_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
