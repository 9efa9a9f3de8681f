"""The local stack's rule for who may drive it, and its refusal to listen beyond loopback by accident.

Over real sockets: tests/integration/test_local_stack_exposure.py.
"""

from __future__ import annotations

import pytest

from devserver.config import StackConfig
from devserver.local_only import LocalOnly, is_loopback, origin_of
from devserver.supervisor import Supervisor, main

PAGE = "http://127.0.0.1:8080"
GATE = LocalOnly(frozenset({PAGE}))


@pytest.mark.parametrize(
    ("method", "origin", "fetch_site", "content_type", "status"),
    [
        ("POST", "http://evil.example", "cross-site", "text/plain", 403),
        ("POST", "http://evil.example", "cross-site", "application/json", 403),
        ("POST", "null", "cross-site", "application/json", 403),  # a sandboxed frame or a file:// page
        ("POST", "http://localhost:8080", "cross-site", "application/json", 403),  # not the page's own URL
        ("GET", None, "cross-site", None, 403),  # an <img> of another page
        ("GET", None, "same-site", None, 403),  # another server's page on 127.0.0.1
        ("POST", PAGE, "same-origin", "text/plain", 415),
        ("POST", None, None, "application/x-www-form-urlencoded", 415),
        ("POST", PAGE, "same-origin", "application/json; charset=utf-8", None),
        ("POST", None, None, "application/json", None),  # a program: tests, the CLI, curl
        ("GET", None, None, None, None),
        ("GET", None, "none", None, None),  # the developer typing the URL
        ("DELETE", None, None, None, None),
    ],
)
def test_who_may_drive_a_local_only_endpoint(
    method: str, origin: str | None, fetch_site: str | None, content_type: str | None, status: int | None
) -> None:
    refusal = GATE.refusal(method, origin=origin, fetch_site=fetch_site, content_type=content_type)
    assert (refusal.status if refusal else None) == status


def test_an_endpoint_taking_any_body_checks_origins_only() -> None:
    any_body = LocalOnly(frozenset(), body_types=None)
    assert (
        any_body.refusal("POST", origin=None, fetch_site=None, content_type="application/x-amz-json-1.0")
        is None
    )
    refusal = any_body.refusal("POST", origin=PAGE, fetch_site="same-site", content_type="application/json")
    assert refusal is not None and refusal.status == 403  # no page at all is allowed there


def test_loopback_addresses_and_origins() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("")
    assert origin_of("127.0.0.1", 8080) == PAGE
    assert origin_of("::1", 8080) == "http://[::1]:8080"


def test_a_non_loopback_host_needs_the_opt_in(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        StackConfig.from_args(["--host", "0.0.0.0"], {})
    assert refused.value.code == 2
    assert "--allow-remote" in capsys.readouterr().err
    # Never from the environment: an opt-in is given each time.
    with pytest.raises(SystemExit):
        StackConfig.from_args(["--host", "0.0.0.0"], {"DEV_ALLOW_REMOTE": "1", "ALLOW_REMOTE": "1"})
    assert StackConfig.from_args([], {}).remote_warning == ""


def test_with_the_opt_in_the_stack_warns_that_anyone_can_sign_in_as_anyone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[StackConfig] = []

    def run(supervisor: Supervisor) -> int:
        started.append(supervisor.config)
        return 0

    assert main(["--host", "0.0.0.0", "--allow-remote"], run=run) == 0
    assert [c.host for c in started] == ["0.0.0.0"]
    warning = capsys.readouterr().err
    assert "0.0.0.0" in warning and "unsigned tokens" in warning and "any user" in warning


def test_the_loopback_stack_prints_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], run=lambda supervisor: 0) == 0
    assert capsys.readouterr().err == ""
