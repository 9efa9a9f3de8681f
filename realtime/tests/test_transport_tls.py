"""The libcurl transport over TLS, as it reaches `https://{api}.execute-api.{region}.amazonaws.com`.

A real TLS server on 127.0.0.1 with a certificate from a test CA: trusted through `ca_bundle`, the
frame is delivered and signed for the host and port it went to; with the default bundle (the one
boto3 trusts) the same server is refused and nothing reaches it.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice_realtime.notifier import frame
from chalice_realtime.transports.base import Outcome, RetryPolicy
from chalice_realtime.transports.curl import CurlTransport
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.requires_extra("fast")

FRAME = frame("jobs-updated")


def certificate(
    subject: str, key: Any, issuer: x509.Name | None, issuer_key: Any, *, ca: bool
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[dict[str, str]]]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, None, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("127.0.0.1", server_key, ca.subject, ca_key, ca=False)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the refused handshake of the second test is expected

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/prod", ca_file, seen
    server.shutdown()
    server.server_close()


def test_frames_go_over_tls_to_a_server_the_bundle_trusts(tls_server: Any) -> None:
    url, ca_file, seen = tls_server
    transport = CurlTransport(url, ca_bundle=str(ca_file), retry=RetryPolicy(deadline=5.0))
    try:
        assert transport.post_to_connections(["a=", "b="], FRAME) == [Outcome.DELIVERED] * 2
    finally:
        transport.close()
    port = url.split(":")[2].split("/")[0]
    assert [headers["host"] for headers in seen] == [f"127.0.0.1:{port}"] * 2
    assert all("SignedHeaders=host;x-amz-date" in headers["authorization"] for headers in seen)


def test_a_certificate_outside_the_bundle_is_refused(tls_server: Any) -> None:
    url, _ca_file, seen = tls_server
    transport = CurlTransport(url, retry=RetryPolicy(max_attempts=2, base_delay=0.01, deadline=5.0))
    try:
        assert transport.post_to_connections(["a="], FRAME) == [Outcome.FAILED]
    finally:
        transport.close()
    assert seen == []
