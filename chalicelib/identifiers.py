"""Checks for identifiers that come from outside and end up in DynamoDB keys or in notify()."""

from __future__ import annotations

import re

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def validate_user_id(value: object, field: str = "user id") -> str:
    """Return `value` if it is a Firebase-style uid (1-128 of A-Z a-z 0-9 _ -), else raise `ValueError`."""
    if not isinstance(value, str) or not USER_ID_PATTERN.fullmatch(value):
        raise ValueError(f"{field} must be 1-128 characters of letters, digits, '_' or '-'")
    return value
