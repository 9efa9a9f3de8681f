"""One way to page a listing over REST: `?limit=`, an opaque `?cursor=`, and `next_cursor`.

Every listing (jobs, a conversation, payments) is one DynamoDB Query per page over
the caller's own partition, through `query_page`:

- `?limit=` is 1-100, 20 by default; anything else is a 400 saying so.
- A cursor is the key of the last item shown, JSON in URL-safe base64. It is
  checked against the listing's key shape and the caller's partition before use,
  so a cursor can never widen a query beyond the caller's own items, and a
  malformed one is a 400.
- The Query asks for one item more than the page shows: when it comes back, there
  is a next page; when it does not, the last page has no cursor (never a cursor
  leading to an empty page).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.errors import RequestRefused

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_KEY_VALUE_CHARS = 1024

Item = dict[str, Any]  # a DynamoDB item as the low-level client returns it: {"name": {"S": "..."}}


class InvalidPage(RequestRefused):
    """`?limit=` or `?cursor=` is not one this listing accepts (a 400)."""


class BadCursor(InvalidPage):
    """The cursor was not made by this API for this query."""


def _any_start(key: Item) -> bool:
    return True


@dataclass(frozen=True)
class Listing:
    """The key shape of one listing's Query, which each of its cursors must have.

    JOBS_OF_OWNER = Listing(("owner", "job_id"), accepts_start=lambda key: is_job_id(key["job_id"]["S"]))
    """

    key_attributes: tuple[str, ...]  # what a key of the Query holds: the table's key, and the index's
    accepts_start: Callable[[Item], bool] = _any_start  # a check beyond that shape


class ShownAsJson(Protocol):
    def to_json(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Page[T]:
    """One page of a listing, and the cursor of the next one (None on the last page)."""

    items: tuple[T, ...]
    next_cursor: str | None

    def map[U](self, convert: Callable[[T], U]) -> Page[U]:
        """The same page with each item converted (a DynamoDB item -> the feature's record)."""
        return Page(tuple(convert(item) for item in self.items), self.next_cursor)

    def to_json(self: Page[ShownAsJson], name: str) -> dict[str, Any]:
        """The REST body: `{name: [item.to_json(), ...], "next_cursor": ...}`."""
        return {name: [item.to_json() for item in self.items], "next_cursor": self.next_cursor}


def query_page(
    dynamodb: DynamoDBClient,
    query: Mapping[str, Any],
    listing: Listing,
    partition: Mapping[str, Any],
    *,
    limit: str | None,
    cursor: str | None,
) -> Page[Item]:
    """One page of `query` (a Query's arguments, without `Limit` and `ExclusiveStartKey`).

    `listing` says what a key of this Query holds, `partition` is the caller's partition
    key, which every cursor must carry. `InvalidPage` (a 400) for a bad `limit` or `cursor`.

        query_page(dynamodb, {"TableName": "jobs", "KeyConditionExpression": "#o = :o", ...},
                   JOBS_OF_OWNER, {"owner": {"S": "alice"}}, limit="10", cursor=None)
        # Page(items=(...10 items), next_cursor='eyJ...')
    """
    page_size = parse_limit(limit)
    start = decode_cursor(cursor, key_attributes=set(listing.key_attributes), fixed=partition)
    if start is not None and not listing.accepts_start(start):
        raise BadCursor("invalid cursor")
    arguments: dict[str, Any] = {**query, "Limit": page_size + 1}
    if start is not None:
        arguments["ExclusiveStartKey"] = start
    response = dynamodb.query(**arguments)
    items: list[Item] = list(response.get("Items", []))
    if len(items) > page_size:
        items = items[:page_size]
        next_cursor = encode_cursor({name: items[-1][name] for name in listing.key_attributes})
    else:
        # Fewer items but a LastEvaluatedKey: the 1 MB page limit cut the Query short.
        next_cursor = encode_cursor(response.get("LastEvaluatedKey"))
    return Page(tuple(items), next_cursor)


def parse_limit(raw: str | None) -> int:
    """`?limit=` -> 1..100 (default 20); anything else is `InvalidPage` with the reason."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses, and "٣", which it reads as 3.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 3 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidPage(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    """A Query key -> cursor string, or None when there is none (the last page)."""
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, key_attributes: set[str], fixed: Mapping[str, Any]) -> Item | None:
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
        if kind not in ("S", "N") or not isinstance(scalar, str) or len(scalar) > MAX_KEY_VALUE_CHARS:
            raise BadCursor("invalid cursor")
    for name, value in fixed.items():
        if key.get(name) != value:
            raise BadCursor("invalid cursor")
    return key
