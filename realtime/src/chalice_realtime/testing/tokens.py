"""Signed test tokens the configured provider (`AUTH_PROVIDER`) accepts, for `realtime_auth` and `$connect`.

    with firebase_test_tokens(settings) as tokens:      # or oidc_test_tokens(settings)
        client.http.get("/me", headers=tokens.headers("uid-1"))
        tokens.websocket_connect(client, "uid-1", "conn-1")

Firebase: the tokens are signed by a key made for the test process and firebase-admin is served its
certificate where it downloads Google's (through `responses`). OIDC: a local issuer serves the key's JWKS
on a loopback port and `verifier` reads it; tokens carry the configured issuer and audience.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from ..auth import TokenVerifier
from ..settings import RealtimeSettings
from .events import websocket_event


class MissingTestDependency(RuntimeError):
    """A kit fixture needs a library that is not installed; the message says what to install."""


def need(module: str, install: str, purpose: str) -> Any:
    """`import module`, or a `MissingTestDependency` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as missing:
        raise MissingTestDependency(f"{purpose} needs {module}: pip install {install}") from missing


class RealtimeTokens:
    """Tokens for a provider: `mint(uid)`, `headers(uid)`, `websocket_connect(client, uid, cid)`.

    `verifier` is what the core must verify them with (None: the one the settings build does).
    """

    def __init__(self, minter: Callable[[str], str], verifier: TokenVerifier | None = None) -> None:
        self._mint = minter
        self.verifier = verifier

    def mint(self, user_id: str) -> str:
        """A fresh, valid token of `user_id`."""
        return self._mint(user_id)

    def headers(self, user_id: str) -> dict[str, str]:
        """`Authorization: Bearer <token>` of `user_id`, for a route behind `realtime_auth`."""
        return {"Authorization": f"Bearer {self.mint(user_id)}", "Content-Type": "application/json"}

    def websocket_connect(self, client: Any, user_id: str, connection_id: str) -> dict[str, Any]:
        """`$connect` of `connection_id` as `user_id` through chalice.test's `Client`; its answer."""
        event = websocket_event(
            "$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {self.mint(user_id)}"}
        )
        return dict(client.lambda_.invoke("ws_connect", event).payload)


@functools.cache
def _firebase_key() -> Any:
    # One key per process: firebase-admin keeps the certificates it fetched for their max-age.
    from .firebase import SigningKey

    return SigningKey.generate("chalice-realtime-test-key")


@contextlib.contextmanager
def firebase_test_tokens(settings: RealtimeSettings) -> Iterator[RealtimeTokens]:
    """Firebase ID tokens of `settings.firebase_project_id`, verified by the real firebase-admin path."""
    purpose = "realtime_tokens (AUTH_PROVIDER=firebase)"
    need("firebase_admin", '"chalice-realtime[firebase]"', purpose)
    need("jwt", '"chalice-realtime[firebase]"', purpose)
    need("responses", "responses", purpose)
    if not settings.firebase_project_id:
        raise MissingTestDependency(f"{purpose} needs FIREBASE_PROJECT_ID set in the tests' environment")
    from .firebase import TokenFactory, serving_certificates

    key = _firebase_key()
    factory = TokenFactory(settings.firebase_project_id, key)
    with serving_certificates(key, passthru=r".*"):  # every other request goes out as usual
        yield RealtimeTokens(factory.mint)


@contextlib.contextmanager
def oidc_test_tokens(settings: RealtimeSettings) -> Iterator[RealtimeTokens]:
    """Tokens of `settings.oidc_issuer` for its first audience, with a verifier reading a local JWKS."""
    need("jwt", '"chalice-realtime[oidc]"', "realtime_tokens (AUTH_PROVIDER=oidc)")
    from ..oidc import OidcVerifier
    from .oidc import IssuerKey, LocalIssuer, OidcTokens

    key = IssuerKey.rsa("chalice-realtime-test-key")
    issuer = LocalIssuer([key])
    factory = OidcTokens(settings.oidc_issuer, key)
    audience = settings.oidc_audiences[0]

    def mint(user_id: str) -> str:
        if "id" in settings.oidc_token_uses:
            return factory.id_token(user_id, aud=audience)
        return factory.access_token(user_id, client_id=audience)

    verifier = OidcVerifier(
        settings.oidc_issuer,
        settings.oidc_audiences,
        jwks_url=issuer.jwks_url,
        token_uses=settings.oidc_token_uses,
    )
    try:
        yield RealtimeTokens(mint, verifier)
    finally:
        issuer.stop()


def tokens_for(settings: RealtimeSettings) -> contextlib.AbstractContextManager[RealtimeTokens]:
    """The tokens of the provider `settings` name."""
    if settings.auth_provider == "oidc":
        return oidc_test_tokens(settings)
    return firebase_test_tokens(settings)
