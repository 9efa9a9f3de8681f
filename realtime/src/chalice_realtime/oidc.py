"""Tokens of any OpenID Connect issuer that publishes its signing keys as a JWKS.

Amazon Cognito user pools, Auth0, Keycloak: `OidcVerifier` checks the
signature against the issuer's published keys, then `iss`, the audience, `exp`, `nbf`,
`iat` and Cognito's `token_use`. PyJWT is imported on first use, like firebase-admin in
`auth.py`: most Lambdas of an app never verify a token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .auth import AuthUnavailable, InvalidToken

if TYPE_CHECKING:
    from jwt import PyJWK, PyJWKClient

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: `none` and HS* (a shared secret, which a public JWKS must never be
# used as) are refused before any key is fetched. PyJWT also binds each key to its own algorithm.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Cognito's `token_use` claim: ID tokens name the app client in `aud`, access tokens in `client_id`.
TOKEN_USES = ("id", "access")
REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
# The key set is re-read this often, so a key the issuer withdrew stops verifying within it.
JWKS_LIFESPAN_SECONDS = 300.0
# A token naming an unknown key refetches the set at most this often (PyJWT's cooldown): a flood of
# made-up `kid`s costs the issuer one request per warm function and period, not one per token.
REFETCH_COOLDOWN_SECONDS = 30.0
# Well inside `$connect`'s 10 s Lambda timeout: an issuer that does not answer means 503, not a hang.
FETCH_TIMEOUT_SECONDS = 5.0
# Clock difference tolerated between the issuer and Lambda for `exp`, `nbf` and `iat`.
CLOCK_SKEW_SECONDS = 10
DISCOVERY_PATH = "/.well-known/openid-configuration"


class OidcVerifier:
    """Turns an OpenID Connect token (ID or access token) into its `sub`.

        verifier = OidcVerifier(
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
            audiences=["4r7q1example0client0id"],
        )
        user_id = verifier.verify(token)

    `audiences` are the accepted values of `aud`, or, for Cognito access tokens (which carry
    `token_use: access` and no `aud`), of `client_id`. `token_uses` limits which Cognito token
    types are accepted; tokens without a `token_use` claim (Auth0, Keycloak) are checked by
    audience alone. The keys come from `jwks_url`, or from the `jwks_uri` of the issuer's
    discovery document when it is not given; they are cached for `lifespan` seconds.
    """

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        *,
        jwks_url: str = "",
        token_uses: Iterable[str] = TOKEN_USES,
        lifespan: float = JWKS_LIFESPAN_SECONDS,
        cooldown: float = REFETCH_COOLDOWN_SECONDS,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.token_uses = frozenset(token_uses)
        self._jwks_url = jwks_url
        self._lifespan = lifespan
        self._cooldown = cooldown
        self._timeout = timeout
        self._client: PyJWKClient | None = None
        self._lock = threading.Lock()
        self._clock = clock
        # When discovery last failed: for a cooldown, tokens are answered AuthUnavailable at once instead of
        # each waiting up to `timeout` for an issuer that just failed.
        self._discovery_failed_at: float | None = None

    def verify(self, token: str) -> str:
        """Return the token's `sub`, or raise `InvalidToken` (refused) or `AuthUnavailable` (the
        issuer's keys cannot be fetched)."""
        if not token:
            raise InvalidToken("no token")
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("not a JWT") from exc
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("signing algorithm not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token names no signing key")
        key = self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                issuer=self.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                # The audience depends on the token's use (below); PyJWT checks only `aud`.
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not yet valid") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token has no {exc.claim!r} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("bad signature") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        self._check_audience(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no subject")
        return subject

    def _check_audience(self, claims: dict[str, Any]) -> None:
        token_use = claims.get("token_use")
        if token_use is not None and not (isinstance(token_use, str) and token_use in self.token_uses):
            raise InvalidToken("token use not accepted")
        if token_use == "access":  # noqa: S105 (a claim value, not a password)
            # Cognito access tokens carry the app client in `client_id` and no `aud`.
            client_id = claims.get("client_id")
            if not (isinstance(client_id, str) and client_id in self.audiences):
                raise InvalidToken("wrong audience (client_id)")
            return
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if not any(isinstance(name, str) and name in self.audiences for name in named):
            raise InvalidToken("wrong audience")

    def _signing_key(self, kid: str) -> PyJWK:
        import jwt

        client = self._jwks_client()
        try:
            client.get_signing_keys()  # the cached set; fetched when missing or older than the lifespan
            try:
                # An unknown `kid` refetches the set once (rotation), at most once per cooldown.
                return client.get_signing_key(kid)
            except jwt.PyJWKClientConnectionError:
                raise
            except jwt.PyJWKClientError as exc:
                raise InvalidToken("unknown signing key") from exc
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            # Unreachable, an error status, not JSON, no usable key: the issuer's problem, not the token's.
            logger.error("cannot fetch the token signing keys: %s", str(exc)[:200])
            raise AuthUnavailable("cannot fetch the token signing keys") from exc

    def _jwks_client(self) -> PyJWKClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from jwt import PyJWKClient

                    self._client = PyJWKClient(
                        self._jwks_url or self._discover_jwks_url(),
                        cache_keys=False,  # its per-kid cache never expires: a withdrawn key would stay
                        lifespan=self._lifespan,
                        cooldown_duration=self._cooldown,
                        timeout=self._timeout,
                    )
        return self._client

    def _discover_jwks_url(self) -> str:
        """The `jwks_uri` of the issuer's discovery document (fetched once per process; after a failure, not
        again for the cooldown)."""
        failed_at = self._discovery_failed_at
        if failed_at is not None and self._clock() - failed_at < self._cooldown:
            raise AuthUnavailable("the issuer's discovery document could not be fetched moments ago")
        try:
            jwks_url = self._fetch_jwks_url()
        except AuthUnavailable:
            self._discovery_failed_at = self._clock()
            raise
        self._discovery_failed_at = None
        return jwks_url

    def _fetch_jwks_url(self) -> str:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            document = json.loads(fetch(url, self._timeout))
        except (OSError, ValueError) as exc:
            logger.error("cannot fetch the issuer's discovery document %s: %s", url, str(exc)[:200])
            raise AuthUnavailable("cannot fetch the issuer's discovery document") from exc
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0, 4.3: the document must name the issuer it was fetched for.
            logger.error("the discovery document at %s does not name the issuer %s", url, self.issuer)
            raise AuthUnavailable("the issuer's discovery document names another issuer")
        jwks_url = document.get("jwks_uri")
        problem = url_problem(jwks_url) if isinstance(jwks_url, str) else "it is missing"
        if problem:
            logger.error("the discovery document at %s has no usable jwks_uri: %s", url, problem)
            raise AuthUnavailable("the issuer's discovery document has no usable jwks_uri")
        assert isinstance(jwks_url, str)
        return jwks_url


def fetch(url: str, timeout: float) -> bytes:
    """The body of a 200 answer to GET `url`, redirects not followed; `OSError` otherwise."""
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect())
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (https, see url_problem)
    with opener.open(request, timeout=timeout) as answer:
        return bytes(answer.read())


def url_problem(url: str) -> str:
    """Why `url` cannot name an issuer or its keys ('' if it can): HTTPS, or HTTP to this machine only."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it is not a URL"
    if parts.scheme == "https" and parts.hostname:
        return ""
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return ""  # a local issuer (Keycloak in a container, tests): nothing crosses a network
    return "it must be an https:// URL (http:// only for 127.0.0.1 or localhost)"
