"""An OpenID Connect issuer on a loopback socket: discovery document, JWKS and tokens it signs.

Tokens are shaped as an Amazon Cognito user pool issues them (ID tokens carry `aud` and
`token_use: id`; access tokens `client_id` and `token_use: access`); `generic` mints the
Auth0/Keycloak shape, without `token_use`. The app fetches the keys over a real socket,
through PyJWT's `PyJWKClient`, as it would from the issuer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

POOL = "us-east-1_TestPool1"
CLIENT_ID = "4r7q1test0client0id"
OTHER_CLIENT_ID = "9z9another0client0id"


@dataclass
class IssuerKey:
    """A signing key of the issuer: RS256 (RSA) or ES256 (P-256)."""

    kid: str
    algorithm: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def rsa(cls, kid: str) -> IssuerKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> IssuerKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        """The public half as the issuer publishes it in its JWKS."""
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        public = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        return {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class LocalIssuer:
    """Serves `/<pool>/.well-known/openid-configuration` and `/<pool>/.well-known/jwks.json` on 127.0.0.1.

    issuer.keys            # the published keys (replace to rotate)
    issuer.requests        # Counter of paths fetched
    issuer.down = True     # every request answers 503
    issuer.garbage = True  # every request answers 200 with an HTML page
    issuer.stop()          # nothing listens any more (connection refused)
    """

    def __init__(self, keys: list[IssuerKey]) -> None:
        self.keys = list(keys)
        self.requests: Counter[str] = Counter()
        self.down = False
        self.garbage = False
        self._stopped = False
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests[self.path] += 1
                body = issuer.answer(self.path)
                if issuer.down or body is None:
                    self.send_response(503 if issuer.down else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = b"<html>maintenance</html>" if issuer.garbage else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if issuer.garbage else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # not the app's log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = f"{self.base_url}/{POOL}"
        self.discovery_path = f"/{POOL}/.well-known/openid-configuration"
        self.jwks_path = f"/{POOL}/.well-known/jwks.json"
        self.jwks_url = self.base_url + self.jwks_path

    def answer(self, path: str) -> dict[str, Any] | None:
        if path == self.discovery_path:
            return {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": [],
            }
        if path == self.jwks_path:
            return {"keys": [key.jwk() for key in self.keys]}
        return None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class OidcTokens:
    """Mints tokens as the issuer would, with any claim or header bent for a test.

    tokens.id_token("alice")                          # Cognito ID token for CLIENT_ID
    tokens.access_token("alice")                      # Cognito access token for CLIENT_ID
    tokens.id_token("alice", exp=time.time() - 60)    # expired
    """

    def __init__(self, issuer: str, key: IssuerKey) -> None:
        self.issuer = issuer
        self.key = key

    def claims(self, sub: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": sub, "iat": now - 10, "exp": now + 3600}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], *, key: IssuerKey | None = None, kid: str | None = None) -> str:
        signer = key or self.key
        headers = {"kid": kid if kid is not None else signer.kid}
        # PyJWS rather than jwt.encode, which refuses some claim types: a test may sign anything.
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return jwt.api_jws.encode(payload, signer.private_key, algorithm=signer.algorithm, headers=headers)

    def id_token(
        self, sub: str, *, key: IssuerKey | None = None, kid: str | None = None, **claims: Any
    ) -> str:
        payload = self.claims(sub, aud=CLIENT_ID, token_use="id", auth_time=int(time.time()) - 10)
        payload.update(claims)
        return self.sign({k: v for k, v in payload.items() if v is not None}, key=key, kid=kid)

    def access_token(self, sub: str, **claims: Any) -> str:
        payload = self.claims(sub, client_id=CLIENT_ID, token_use="access", scope="openid")
        payload.update(claims)
        return self.sign({k: v for k, v in payload.items() if v is not None})

    def generic(self, sub: str, **claims: Any) -> str:
        """Auth0/Keycloak shape: `aud`, no `token_use`."""
        return self.sign(self.claims(sub, **{"aud": CLIENT_ID, **claims}))

    def unsigned(self, sub: str) -> str:
        """`alg: none`, naming the real key."""
        return jwt.encode(
            self.claims(sub, aud=CLIENT_ID, token_use="id"),
            "",  # `none` takes no key
            algorithm="none",
            headers={"kid": self.key.kid},
        )

    def hmac_with_public_key(self, sub: str) -> str:
        """HS256 keyed with the issuer's public key, the classic algorithm-confusion forgery."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.key.kid}
        payload = self.claims(sub, aud=CLIENT_ID, token_use="id")
        segments = [_b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)]
        signing_input = ".".join(segments).encode()
        signature = hmac.new(self.key.public_pem(), signing_input, hashlib.sha256).digest()
        return ".".join([*segments, _b64(signature)])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- forged and broken tokens

BadToken = Callable[[OidcTokens, IssuerKey], str]

# Each forged or broken token, and the reason the verifier gives (logged at `$connect`, never the token).
# Reasons as a verifier accepting ID tokens only (OIDC_TOKEN_USE=id) gives them.
OIDC_BAD_TOKENS: dict[str, tuple[BadToken, str]] = {
    "expired": (lambda t, k: t.id_token("alice", exp=int(time.time()) - 60), "token expired"),
    "issued in the future": (
        lambda t, k: t.id_token("alice", iat=int(time.time()) + 3600),
        "token not yet valid",
    ),
    "not yet valid (nbf)": (
        lambda t, k: t.id_token("alice", nbf=int(time.time()) + 3600),
        "token not yet valid",
    ),
    "wrong audience": (lambda t, k: t.id_token("alice", aud=OTHER_CLIENT_ID), "wrong audience"),
    "no audience": (lambda t, k: t.id_token("alice", aud=None), "wrong audience"),
    "wrong issuer": (
        lambda t, k: t.id_token("alice", iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"),
        "wrong issuer",
    ),
    "signed by another key": (lambda t, k: t.id_token("alice", key=k, kid=t.key.kid), "bad signature"),
    "unknown kid": (lambda t, k: t.id_token("alice", key=k), "unknown signing key"),
    "no kid": (lambda t, k: t.id_token("alice", kid=""), "token names no signing key"),
    "alg none": (lambda t, k: t.unsigned("alice"), "signing algorithm not accepted"),
    "HS256 keyed with the public key": (
        lambda t, k: t.hmac_with_public_key("alice"),
        "signing algorithm not accepted",
    ),
    "wrong token_use (access)": (lambda t, k: t.access_token("alice"), "token use not accepted"),
    "unknown token_use": (lambda t, k: t.id_token("alice", token_use="refresh"), "token use not accepted"),
    "missing sub": (
        lambda t, k: t.sign(
            {c: v for c, v in t.claims("alice", aud=CLIENT_ID, token_use="id").items() if c != "sub"}
        ),
        "token has no 'sub' claim",
    ),
    "empty sub": (lambda t, k: t.id_token(""), "token has no subject"),
    "missing exp": (lambda t, k: t.id_token("alice", exp=None), "token has no 'exp' claim"),
    "signature stripped": (lambda t, k: t.id_token("alice").rsplit(".", 1)[0] + ".", "bad signature"),
    "payload swapped": (
        lambda t, k: ".".join(
            [
                t.id_token("alice").split(".")[0],
                t.id_token("bob").split(".")[1],
                t.id_token("alice").split(".")[2],
            ]
        ),
        "bad signature",
    ),
    "not a jwt": (lambda t, k: "not-a-token", "not a JWT"),
    "garbage segments": (lambda t, k: "a.b.c", "not a JWT"),
}
