"""Checks for identifiers that come from outside and end up in DynamoDB keys or in frames."""

from __future__ import annotations

import re

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def validate_user_id(value: object, field: str = "user id") -> str:
    """Return `value` if it is a Firebase-style uid (1-128 of A-Z a-z 0-9 _ -), else raise `ValueError`."""
    if not isinstance(value, str) or not USER_ID_PATTERN.fullmatch(value):
        raise ValueError(f"{field} must be 1-128 characters of letters, digits, '_' or '-'")
    return value


EVENT_KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9.:-]{0,63}")


def validate_event_key(event_key: object) -> str:
    """Return `event_key` if it matches `^[a-z0-9][a-z0-9.:-]{0,63}$`, else raise `ValueError`."""
    if not isinstance(event_key, str) or not EVENT_KEY_PATTERN.fullmatch(event_key):
        raise ValueError(f"invalid event key {event_key!r}: expected ^[a-z0-9][a-z0-9.:-]{{0,63}}$")
    return event_key


TOPIC_PATTERN = re.compile(r"[a-z0-9][a-z0-9:._-]{0,127}")


def validate_topic(topic: object) -> str:
    """Return `topic` if it matches `^[a-z0-9][a-z0-9:._-]{0,127}$` (`room:42`), else raise `ValueError`."""
    if not isinstance(topic, str) or not TOPIC_PATTERN.fullmatch(topic):
        raise ValueError(f"invalid topic {topic!r}: expected ^[a-z0-9][a-z0-9:._-]{{0,127}}$")
    return topic
