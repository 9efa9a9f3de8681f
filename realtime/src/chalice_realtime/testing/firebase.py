"""Firebase-shaped ID tokens signed by RSA keys the tests generate.

The app verifies them through the real firebase-admin path; the tests serve
the matching X.509 certificates in place of Google's download:

    key = SigningKey.generate("kid-1")
    with serving_certificates(key):  # needs `responses`
        token = TokenFactory("my-project", key).mint("alice")
        client.http.get("/me", headers={"Authorization": f"Bearer {token}"})

Needs the `[firebase]` extra (PyJWT, cryptography); `serving_certificates` also needs `responses`.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CERTS_URL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
# What `serving_certificates` lets through by default: calls to servers on this machine (moto, the stand-ins).
LOOPBACK = r"http://(127\.0\.0\.1|localhost)[:/].*"


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def certificate_pem(self) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.private_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


class TokenFactory:
    """Mints ID tokens as Firebase Auth would, with any claim or header bent for a test.

    tokens.mint("alice")                       # valid
    tokens.mint("alice", exp=time.time() - 60)  # expired
    """

    def __init__(self, project_id: str, key: SigningKey) -> None:
        self.project_id = project_id
        self.key = key

    def claims(self, uid: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": f"https://securetoken.google.com/{self.project_id}",
            "aud": self.project_id,
            "auth_time": now - 10,
            "user_id": uid,
            "sub": uid,
            "iat": now - 10,
            "exp": now + 3600,
            "firebase": {"identities": {}, "sign_in_provider": "password"},
        }
        claims.update(overrides)
        return claims

    def mint(
        self,
        uid: str,
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        signer = key or self.key
        headers = {"kid": kid if kid is not None else signer.kid}
        return jwt.encode(
            self.claims(uid, **overrides), signer.private_key, algorithm="RS256", headers=headers
        )

    def unsigned(self, uid: str, **overrides: Any) -> str:
        """An `alg: none` token: accepted only by an emulator-mode verifier."""
        return jwt.encode(self.claims(uid, **overrides), "", algorithm="none", headers={"kid": self.key.kid})


# Each forged or broken token an app must refuse (on REST and at `$connect`), by name:
#     make = BAD_TOKENS["expired"]; token = make(tokens, attacker_key)
BadToken = Callable[[TokenFactory, SigningKey], str]

BAD_TOKENS: dict[str, BadToken] = {
    "expired": lambda t, k: t.mint("alice", exp=int(time.time()) - 60, iat=int(time.time()) - 4000),
    "issued in the future": lambda t, k: t.mint("alice", iat=int(time.time()) + 3600),
    "wrong audience": lambda t, k: t.mint("alice", aud="another-project"),
    "wrong issuer": lambda t, k: t.mint("alice", iss="https://securetoken.google.com/another-project"),
    "signed by another key": lambda t, k: t.mint("alice", key=k, kid=t.key.kid),
    "unknown kid": lambda t, k: t.mint("alice", key=k),
    "alg none": lambda t, k: t.unsigned("alice"),
    "empty sub": lambda t, k: t.mint("", user_id=""),
    "not a jwt": lambda t, k: "not-a-token",
    "garbage segments": lambda t, k: "a.b.c",
}


@contextlib.contextmanager
def serving_certificates(*keys: SigningKey, passthru: str = LOOPBACK) -> Iterator[Any]:
    """Serve `keys`' certificates where firebase-admin downloads Google's until the block ends.

    Through `responses` (its `RequestsMock`, yielded): requests to URLs matching `passthru` (a regular
    expression; by default the loopback servers a test starts) go out as usual, any other is refused.
    """
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.GET,
            CERTS_URL,
            json={key.kid: key.certificate_pem() for key in keys},
            # As Google serves them; firebase-admin's cache needs both headers to keep the copy.
            headers={"Cache-Control": "public, max-age=3600", "Date": formatdate(usegmt=True)},
        )
        mock.add_passthru(re.compile(passthru))
        yield mock
