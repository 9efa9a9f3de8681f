"""The core's own tests: the core built on its own, with no app around it (it travels with the package).

They run against whatever `chalice_realtime` is importable: the installed wheel in `make package-test`
(each extra set in its own venv), the app's venv otherwise. A test that needs an extra says so with
`@pytest.mark.requires_extra("firebase")` (a whole module: `pytestmark = pytest.mark.requires_extra(...)`);
without that extra installed it is deselected, not skipped, and the summary says how many and why. A test
of what happens without an extra (the transport fallback) says `@pytest.mark.without_extra("fast")`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.env import TEST_ENV

# Set before any test imports the core: `current()` reads the settings from the environment.
for _name in ("FIREBASE_AUTH_EMULATOR_HOST", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_name, None)
os.environ.update(TEST_ENV)

# The kit's lower-level fixtures: signing keys, `firebase_certs`, the OIDC issuer, `management_api_url`.
pytest_plugins = ["chalice_realtime.testing.fixtures"]

# Each extra, and the module its presence is told by.
EXTRAS = {
    "firebase": "firebase_admin",
    "oidc": "jwt",
    "fast": "pycurl",
    "aiohttp": "aiohttp",
    "metrics": "aws_lambda_powertools",
}
MODULE_EXTRAS = re.compile(r"^pytestmark = pytest\.mark\.requires_extra\((?P<names>[^)]*)\)", re.MULTILINE)


def installed(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra]) is not None


def missing(extras: tuple[str, ...]) -> list[str]:
    return [extra for extra in extras if not installed(extra)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--only-extra",
        metavar="NAME",
        help="run only the tests that need this extra (the small extra sets of `make package-test`)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_extra(*names): needs these extras of chalice-realtime")
    config.addinivalue_line("markers", "without_extra(*names): shows what happens when these are missing")
    config.stash[_LEFT_OUT] = {}


_LEFT_OUT = pytest.StashKey[dict[str, int]]()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A module whose `pytestmark` names a missing extra is not even imported (its imports need it)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    declared = MODULE_EXTRAS.search(collection_path.read_text())
    if declared is None:
        return None
    lacking = missing(tuple(re.findall(r"\"(\w+)\"", declared["names"])))
    if not lacking:
        return None
    left_out = config.stash[_LEFT_OUT]
    key = f"module {collection_path.name}: needs [{','.join(lacking)}]"
    left_out[key] = left_out.get(key, 0) + 1
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    left_out = config.stash[_LEFT_OUT]
    only = config.getoption("--only-extra")
    for item in items:
        if only and only not in [name for mark in item.iter_markers("requires_extra") for name in mark.args]:
            deselected.append(item)
            continue
        needed = [name for mark in item.iter_markers("requires_extra") for name in mark.args]
        absent = [name for mark in item.iter_markers("without_extra") for name in mark.args]
        lacking, present = missing(tuple(needed)), [name for name in absent if installed(name)]
        if lacking or present:
            deselected.append(item)
            key = (
                f"needs [{','.join(sorted(set(lacking)))}]" if lacking else f"needs no [{','.join(present)}]"
            )
            left_out[key] = left_out.get(key, 0) + 1
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    import chalice_realtime

    present = [extra for extra in EXTRAS if installed(extra)]
    terminalreporter.write_line(
        f"chalice_realtime from {Path(chalice_realtime.__file__).parent}; extras installed: "
        f"[{','.join(present)}]"
    )
    for reason, count in sorted(config.stash[_LEFT_OUT].items()):
        terminalreporter.write_line(f"left out, {reason}: {count}")


@pytest.fixture(scope="session", autouse=True)
def core_under_test(pytestconfig: pytest.Config) -> None:
    """With `CHALICE_REALTIME_INSTALLED=1` (the package tests), the core must come from an installed
    wheel, not from a source tree: a file left out of the wheel then fails here."""
    if os.environ.get("CHALICE_REALTIME_INSTALLED") != "1":
        return
    import chalice_realtime

    where = Path(chalice_realtime.__file__)
    assert "site-packages" in where.parts, f"chalice_realtime imported from {where}, not an installed wheel"


# ---------------------------------------------------------------- AWS: moto in-process and as a server


@pytest.fixture
def settings() -> Any:
    from chalice_realtime import RealtimeSettings

    return RealtimeSettings.from_env(TEST_ENV)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """moto in-process with the connections table."""
    import boto3
    from chalice_realtime.testing.store import create_connections_table
    from moto import mock_aws

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_connections_table(dynamodb, TEST_ENV["CONNECTIONS_TABLE"])
        yield {"dynamodb": dynamodb}


@pytest.fixture
def management_api(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's Management API: `.connections[cid].data` is what was posted; `.faults` and `.gone` inject
    what AWS would answer."""
    from chalice_realtime.testing.management_api import faulty_backend

    return faulty_backend(monkeypatch)


@pytest.fixture
def realtime(settings: Any, aws: dict[str, Any], management_api_url: str) -> Iterator[Any]:
    """The core against moto, installed for the blueprint's handlers and `notify()`; frames go to
    moto's Management API with the configured transport."""
    import dataclasses

    import chalice_realtime as core

    runtime = core.Realtime(
        dataclasses.replace(settings, websocket_endpoint=management_api_url), dynamodb=aws["dynamodb"]
    )
    core.use(runtime)
    yield runtime
    core.use(None)
    runtime.close()


@pytest.fixture
def adopter(realtime: Any, firebase_certs: Any) -> Any:
    """A minimal Chalice app adopting the core: the blueprint, `/health` (public) and `/me` (signed in)."""
    import chalice_realtime as core
    from chalice import Chalice

    app = Chalice(app_name="adopter")
    app.experimental_feature_flags.update(["WEBSOCKETS"])
    app.register_blueprint(core.realtime)

    @app.route("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.route("/me", authorizer=core.realtime_auth)
    def me() -> dict[str, str]:
        return {"user_id": core.caller_id()}

    return app


@pytest.fixture
def client(adopter: Any) -> Iterator[Any]:
    """chalice's test client over `adopter`."""
    from chalice.test import Client

    with Client(adopter) as test_client:
        yield test_client


# ---------------------------------------------------------------- Firebase ID tokens ([firebase])


@pytest.fixture(scope="session")
def tokens(signing_key: Any) -> Any:
    from chalice_realtime.testing.firebase import TokenFactory

    return TokenFactory(TEST_ENV["FIREBASE_PROJECT_ID"], signing_key)
