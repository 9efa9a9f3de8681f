"""Who holds a token: the `TokenVerifier` interface and its default, Firebase ID tokens.

`firebase_admin` is imported on first use: it costs about 120 ms, and most
Lambdas of an app (a job runner, a webhook) never verify a token.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Protocol

logger = logging.getLogger(__name__)

BEARER_PREFIX = "bearer "
# Clock difference tolerated between Google and Lambda for `iat` and `exp` (as OidcVerifier's): a fresh
# token whose `iat` is a few seconds ahead of this clock is not refused (and its Deny cached).
CLOCK_SKEW_SECONDS = 10
# With this variable set, firebase-admin accepts tokens it never checked the signature of.
EMULATOR_VARIABLE = "FIREBASE_AUTH_EMULATOR_HOST"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, forged or revoked."""


class AuthUnavailable(Exception):
    """Tokens cannot be checked right now (certificates unreachable): retry later."""


class TokenVerifier(Protocol):
    """Turns a bearer token into the id of the user it was issued to.

    `$connect` and the REST authorizer both ask it; any identity provider whose
    tokens API Gateway clients can carry fits behind it.
    """

    def verify(self, token: str) -> str:
        """Return the token's user id, or raise `InvalidToken` (refused, 401) or
        `AuthUnavailable` (cannot check now, 503)."""
        ...


class FirebaseVerifier:
    """Turns a Firebase ID token into the uid it was issued to.

    Uses `firebase_admin.auth.verify_id_token`: RS256 signature against Google's
    certificates (fetched once and cached per their `Cache-Control`, so warm
    invocations verify offline), audience and issuer of the project, expiry.
    No service-account key is needed: only the project id.

        verifier = FirebaseVerifier("my-project")
        uid = verifier.verify(id_token)

    Unless `allow_emulator` (the local stack), it verifies nothing while `FIREBASE_AUTH_EMULATOR_HOST`
    is set, whatever the stage says: firebase-admin would accept unsigned tokens.
    """

    def __init__(self, project_id: str, *, check_revoked: bool = False, allow_emulator: bool = False) -> None:
        self._project_id = project_id
        self._check_revoked = check_revoked
        self._allow_emulator = allow_emulator
        self._app: Any = None
        self._lock = threading.Lock()

    def verify(self, token: str) -> str:
        """Return the token's uid or raise `InvalidToken` with the reason."""
        if not token:
            raise InvalidToken("no token")
        # firebase-admin reads the variable from the process environment at each verification: so do we.
        if os.environ.get(EMULATOR_VARIABLE) and not self._allow_emulator:
            logger.error("%s is set: firebase-admin would take unsigned tokens; refusing", EMULATOR_VARIABLE)
            raise AuthUnavailable(f"{EMULATOR_VARIABLE} is set outside the local stack")
        import google.auth.exceptions
        from firebase_admin import auth, exceptions

        try:
            claims = auth.verify_id_token(
                token,
                app=self._firebase_app(),
                check_revoked=self._check_revoked,
                clock_skew_seconds=CLOCK_SKEW_SECONDS,
            )
        except auth.UserNotFoundError as exc:
            # Revocation checks look the user up: the account was deleted after the token was issued.
            raise InvalidToken("the user no longer exists") from exc
        except (ValueError, auth.InvalidIdTokenError, auth.UserDisabledError) as exc:
            raise InvalidToken(_reason(exc, token)) from exc
        except auth.CertificateFetchError as exc:
            raise AuthUnavailable("cannot fetch the token signing certificates") from exc
        except (exceptions.FirebaseError, google.auth.exceptions.GoogleAuthError) as exc:
            # Only the revocation check's user lookup gets here (no Google credential, no permission,
            # Firebase unreachable): refuse, never let an unchecked token through.
            logger.error("cannot check the token for revocation: %s: %s", type(exc).__name__, str(exc)[:200])
            raise AuthUnavailable("cannot check whether the token was revoked") from exc
        uid = claims.get("uid")
        if not isinstance(uid, str) or not uid:
            raise InvalidToken("token has no subject")
        return uid

    def _firebase_app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = _initialize_app(self._project_id, admin=self._check_revoked)
        return self._app


def bearer_token(header_value: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or ''."""
    if not header_value or not header_value[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        return ""
    return header_value[len(BEARER_PREFIX) :].strip()


def _initialize_app(project_id: str, *, admin: bool = False) -> Any:
    import firebase_admin
    import google.auth.credentials
    from firebase_admin import credentials

    if not project_id:
        raise RuntimeError("FIREBASE_PROJECT_ID is not set: tokens cannot be verified")

    class _AnonymousCredential(credentials.Base):
        """Verifying ID tokens needs public certificates only, no service account."""

        def get_credential(self) -> google.auth.credentials.Credentials:
            return google.auth.credentials.AnonymousCredentials()

    credential: credentials.Base = _AnonymousCredential()
    name = f"realtime-{project_id}"
    if admin:
        # Revocation checks look the user up through the Admin API, which needs a Google credential:
        # Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS naming a workload identity
        # federation config or a service-account key), loaded on first use. The Auth Emulator needs none.
        credential = credentials.ApplicationDefault()
        name += "-admin"
    try:
        return firebase_admin.get_app(name)
    except ValueError:
        return firebase_admin.initialize_app(credential, {"projectId": project_id}, name=name)


def _reason(exc: Exception, token: str) -> str:
    """The failed check (expired, audience, ...) in a few words, never the token itself."""
    text = str(exc).split(". ", 1)[0][:200]
    if not text or any(part and part in text for part in token.split(".")):
        return type(exc).__name__
    return text
