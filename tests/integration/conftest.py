"""The integration tests share `local_stack` (tests/conftest.py), started once per test session.

`oidc_stack` is a local stack started with `AUTH_PROVIDER=oidc`, verifying the tokens of `oidc_issuer`
(a loopback issuer): one per module that uses it, so no module sees another's connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice_realtime.testing.oidc import CLIENT_ID, IssuerKey, LocalIssuer

from testsupport.localstack import LocalStack, require_local_stack_tools


@pytest.fixture(scope="module")
def oidc_issuer() -> Iterator[LocalIssuer]:
    local = LocalIssuer([IssuerKey.rsa("oidc-stack-kid")])
    yield local
    local.stop()


@pytest.fixture(scope="module")
def oidc_stack(oidc_issuer: LocalIssuer) -> Iterator[LocalStack]:
    require_local_stack_tools()
    env = {
        "AUTH_PROVIDER": "oidc",
        "OIDC_ISSUER": oidc_issuer.issuer,
        "OIDC_AUDIENCE": CLIENT_ID,
        "OIDC_TOKEN_USE": "id",
    }
    with LocalStack(extra_env=env) as stack:
        yield stack
