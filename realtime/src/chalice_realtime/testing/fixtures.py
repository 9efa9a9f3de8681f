"""Lower-level fixtures of the testing kit, for a test suite that builds its own: opt in from a
top-level `conftest.py` with

    pytest_plugins = ["chalice_realtime.testing.fixtures"]

(unlike `chalice_realtime.testing.plugin`, not registered by installing the package: its names are
plain). The package's own tests use them, and so do the app's beside it.

- Firebase (the `[firebase]` extra; `firebase_certs` also `pip install responses`): `signing_key`,
  `attacker_key` (another key, for forged tokens), `firebase_certs` (the signing key's certificate
  served where firebase-admin fetches Google's; calls to loopback servers go through);
- OIDC (the `[oidc]` extra): `issuer_key`, `oidc_attacker_key`, `local_issuer` (a Cognito-shaped
  issuer on a loopback port), `oidc_tokens` (its token factory);
- `management_api_url`: moto's server on a loopback port (`pip install "moto[server]"`), the
  endpoint a transport posts frames to; `faulty_backend()` of `chalice_realtime.testing.management_api`
  sees them.

Each library is imported by the fixture that needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# ---------------------------------------------------------------- Firebase ID tokens ([firebase])


@pytest.fixture(scope="session")
def signing_key() -> Any:
    """The key the test tokens are signed with (a `firebase.SigningKey`)."""
    from .firebase import SigningKey

    return SigningKey.generate("test-kid-1")


@pytest.fixture(scope="session")
def attacker_key() -> Any:
    """A key the app does not trust, for forged tokens."""
    from .firebase import SigningKey

    return SigningKey.generate("attacker-kid")


@pytest.fixture
def firebase_certs(signing_key: Any) -> Iterator[Any]:
    """Serve the test key's certificate where firebase-admin downloads Google's."""
    from .firebase import serving_certificates

    with serving_certificates(signing_key) as mock:
        yield mock


# ---------------------------------------------------------------- an OpenID Connect issuer ([oidc])


@pytest.fixture(scope="session")
def issuer_key() -> Any:
    from .oidc import IssuerKey

    return IssuerKey.rsa("oidc-kid-1")


@pytest.fixture(scope="session")
def oidc_attacker_key() -> Any:
    from .oidc import IssuerKey

    return IssuerKey.rsa("oidc-attacker-kid")


@pytest.fixture
def local_issuer(issuer_key: Any) -> Iterator[Any]:
    """A Cognito-shaped issuer (discovery document and JWKS) on a free loopback port, fresh per test."""
    from .oidc import LocalIssuer

    issuer = LocalIssuer([issuer_key])
    yield issuer
    issuer.stop()


@pytest.fixture
def oidc_tokens(local_issuer: Any, issuer_key: Any) -> Any:
    from .oidc import OidcTokens

    return OidcTokens(local_issuer.issuer, issuer_key)


# ---------------------------------------------------------------- the Management API (moto's server)


@pytest.fixture(scope="session")
def management_api_url() -> Iterator[str]:
    """moto's server on a free loopback port, standing in for API Gateway's Management API; it shares
    its backends with moto in-process, so `faulty_backend()` sees the frames posted to it."""
    from .management_api import serving_moto

    with serving_moto() as url:
        yield url
