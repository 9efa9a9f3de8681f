"""Opaque page cursors for DynamoDB Queries exposed over REST.

A cursor is the Query's `LastEvaluatedKey`, JSON in URL-safe base64. It is
checked against the caller's partition before use, so a cursor can never widen
a query beyond the caller's own items, and a malformed one is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class BadCursor(ValueError):
    """The cursor was not made by this API for this query."""


def encode_cursor(last_evaluated_key: dict[str, Any] | None) -> str | None:
    """`LastEvaluatedKey` -> cursor string, or None on the last page."""
    if not last_evaluated_key:
        return None
    raw = json.dumps(last_evaluated_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, *, key_attributes: set[str], fixed: dict[str, Any]
) -> dict[str, Any] | None:
    """Cursor -> `ExclusiveStartKey`, insisting on the query's key shape and fixed partition.

    decode_cursor(c, key_attributes={"owner", "job_id"}, fixed={"owner": {"S": uid}})
    """
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("invalid cursor") from exc
    if not isinstance(key, dict) or set(key) != key_attributes:
        raise BadCursor("invalid cursor")
    for value in key.values():
        if not isinstance(value, dict) or len(value) != 1:
            raise BadCursor("invalid cursor")
        ((kind, scalar),) = value.items()
        if kind not in ("S", "N") or not isinstance(scalar, str) or len(scalar) > 1024:
            raise BadCursor("invalid cursor")
    for name, value in fixed.items():
        if key.get(name) != value:
            raise BadCursor("invalid cursor")
    return key


def parse_limit(raw: str | None) -> int:
    """`?limit=` -> 1..100 (default 20); anything else is a `ValueError` with the reason."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)
