"""The one page helper every listing uses: `?limit=`, cursors, and the fetch-one-more rule.

Against moto's DynamoDB (the messages table's `pk`/`sk` keys); the routes' own paging
tests (jobs, chat, payments) show the same rule through REST.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from chalice_realtime.testing.dynamodb import CountingDynamoDB

from chalicelib.errors import RequestRefused
from chalicelib.pagination import (
    DEFAULT_LIMIT,
    BadCursor,
    InvalidPage,
    Listing,
    Page,
    encode_cursor,
    parse_limit,
    query_page,
)
from tests.conftest import TEST_ENV

TABLE = TEST_ENV["MESSAGES_TABLE"]
MINE = {"pk": {"S": "list#alice"}}
THEIRS = {"pk": {"S": "list#bob"}}


def fill(dynamodb: Any, partition: dict[str, Any], count: int) -> None:
    for n in range(count):
        dynamodb.put_item(TableName=TABLE, Item={**partition, "sk": {"S": f"item#{n:03d}"}})


def page_of(
    dynamodb: Any, *, limit: str | None = None, cursor: str | None = None, **options: Any
) -> Page[str]:
    query = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": MINE["pk"]},
        "ScanIndexForward": False,
    }
    page = query_page(dynamodb, query, Listing(("pk", "sk"), **options), MINE, limit=limit, cursor=cursor)
    return page.map(lambda item: str(item["sk"]["S"]))


def every_page(dynamodb: Any, limit: str) -> list[tuple[str, ...]]:
    pages, cursor = [], None
    while True:
        page = page_of(dynamodb, limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.fixture
def dynamodb(aws: dict[str, Any]) -> Any:
    return aws["dynamodb"]


def test_a_full_last_page_has_no_cursor(dynamodb: Any) -> None:
    fill(dynamodb, MINE, 4)
    assert every_page(dynamodb, "2") == [("item#003", "item#002"), ("item#001", "item#000")]
    assert every_page(dynamodb, "4") == [("item#003", "item#002", "item#001", "item#000")]


def test_one_more_item_gives_a_cursor_to_a_page_holding_it(dynamodb: Any) -> None:
    fill(dynamodb, MINE, 3)
    assert every_page(dynamodb, "2") == [("item#002", "item#001"), ("item#000",)]


def test_an_empty_listing_is_one_empty_page(dynamodb: Any) -> None:
    assert page_of(dynamodb) == Page((), None)


def test_each_page_is_one_query_asking_for_one_item_more(dynamodb: Any) -> None:
    fill(dynamodb, MINE, 5)
    counting = CountingDynamoDB(dynamodb)
    asked: list[int] = []
    original_query = dynamodb.query

    class Recording:
        def query(self, **kwargs: Any) -> Any:
            asked.append(kwargs["Limit"])
            return original_query(**kwargs)

    counting.inner = Recording()
    page_of(counting, limit="3")
    assert counting.calls == ["query"]
    assert asked == [4]


def test_a_page_cut_short_by_dynamodb_still_has_a_cursor(dynamodb: Any) -> None:
    fill(dynamodb, MINE, 5)
    # DynamoDB's 1 MB limit, as a Limit below ours: fewer items come back, with a LastEvaluatedKey.
    short = CountingDynamoDB(dynamodb, page_size=2)
    page = page_of(short, limit="3")
    assert page.items == ("item#004", "item#003")
    assert page.next_cursor is not None
    assert page_of(dynamodb, limit="3", cursor=page.next_cursor).items == ("item#002", "item#001", "item#000")


def test_a_cursor_for_another_partition_is_refused(dynamodb: Any) -> None:
    fill(dynamodb, THEIRS, 3)
    theirs = encode_cursor({**THEIRS, "sk": {"S": "item#002"}})
    with pytest.raises(BadCursor, match="invalid cursor"):
        page_of(dynamodb, cursor=theirs)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"{not json").decode(),
        encode_cursor({**MINE}),  # a key without its sort key
        encode_cursor({**MINE, "sk": {"S": "x"}, "extra": {"S": "y"}}),
        encode_cursor({**MINE, "sk": {"B": "eA=="}}),
        encode_cursor({**MINE, "sk": {"S": "x" * 2000}}),
        encode_cursor({**MINE, "sk": {"S": "x", "N": "1"}}),
    ],
)
def test_a_cursor_this_api_did_not_make_is_refused(dynamodb: Any, cursor: str) -> None:
    with pytest.raises(BadCursor):
        page_of(dynamodb, cursor=cursor)


def test_a_listing_may_refuse_a_well_formed_start(dynamodb: Any) -> None:
    cursor = encode_cursor({**MINE, "sk": {"S": "other#1"}})
    with pytest.raises(BadCursor):
        page_of(dynamodb, cursor=cursor, accepts_start=lambda key: key["sk"]["S"].startswith("item#"))


@pytest.mark.parametrize(
    ("raw", "limit"), [(None, DEFAULT_LIMIT), ("", DEFAULT_LIMIT), ("1", 1), ("100", 100)]
)
def test_limits_from_1_to_100_are_taken(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "101", "-1", "2.5", "ten", " 5", "1e2", "٣", "²", "5" * 5000])
def test_other_limits_are_refused_saying_the_range(raw: str) -> None:
    with pytest.raises(InvalidPage, match="limit must be an integer from 1 to 100"):
        parse_limit(raw)


def test_page_errors_are_refused_input() -> None:
    # app.py answers every RequestRefused with a 400 carrying its message.
    assert issubclass(InvalidPage, RequestRefused)
    assert issubclass(BadCursor, InvalidPage)


def test_a_page_shows_its_items_under_the_listing_name() -> None:
    class Shown:
        def __init__(self, n: int) -> None:
            self.n = n

        def to_json(self) -> dict[str, int]:
            return {"n": self.n}

    body = Page((Shown(1), Shown(2)), "abc").to_json("things")
    assert body == {"things": [{"n": 1}, {"n": 2}], "next_cursor": "abc"}
    assert json.loads(json.dumps(body)) == body
