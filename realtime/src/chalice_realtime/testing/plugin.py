"""The pytest plugin of chalice-realtime's testing kit, registered through the `pytest11` entry point.

Fixtures (documented in the package README and docs/adopt.md, "Testing your app"):

- `realtime_frames`: the core installed with a recording transport and the connections table in moto:
  `.connect(uid)`, `.for_user(uid)`, `.for_connection(cid)`, `.clear()`;
- `realtime_tokens`: signed test tokens the configured provider accepts: `.mint(uid)`, `.headers(uid)`,
  `.websocket_connect(client, uid, cid)`.

Nothing heavy is imported here: moto, responses, firebase-admin and PyJWT are imported by the fixture
that uses them, which fails with the `pip install` that brings them when they are missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..runtime import Realtime, use
from ..settings import RealtimeSettings

if TYPE_CHECKING:
    from .frames import RealtimeFrames
    from .tokens import RealtimeTokens


def _settings() -> RealtimeSettings:
    # The tests' environment, read afresh (the process-wide settings are cached at first use).
    return RealtimeSettings.from_env(os.environ)


@pytest.fixture
def realtime_tokens(request: pytest.FixtureRequest) -> Iterator[RealtimeTokens]:
    """Signed tokens for the provider `AUTH_PROVIDER` names (Firebase by default), accepted by
    `realtime_auth` and `$connect`: `realtime_tokens.headers("uid-1")`."""
    from .tokens import tokens_for

    frames: RealtimeFrames | None = None
    if "realtime_frames" in request.fixturenames:
        # moto first: the certificates are then served by a mock that sits in front of moto's own.
        frames = request.getfixturevalue("realtime_frames")
    settings = _settings()
    with tokens_for(settings) as tokens:
        if tokens.verifier is None:
            yield tokens
        elif frames is not None:
            frames.install(verifier=tokens.verifier)
            yield tokens
        else:
            # Without `realtime_frames`, the core still has to verify with the test issuer's keys.
            use(Realtime(settings, verifier=tokens.verifier))
            yield tokens
            use(None)


@pytest.fixture
def realtime_frames() -> Iterator[RealtimeFrames]:
    """The core with a recording Management API and the connections table in moto, installed for the
    blueprint and `notify()`: `realtime_frames.for_user("uid-1") == ["orders-updated"]`."""
    from .tokens import need

    moto = need("moto", "moto", "realtime_frames (the connections table in moto)")
    import boto3

    from .frames import RealtimeFrames, RecordingTransport
    from .store import create_connections_table

    settings = _settings()
    with moto.mock_aws():
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        dynamodb = boto3.client("dynamodb", region_name=region)
        if settings.connections_table not in dynamodb.list_tables()["TableNames"]:
            create_connections_table(dynamodb, settings.connections_table)
        frames = RealtimeFrames(RecordingTransport(), settings, dynamodb)
        frames.install()
        try:
            yield frames
        finally:
            use(None)
