"""Authorization, table-driven over every REST route: what alice owns, mallory can neither read nor change.

Alice owns one of every kind of resource (jobs, a conversation with carol and an unread count from
her, payments recorded from signed Stripe events). For each route of `app.py`, the table below
says how mallory, a signed-in user, tries to reach alice's data through it, and what she must
get: 404 for alice's ids, 400 for alice's page cursors, and for the routes keyed by the caller
(`/messages?with=`, `/messages/unread-count`, `/me`, ...) only her own data. After every probe,
alice's view is byte-for-byte what it was and none of her connections heard anything.

The route list comes from `app.routes`: a route that is neither in `OWNER_CHECKS` nor in `PUBLIC`
fails `test_every_route_is_in_the_table`, so a new route cannot ship without an owner check here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice.test import Client
from chalice_realtime.connections import Connection
from chalice_realtime.testing.firebase import TokenFactory

from app import app
from tests.conftest import TEST_ENV
from testsupport.api import RestApi as Api
from testsupport.stripe_events import build_test_event, signed_delivery

ALICE, MALLORY, CAROL = "alice", "mallory", "carol"


@dataclass
class World:
    """Alice's resources, created through the API itself."""

    job_ids: list[str] = field(default_factory=list)
    jobs_cursor: str = ""
    messages_cursor: str = ""
    payments_cursor: str = ""
    room_id: str = ""  # alice's, with carol a member
    rooms_cursor: str = ""
    room_messages_cursor: str = ""


def alices_view(api: Api, world: World) -> dict[str, Any]:
    """Everything alice can see of her own data (what no probe of mallory may change)."""
    return {
        "jobs": api.call(ALICE, "GET", "/jobs"),
        **{f"job {job_id}": api.call(ALICE, "GET", f"/jobs/{job_id}") for job_id in world.job_ids},
        "conversation": api.call(ALICE, "GET", f"/messages?with={CAROL}"),
        "unread": api.call(ALICE, "GET", "/messages/unread-count"),
        "payments": api.call(ALICE, "GET", "/payments"),
        "me": api.call(ALICE, "GET", "/me"),
        "rooms": api.call(ALICE, "GET", "/rooms"),
        "room": api.call(ALICE, "GET", f"/rooms/{world.room_id}"),
        "room messages": api.call(ALICE, "GET", f"/rooms/{world.room_id}/messages"),
        "room presence": api.call(ALICE, "GET", f"/rooms/{world.room_id}/presence"),
    }


# ---------------------------------------------------------------- the table

Probe = Callable[[Api, World], None]


def probe_me(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", "/me") == (200, {"user_id": MALLORY})


def probe_submit_job(api: Api, world: World) -> None:
    # Fields naming another owner are refused, never honoured.
    for body in (
        {"kind": "report", "params": {"seconds": 1}, "owner": ALICE},
        {"kind": "report", "params": {"seconds": 1, "owner": ALICE}},
    ):
        status, _ = api.call(MALLORY, "POST", "/jobs", body)
        assert status == 400
    status, created = api.call(MALLORY, "POST", "/jobs", {"kind": "report", "params": {"seconds": 1}})
    assert status == 202
    assert api.call(ALICE, "GET", f"/jobs/{created['job_id']}")[0] == 404  # it is mallory's


def probe_list_jobs(api: Api, world: World) -> None:
    status, page = api.call(MALLORY, "GET", "/jobs")
    assert status == 200
    assert not {job["job_id"] for job in page["jobs"]} & set(world.job_ids)
    assert api.call(MALLORY, "GET", f"/jobs?limit=1&cursor={world.jobs_cursor}")[0] == 400


def probe_get_job(api: Api, world: World) -> None:
    for job_id in world.job_ids:
        status, body = api.call(MALLORY, "GET", f"/jobs/{job_id}")
        assert (status, body) == (404, {"Code": "NotFoundError", "Message": "job not found"})


def probe_cancel_job(api: Api, world: World) -> None:
    for job_id in world.job_ids:
        status, body = api.call(MALLORY, "POST", f"/jobs/{job_id}/cancel")
        assert (status, body) == (404, {"Code": "NotFoundError", "Message": "job not found"})


def probe_send_message(api: Api, world: World) -> None:
    # A forged sender is ignored: the message is mallory's, in mallory's conversation with carol.
    status, sent = api.call(MALLORY, "POST", "/messages", {"to": CAROL, "text": "hi", "from": ALICE})
    assert status == 201
    assert (sent["from"], sent["to"]) == (MALLORY, CAROL)


def probe_list_messages(api: Api, world: World) -> None:
    # Keyed by the caller: `with=carol` is mallory's conversation with carol, never alice's.
    status, page = api.call(MALLORY, "GET", f"/messages?with={CAROL}")
    assert status == 200
    assert all(MALLORY in (m["from"], m["to"]) for m in page["messages"])
    assert api.call(MALLORY, "GET", f"/messages?with={ALICE}") == (200, {"messages": [], "next_cursor": None})
    cursor = world.messages_cursor
    assert api.call(MALLORY, "GET", f"/messages?with={CAROL}&limit=1&cursor={cursor}")[0] == 400
    assert api.call(MALLORY, "GET", f"/messages?with={ALICE}&limit=1&cursor={cursor}")[0] == 400


def probe_unread_count(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", "/messages/unread-count") == (200, {"unread": 0, "by_user": {}})


def probe_mark_read(api: Api, world: World) -> None:
    # Keyed by the caller: mallory can only reset her own counter for carol.
    assert api.call(MALLORY, "POST", "/messages/read", {"with": CAROL}) == (
        200,
        {"with": CAROL, "marked_read": 0},
    )


def probe_list_payments(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", "/payments") == (200, {"payments": [], "next_cursor": None})
    assert api.call(MALLORY, "GET", f"/payments?limit=1&cursor={world.payments_cursor}")[0] == 400


def probe_create_room(api: Api, world: World) -> None:
    # A forged owner is ignored: the room is mallory's, and alice's list does not show it.
    status, room = api.call(MALLORY, "POST", "/rooms", {"name": "mine", "owner": ALICE})
    assert status == 201
    assert room["owner"] == MALLORY


def probe_list_rooms(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", "/rooms") == (200, {"rooms": [], "next_cursor": None})
    assert api.call(MALLORY, "GET", f"/rooms?limit=1&cursor={world.rooms_cursor}")[0] == 400


ROOM_NOT_FOUND = (404, {"Code": "NotFoundError", "Message": "room not found"})


def probe_get_room(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", f"/rooms/{world.room_id}") == ROOM_NOT_FOUND


def probe_add_room_member(api: Api, world: World) -> None:
    assert (
        api.call(MALLORY, "POST", f"/rooms/{world.room_id}/members", {"user_id": MALLORY}) == ROOM_NOT_FOUND
    )


def probe_remove_room_member(api: Api, world: World) -> None:
    assert api.call(MALLORY, "DELETE", f"/rooms/{world.room_id}/members/{CAROL}") == ROOM_NOT_FOUND


def probe_post_room_message(api: Api, world: World) -> None:
    assert api.call(MALLORY, "POST", f"/rooms/{world.room_id}/messages", {"text": "hi"}) == ROOM_NOT_FOUND


def probe_list_room_messages(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", f"/rooms/{world.room_id}/messages") == ROOM_NOT_FOUND
    own = api.call(MALLORY, "POST", "/rooms", {"name": "mine"})[1]["room_id"]
    cursor = world.room_messages_cursor
    assert api.call(MALLORY, "GET", f"/rooms/{own}/messages?limit=1&cursor={cursor}")[0] == 400


def probe_room_presence(api: Api, world: World) -> None:
    assert api.call(MALLORY, "GET", f"/rooms/{world.room_id}/presence") == ROOM_NOT_FOUND


OWNER_CHECKS: dict[tuple[str, str], Probe] = {
    ("GET", "/me"): probe_me,
    ("POST", "/jobs"): probe_submit_job,
    ("GET", "/jobs"): probe_list_jobs,
    ("GET", "/jobs/{job_id}"): probe_get_job,
    ("POST", "/jobs/{job_id}/cancel"): probe_cancel_job,
    ("POST", "/messages"): probe_send_message,
    ("GET", "/messages"): probe_list_messages,
    ("GET", "/messages/unread-count"): probe_unread_count,
    ("POST", "/messages/read"): probe_mark_read,
    ("GET", "/payments"): probe_list_payments,
    ("POST", "/rooms"): probe_create_room,
    ("GET", "/rooms"): probe_list_rooms,
    ("GET", "/rooms/{room_id}"): probe_get_room,
    ("POST", "/rooms/{room_id}/members"): probe_add_room_member,
    ("DELETE", "/rooms/{room_id}/members/{user_id}"): probe_remove_room_member,
    ("POST", "/rooms/{room_id}/messages"): probe_post_room_message,
    ("GET", "/rooms/{room_id}/messages"): probe_list_room_messages,
    ("GET", "/rooms/{room_id}/presence"): probe_room_presence,
}
# Routes with no owner: public, or authenticated by something other than a user's token.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/health"): "liveness, no data",
    ("POST", "/webhooks/stripe"): "authenticated by the Stripe-Signature (tests/app/test_hostile_input.py)",
}


def app_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, methods in app.routes.items() for method in methods}


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def api(client: Client, tokens: TokenFactory) -> Api:
    return Api(client, tokens)


@pytest.fixture
def world(api: Api, client: Client, services: Any, management_api: Any) -> World:
    """Two of each of alice's resources (so each list has a next page), then a quiet connection of hers."""
    built = World()
    for _ in range(2):
        status, job = api.call(ALICE, "POST", "/jobs", {"kind": "report", "params": {"seconds": 5}})
        assert status == 202
        built.job_ids.append(job["job_id"])
    built.jobs_cursor = api.call(ALICE, "GET", "/jobs?limit=1")[1]["next_cursor"]
    assert api.call(ALICE, "POST", "/messages", {"to": CAROL, "text": "hello carol"})[0] == 201
    assert api.call(CAROL, "POST", "/messages", {"to": ALICE, "text": "hello alice"})[0] == 201
    built.messages_cursor = api.call(ALICE, "GET", f"/messages?with={CAROL}&limit=1")[1]["next_cursor"]
    for amount in (500, 700):
        event = build_test_event("payment_intent.succeeded", ALICE, amount=amount)
        body, headers = signed_delivery(event, TEST_ENV["STRIPE_WEBHOOK_SECRET"])
        assert client.http.post("/webhooks/stripe", headers=headers, body=body.encode()).json_body == {
            "received": True,
            "outcome": "recorded",
        }
    built.payments_cursor = api.call(ALICE, "GET", "/payments?limit=1")[1]["next_cursor"]
    built.room_id = api.call(ALICE, "POST", "/rooms", {"name": "alice's"})[1]["room_id"]
    api.call(ALICE, "POST", "/rooms", {"name": "alice's other"})
    built.rooms_cursor = api.call(ALICE, "GET", "/rooms?limit=1")[1]["next_cursor"]
    assert api.call(ALICE, "POST", f"/rooms/{built.room_id}/members", {"user_id": CAROL})[0] == 200
    for text in ("one", "two"):
        assert api.call(ALICE, "POST", f"/rooms/{built.room_id}/messages", {"text": text})[0] == 201
    built.room_messages_cursor = api.call(ALICE, "GET", f"/rooms/{built.room_id}/messages?limit=1")[1][
        "next_cursor"
    ]
    assert built.jobs_cursor and built.messages_cursor and built.payments_cursor
    assert built.rooms_cursor and built.room_messages_cursor
    services.realtime.connections.add(Connection("alice-tab", ALICE, 1_700_000_000_000))
    return built


# ---------------------------------------------------------------- tests


def test_every_route_is_in_the_table() -> None:
    unlisted = app_routes() - set(OWNER_CHECKS) - set(PUBLIC)
    assert unlisted == set(), f"add an owner check to OWNER_CHECKS (or justify it in PUBLIC): {unlisted}"
    assert set(OWNER_CHECKS) | set(PUBLIC) == app_routes(), "the table names routes the app no longer has"
    assert not set(OWNER_CHECKS) & set(PUBLIC)


def test_public_routes_are_exactly_those_without_an_authorizer() -> None:
    unauthenticated = {
        (method, path)
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if entry.authorizer is None
    }
    assert unauthenticated == set(PUBLIC)


@pytest.mark.parametrize("route", sorted(OWNER_CHECKS), ids=" ".join)
def test_another_user_can_neither_read_nor_change_alices_resources(
    route: tuple[str, str], api: Api, world: World, management_api: Any
) -> None:
    before = alices_view(api, world)
    assert before["unread"] == (200, {"unread": 1, "by_user": {CAROL: 1}})
    assert len(before["payments"][1]["payments"]) == 2 and len(before["jobs"][1]["jobs"]) == 2
    OWNER_CHECKS[route](api, world)
    assert alices_view(api, world) == before
    assert "alice-tab" not in management_api.connections  # no frame was posted to alice
