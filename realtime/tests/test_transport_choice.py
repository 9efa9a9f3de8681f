"""Which transport posts the frames: the one `REALTIME_TRANSPORT` names, or boto3 when its extra is missing.

The fallback tests run where the extra is absent (`make package-test`'s venvs without `[fast]`), the others
where it is installed: each venv shows its half.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from chalice_realtime import Realtime, RealtimeSettings
from chalice_realtime.testing.management_api import received
from chalice_realtime.testing.store import add_connections
from chalice_realtime.transports import resolve, transport_for
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
from chalice_realtime.transports.curl import CurlTransport
from fakes.env import TEST_ENV

URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.without_extra("fast")
def test_without_the_fast_extra_curl_falls_back_to_boto3_with_a_warning_naming_the_extra(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="chalice_realtime.transports"):
        transport = transport_for("curl", URL)
    assert type(transport) is Boto3ThreadPoolTransport
    [warning] = warnings_of(caplog)
    assert 'pip install "chalice-realtime[fast]"' in warning
    assert "REALTIME_TRANSPORT=curl needs pycurl" in warning
    assert "several times the CPU per frame" in warning
    assert "realtime transport: boto3" in [r.getMessage() for r in caplog.records]


@pytest.mark.without_extra("fast")
def test_without_the_fast_extra_the_default_settings_still_deliver_over_a_real_socket(
    realtime: Any, management_api: Any
) -> None:
    assert realtime.settings.transport == "curl"  # the default, as a stage that sets nothing
    assert type(realtime.transport) is Boto3ThreadPoolTransport
    add_connections(realtime.dynamodb, realtime.settings.connections_table, "alice", "a1")
    report = realtime.notifier.notify("alice", "jobs-updated")
    assert (report.delivered, report.failed) == (1, 0)
    assert received(management_api, "a1") == [{"event": "jobs-updated"}]


@pytest.mark.without_extra("aiohttp")
def test_without_the_aiohttp_extra_aiohttp_falls_back_to_boto3_naming_its_extra(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="chalice_realtime.transports"):
        assert resolve("aiohttp") == "boto3"
    [warning] = warnings_of(caplog)
    assert 'pip install "chalice-realtime[aiohttp]"' in warning


@pytest.mark.requires_extra("fast")
def test_with_the_fast_extra_curl_is_used_and_nothing_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="chalice_realtime.transports"):
        realtime = Realtime(RealtimeSettings.from_env(TEST_ENV))
        assert type(realtime.transport) is CurlTransport
    assert warnings_of(caplog) == []
    assert "realtime transport: curl" in [r.getMessage() for r in caplog.records]


def test_boto3_needs_no_extra_and_an_unknown_transport_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chalice_realtime.transports"):
        assert resolve("boto3") == "boto3"
    assert warnings_of(caplog) == []
    with pytest.raises(ValueError, match="unknown transport 'pigeon'"):
        resolve("pigeon")
