"""Verification of Firebase ID tokens through firebase-admin.

`firebase_admin` is imported on first use: it costs about 120 ms, and most
Lambdas of the app (the job runner, the Stripe webhook) never verify a token.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

BEARER_PREFIX = "bearer "


class InvalidToken(Exception):
    """The token is missing, malformed, expired, forged or revoked."""


class AuthUnavailable(Exception):
    """Tokens cannot be checked right now (certificates unreachable): retry later."""


class TokenVerifier:
    """Turns a Firebase ID token into the uid it was issued to.

    Uses `firebase_admin.auth.verify_id_token`: RS256 signature against Google's
    certificates (fetched once and cached per their `Cache-Control`, so warm
    invocations verify offline), audience and issuer of the project, expiry.
    No service-account key is needed: only the project id.

        verifier = TokenVerifier("my-project")
        uid = verifier.verify(id_token)
    """

    def __init__(self, project_id: str, *, check_revoked: bool = False) -> None:
        self._project_id = project_id
        self._check_revoked = check_revoked
        self._app: Any = None
        self._lock = threading.Lock()

    def verify(self, token: str) -> str:
        """Return the token's uid or raise `InvalidToken` with the reason."""
        if not token:
            raise InvalidToken("no token")
        from firebase_admin import auth

        try:
            claims = auth.verify_id_token(token, app=self._firebase_app(), check_revoked=self._check_revoked)
        except (ValueError, auth.InvalidIdTokenError, auth.UserDisabledError) as exc:
            raise InvalidToken(_reason(exc, token)) from exc
        except auth.CertificateFetchError as exc:
            raise AuthUnavailable("cannot fetch the token signing certificates") from exc
        uid = claims.get("uid")
        if not isinstance(uid, str) or not uid:
            raise InvalidToken("token has no subject")
        return uid

    def _firebase_app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = _initialize_app(self._project_id)
        return self._app


def bearer_token(header_value: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or ''."""
    if not header_value or not header_value[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        return ""
    return header_value[len(BEARER_PREFIX) :].strip()


def _initialize_app(project_id: str) -> Any:
    import firebase_admin
    import google.auth.credentials
    from firebase_admin import credentials

    if not project_id:
        raise RuntimeError("FIREBASE_PROJECT_ID is not set: tokens cannot be verified")

    class _AnonymousCredential(credentials.Base):
        """Verifying ID tokens needs public certificates only, no service account."""

        def get_credential(self) -> google.auth.credentials.Credentials:
            return google.auth.credentials.AnonymousCredentials()

    name = f"realtime-{project_id}"
    try:
        return firebase_admin.get_app(name)
    except ValueError:
        return firebase_admin.initialize_app(_AnonymousCredential(), {"projectId": project_id}, name=name)


def _reason(exc: Exception, token: str) -> str:
    """The failed check (expired, audience, ...) in a few words, never the token itself."""
    text = str(exc).split(". ", 1)[0][:200]
    if not text or any(part and part in text for part in token.split(".")):
        return type(exc).__name__
    return text
