"""Fixtures of the integration tests: the local stack, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.localstack import LocalStack, require_local_stack_tools


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """`python -m devserver` on free ports (skipped without Node/firebase-tools, failed under CI=true)."""
    require_local_stack_tools()
    with LocalStack() as stack:
        yield stack
