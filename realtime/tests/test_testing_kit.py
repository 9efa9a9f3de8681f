"""The testing kit as an adopting app uses it: its own app and test file, run by pytest in a fresh process
that finds the kit's fixtures through the installed package's `pytest11` entry point.

The adopter's test passes when its route notifies and fails, saying what was missing, when it forgets to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ADOPTER_APP = """
from chalice import Chalice

from chalice_realtime import caller_id, notify, realtime, realtime_auth

app = Chalice(app_name="orders")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_blueprint(realtime)


@app.route("/orders", methods=["POST"], authorizer=realtime_auth)
def create_order():
    {notify}
    return {{"created": True}}
"""

ADOPTER_TEST = """
from chalice.test import Client

from app import app


def test_creating_an_order_notifies_its_owner(realtime_frames, realtime_tokens):
    realtime_frames.connect("uid-1")
    realtime_frames.connect("uid-2")
    with Client(app) as client:
        response = client.http.post("/orders", headers=realtime_tokens.headers("uid-1"))
    assert response.status_code == 200
    assert realtime_frames.for_user("uid-1") == ["orders-updated"]
    assert realtime_frames.for_user("uid-2") == []


def test_a_socket_admitted_by_connect_hears_the_notify(realtime_frames, realtime_tokens):
    with Client(app) as client:
        answer = realtime_tokens.websocket_connect(client, "uid-1", "browser-1=")
        assert answer["statusCode"] == 200
        client.http.post("/orders", headers=realtime_tokens.headers("uid-1"))
    assert realtime_frames.for_connection("browser-1=") == ["orders-updated"]
    realtime_frames.clear()
    assert realtime_frames.for_user("uid-1") == []


def test_a_forged_token_is_refused(realtime_frames, realtime_tokens):
    with Client(app) as client:
        response = client.http.post("/orders", headers={{"Authorization": "Bearer {forged}"}})
    assert response.status_code in (401, 403)
    assert realtime_frames.for_user("uid-1") == []
"""

FORGED = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1aWQtMSJ9."

FIREBASE_ENV = {"FIREBASE_PROJECT_ID": "orders-test"}
OIDC_ENV = {
    "AUTH_PROVIDER": "oidc",
    "OIDC_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Orders",
    "OIDC_AUDIENCE": "orders-client",
}


def adopting_app(root: Path, *, notifies: bool) -> Path:
    call = 'notify(caller_id(), "orders-updated")' if notifies else "pass  # forgot to notify"
    (root / "app.py").write_text(ADOPTER_APP.format(notify=call))
    (root / "test_orders.py").write_text(textwrap.dedent(ADOPTER_TEST.format(forged=FORGED)))
    return root


def run_pytest(
    root: Path, env: dict[str, str], *, extra_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest on the adopter's folder, in a process with only the adopter's environment and the venv."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT") or key.startswith("LC_")
    }
    environ.update(
        {
            "AWS_DEFAULT_REGION": "eu-west-1",
            "CONNECTIONS_TABLE": "orders-connections",
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
    )
    if extra_path is not None:
        environ["PYTHONPATH"] = str(extra_path)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root), str(root)],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.requires_extra("firebase")
def test_an_adopters_test_passes_when_its_route_notifies(tmp_path: Path) -> None:
    result = run_pytest(adopting_app(tmp_path, notifies=True), FIREBASE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


@pytest.mark.requires_extra("firebase")
def test_an_adopters_test_fails_when_its_route_forgets_to_notify(tmp_path: Path) -> None:
    result = run_pytest(adopting_app(tmp_path, notifies=False), FIREBASE_ENV)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed, 1 passed" in result.stdout
    assert "assert [] == ['orders-updated']" in result.stdout


@pytest.mark.requires_extra("oidc")
def test_with_an_oidc_provider_the_tokens_are_the_issuers_and_the_same_test_passes(tmp_path: Path) -> None:
    result = run_pytest(adopting_app(tmp_path, notifies=True), OIDC_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_plugin_imports_no_test_library_until_a_fixture_is_used(tmp_path: Path) -> None:
    probe = (
        "import sys, chalice_realtime.testing.plugin\n"
        "print(sorted(m for m in ('moto', 'responses', 'firebase_admin', 'jwt') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_fixture_whose_library_is_missing_says_what_to_install(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "moto").mkdir(parents=True)
    (blocked / "moto" / "__init__.py").write_text('raise ImportError("moto is not installed here")\n')
    adopter = tmp_path / "adopter"
    adopter.mkdir()
    (adopter / "test_frames.py").write_text("def test_frames(realtime_frames):\n    pass\n")
    result = run_pytest(adopter, FIREBASE_ENV, extra_path=blocked)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "MissingTestDependency: realtime_frames (the connections table in moto) needs moto: pip install moto"
        in (result.stdout)
    )


# ---------------------------------------------------------------- the stand-ins' modules


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("chalice_realtime.testing.faults", ()),
        ("chalice_realtime.testing.clock", ()),
        ("chalice_realtime.testing.dynamodb", ()),
        ("chalice_realtime.testing.logs", ()),
        ("chalice_realtime.testing.management_api", ()),  # moto once `faulty_backend` or `serving_moto` runs
        pytest.param(
            "chalice_realtime.testing.firebase", ("jwt",), marks=pytest.mark.requires_extra("firebase")
        ),
    ],
)
def test_a_stand_in_module_imports_no_test_library_it_does_not_need(
    tmp_path: Path, module: str, allowed: tuple[str, ...]
) -> None:
    """What a local stack without test dependencies imports (`faults`) needs the standard library only."""
    libraries = ("moto", "pytest", "responses", "firebase_admin", "jwt")
    probe = f"import sys, {module}\nprint(sorted(m for m in {libraries!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(allowed))


def test_captured_logs_hold_each_line_redacted_and_unredacted_and_the_levels_come_back() -> None:
    import logging

    from chalice_realtime.testing.logs import capture_logs, emf_blobs

    logger = logging.getLogger("chalice_realtime.kit-test")
    level = logging.getLogger("chalice_realtime").level
    with capture_logs() as logs:
        logger.debug("first")
        mark = len(logs.lines())
        logger.info("second", extra={"token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"})
    logger.info("after the block")

    assert [line["message"] for line in logs.lines()] == ["first", "second"]
    assert [line["message"] for line in logs.since(mark)] == ["second"]
    assert "eyJhbGciOiJSUzI1NiJ9" not in logs.stream.getvalue()
    assert "eyJhbGciOiJSUzI1NiJ9" in logs.raw_stream.getvalue()
    assert "eyJhbGciOiJSUzI1NiJ9" in logs.text
    assert logging.getLogger("chalice_realtime").level == level
    assert emf_blobs('noise\n{"_aws": {"Timestamp": 1}, "Delivered": 2}\n{"other": 1}\n') == [
        {"_aws": {"Timestamp": 1}, "Delivered": 2}
    ]


@pytest.mark.requires_extra("firebase")
def test_served_certificates_are_every_keys_and_loopback_calls_go_through() -> None:
    import requests
    from chalice_realtime.testing.firebase import CERTS_URL, SigningKey, serving_certificates
    from chalice_realtime.testing.management_api import serving

    first, second = SigningKey.generate("kid-a"), SigningKey.generate("kid-b")
    with serving() as stand_in, serving_certificates(first, second):
        served = requests.get(CERTS_URL, timeout=5)
        posted = requests.post(f"{stand_in.url}/@connections/c1", data=b"{}", timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get("https://example.com/", timeout=5)

    assert set(served.json()) == {"kid-a", "kid-b"}
    assert {"Cache-Control", "Date"} <= set(served.headers)
    assert posted.status_code == 200
    assert stand_in.frames("c1") == [b"{}"]
