"""The core's runtime: the transport is the one the setting names, whatever else is injected."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from chalice_realtime import ConfigurationError, Realtime, RealtimeSettings
from chalice_realtime.transports.aiohttp import AiohttpTransport
from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
from chalice_realtime.transports.curl import CurlTransport
from fakes.env import TEST_ENV


@pytest.mark.requires_extra("fast")
def test_the_default_transport_is_curl_even_with_an_injected_dynamodb_client() -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    realtime = Realtime(RealtimeSettings.from_env(TEST_ENV), dynamodb=dynamodb)
    assert realtime.dynamodb is dynamodb
    assert type(realtime.transport) is CurlTransport


@pytest.mark.parametrize(
    "value, kind",
    [
        pytest.param("curl", CurlTransport, marks=pytest.mark.requires_extra("fast")),
        pytest.param("aiohttp", AiohttpTransport, marks=pytest.mark.requires_extra("aiohttp")),
        ("BOTO3", Boto3ThreadPoolTransport),
    ],
)
def test_realtime_transport_names_the_transport(value: str, kind: type[Any]) -> None:
    settings = RealtimeSettings.from_env({**TEST_ENV, "REALTIME_TRANSPORT": value})
    assert type(Realtime(settings).transport) is kind


def test_an_unknown_transport_is_refused_with_the_variable_named() -> None:
    with pytest.raises(ConfigurationError, match="REALTIME_TRANSPORT must be one of curl, aiohttp, boto3"):
        RealtimeSettings.from_env({**TEST_ENV, "REALTIME_TRANSPORT": "carrier-pigeon"})


def test_a_transport_passed_in_is_used_as_is() -> None:
    transport = Boto3ThreadPoolTransport("https://abc.execute-api.us-east-1.amazonaws.com/api")
    realtime = Realtime(RealtimeSettings.from_env(TEST_ENV), transport=transport)
    assert realtime.transport is transport
