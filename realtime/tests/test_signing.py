"""The cached-key signer against botocore's `SigV4Auth`: byte-identical headers on a table of cases."""

from __future__ import annotations

import itertools
from datetime import datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from chalice_realtime.transports.curl import quote_segment
from chalice_realtime.transports.signing import RequestSigner, canonical_uri, host_header

ENDPOINTS = [
    ("https://abc123.execute-api.eu-west-1.amazonaws.com/dev", "eu-west-1"),
    ("https://abc123.execute-api.us-east-1.amazonaws.com:443/prod/", "us-east-1"),
    ("http://127.0.0.1:8001", "us-east-1"),
    ("http://[::1]:9000/stage", "ap-southeast-2"),
]
# API Gateway ids are base64: '=', '+' and '/'; '%' and dot segments check the second encoding.
CONNECTION_IDS = ["L0SM9cOFvHcCIhw=", "a+b/c==", "100%25%", "Vx/Ab+c==", "..", ".x", "a b~c", "Zoë=", "a@b"]
BODIES = [b"", b'{"event":"jobs-updated"}']
CREDENTIALS = [
    Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    Credentials("ASIATEMP", "secret/with+chars=", "FwoGZXIvYXdzEBaaDH+token/with==  spaces"),
]


def url_of(endpoint: str, connection_id: str) -> str:
    return f"{endpoint.rstrip('/')}/@connections/{quote(connection_id, safe='')}"


def botocore_add_auth(
    credentials: Credentials, region: str, method: str, url: str, body: bytes
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return request


@pytest.mark.parametrize(
    ("endpoint", "connection_id", "body", "credentials", "method"),
    [
        (endpoint, cid, body, creds, method)
        for (endpoint, _), cid, body, creds, method in itertools.product(
            ENDPOINTS, CONNECTION_IDS, BODIES, CREDENTIALS, ["POST", "DELETE"]
        )
    ],
)
def test_headers_are_byte_identical_to_botocore(
    endpoint: str, connection_id: str, body: bytes, credentials: Credentials, method: str
) -> None:
    region = dict(ENDPOINTS)[endpoint]
    url = url_of(endpoint, connection_id)
    expected = botocore_add_auth(credentials, region, method, url, body)
    signer = RequestSigner(endpoint, "execute-api", region)
    ours = signer.sign(
        credentials.get_frozen_credentials(),
        method,
        urlsplit(url).path,
        body,
        timestamp=expected.context["timestamp"],
    )
    assert ours == dict(expected.headers.items())


def test_the_key_follows_a_date_change_and_a_new_secret() -> None:
    """One signer across midnight UTC and a credentials rotation: each signature is botocore's."""
    endpoint, region = ENDPOINTS[0]
    signer = RequestSigner(endpoint, "execute-api", region)
    url = url_of(endpoint, "L0SM9cOFvHcCIhw=")
    rotated = Credentials("ASIANEXT", "another/secret+key", "token-2")
    steps = [
        (CREDENTIALS[0], "20261201T235959Z"),
        (CREDENTIALS[0], "20261202T000001Z"),
        (rotated, "20261202T000002Z"),
        (CREDENTIALS[0], "20261202T000003Z"),
    ]
    signatures = []
    for credentials, timestamp in steps:
        frozen = credentials.get_frozen_credentials()
        ours = signer.sign(frozen, "POST", urlsplit(url).path, BODIES[1], timestamp=timestamp)
        request = AWSRequest(method="POST", url=url, data=BODIES[1], headers=ours)
        del request.headers["Authorization"]
        request.context["timestamp"] = timestamp
        auth = SigV4Auth(frozen, "execute-api", region)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        assert ours["Authorization"].endswith(f"Signature={expected}")
        assert f"Credential={frozen.access_key}/{timestamp[:8]}/{region}/" in ours["Authorization"]
        signatures.append(expected)
    assert len(set(signatures)) == len(steps)


def test_without_a_timestamp_it_signs_now() -> None:
    endpoint, region = ENDPOINTS[0]
    url = url_of(endpoint, "abc=")
    frozen = ReadOnlyCredentials("AKID", "secret", None)
    before = botocore_add_auth(Credentials("AKID", "secret"), region, "POST", url, b"x")
    ours = RequestSigner(endpoint, "execute-api", region).sign(frozen, "POST", urlsplit(url).path, b"x")
    signed_at = datetime.strptime(ours["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    assert 0 <= (signed_at - datetime.strptime(before.context["timestamp"], "%Y%m%dT%H%M%SZ")).seconds <= 2


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://ABC.execute-api.eu-west-1.amazonaws.com/dev", "abc.execute-api.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:80/x", "127.0.0.1"),
        ("http://127.0.0.1:8001", "127.0.0.1:8001"),
        ("https://[::1]:8443/", "[::1]:8443"),
    ],
)
def test_the_host_is_signed_as_botocore_sends_it(url: str, host: str) -> None:
    assert host_header(url) == host


@pytest.mark.parametrize(
    ("path", "uri"),
    [("", "/"), ("/dev/@connections/a%3D", "/dev/%40connections/a%253D"), ("/a//b/./c/../d/", "/a/b/d/")],
)
def test_the_path_is_normalized_and_encoded_again(path: str, uri: str) -> None:
    assert canonical_uri(path) == uri


@pytest.mark.parametrize("connection_id", [*CONNECTION_IDS, "", "%%", "a\nb", "L0SM9cOF/+v=-_.~"])
def test_connection_ids_are_quoted_as_urllib_does(connection_id: str) -> None:
    assert quote_segment(connection_id) == quote(connection_id, safe="")
