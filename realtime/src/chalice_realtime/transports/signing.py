"""AWS Signature Version 4 for Management API requests, with the signing key derived once a day.

botocore's `SigV4Auth.add_auth` derives the signing key (four HMACs) and re-parses the URL
for every request; a fan-out signs thousands of requests to one host with one key. This
signer keeps what does not change (host, scope, the key for the day) and does per request
only what must be done: hash the canonical request and HMAC the string to sign. Its output
is byte-identical to `SigV4Auth`'s (`realtime/tests/test_signing.py` checks a table of cases).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that `quote(path, safe="/~")` leaves alone, plus `%` and `@`, which it encodes as `%25`, `%40`.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_.~/%@-]*")


class FrozenCredentials(Protocol):
    """What botocore's `get_frozen_credentials()` returns (`ReadOnlyCredentials`)."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


@dataclass(frozen=True)
class _Key:
    """The day's signing key as HMAC-SHA256's two keyed hash states (RFC 2104), copied per request."""

    secret: str
    date: str
    inner: Any = None
    outer: Any = None


def host_header(endpoint_url: str) -> str:
    """The `host` value SigV4 signs: lower case, port only when not the scheme's default.

    >>> host_header("https://abc.execute-api.eu-west-1.amazonaws.com:443/dev")
    'abc.execute-api.eu-west-1.amazonaws.com'
    """
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def canonical_uri(path: str) -> str:
    """The path as SigV4 signs it: dot segments and empty segments removed, then URI-encoded again.

    `path` is what goes on the request line (a connection id already quoted there), so `%`
    becomes `%25` here: services other than S3 sign the path encoded twice.
    """
    if _PLAIN_PATH.fullmatch(path) and "//" not in path and "/." not in path:
        # The usual case, `/{stage}/@connections/{quoted id}`: nothing to normalize, two characters to encode.
        return path.replace("%", "%25").replace("@", "%40")
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return quote(first + "/".join(segments) + last, safe="/~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode(), "sha256")


class RequestSigner:
    """Signs requests to one endpoint for one service and region.

        signer = RequestSigner("https://abc.execute-api.eu-west-1.amazonaws.com", "execute-api", "eu-west-1")
        headers = signer.sign(credentials, "POST", "/dev/@connections/L0SM9cOFvHcCIhw%3D", b'{"event":"x"}')
        # {"X-Amz-Date": ..., "Authorization": "AWS4-HMAC-SHA256 Credential=..."}

    `credentials` are frozen ones (`get_frozen_credentials()`), passed per call so that
    refreshable credentials (a Lambda role) rotate between calls; the key is derived again
    when the secret or the UTC date changes. Safe to share between threads.
    """

    def __init__(self, endpoint_url: str, service: str, region: str) -> None:
        self.host = host_header(endpoint_url)
        self._service = service
        self._region = region
        self._key = _Key("", "")
        self._body = (b"", EMPTY_SHA256)
        self._second = (-1, "")

    def sign(
        self,
        credentials: FrozenCredentials,
        method: str,
        path: str,
        body: bytes,
        *,
        timestamp: str | None = None,
    ) -> dict[str, str]:
        """The headers to add to the request: `X-Amz-Date`, `X-Amz-Security-Token` (if any), `Authorization`.

        `path` is exactly what the request line carries; `timestamp` (`20261201T120000Z`) defaults to now.
        """
        amz_date = timestamp or self._now()
        date = amz_date[:8]
        token = credentials.token
        headers = {"X-Amz-Date": amz_date}
        if token:
            headers["X-Amz-Security-Token"] = token
            canonical_headers = (
                f"host:{self.host}\nx-amz-date:{amz_date}\nx-amz-security-token:{' '.join(token.split())}\n"
            )
            signed_headers = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{self.host}\nx-amz-date:{amz_date}\n"
            signed_headers = "host;x-amz-date"
        # Method, path, query (none), headers, signed header names, payload hash.
        canonical_request = "\n".join(
            (method, canonical_uri(path), "", canonical_headers, signed_headers, self._payload_hash(body))
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        key = self._signing_key(credentials.secret_key, date)
        inner, outer = key.inner.copy(), key.outer.copy()
        inner.update(string_to_sign.encode())
        outer.update(inner.digest())
        signature = outer.hexdigest()  # HMAC-SHA256(signing key, string to sign)
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return headers

    def _signing_key(self, secret: str, date: str) -> _Key:
        cached = self._key
        if cached.inner is not None and cached.secret == secret and cached.date == date:
            return cached
        key = _hmac(
            _hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), self._region), self._service), "aws4_request"
        )
        block = key.ljust(64, b"\0")  # a 32-byte key is zero-padded to SHA-256's 64-byte block
        cached = _Key(
            secret,
            date,
            hashlib.sha256(bytes(b ^ 0x36 for b in block)),
            hashlib.sha256(bytes(b ^ 0x5C for b in block)),
        )
        self._key = cached  # one assignment: a concurrent reader sees old or new, whole
        return cached

    def _payload_hash(self, body: bytes) -> str:
        # A fan-out posts the same frame to every connection: hash it once.
        cached_body, cached_hash = self._body
        if body == cached_body:
            return cached_hash
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        self._body = (body, digest)
        return digest

    def _now(self) -> str:
        now = int(time.time())
        second, text = self._second
        if second != now:
            text = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._second = (now, text)
        return text
