"""The demo page's Rooms panel between users: a member sees the room live, a non-member sees nothing of it."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.e2e.test_accessibility import violations
from testsupport.browser import PASSWORD, OpenedPage, unique_email

OpenPage = Callable[..., OpenedPage]


def sign_up(page: Page, label: str) -> str:
    page.get_by_test_id("auth-email").fill(unique_email(label))
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("sign-up").click()
    expect(page.get_by_test_id("my-uid")).not_to_be_empty()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    return page.get_by_test_id("my-uid").inner_text().strip()


def open_room(page: Page, room_id: str) -> None:
    page.get_by_test_id("room-id").fill(room_id)
    page.get_by_test_id("room-open").click()
    expect(page.get_by_test_id("room-view")).to_have_attribute("data-room-id", room_id)


def post(page: Page, text: str) -> None:
    page.get_by_test_id("room-text").fill(text)
    page.get_by_test_id("room-send").click()
    expect(page.get_by_test_id("room-text")).to_have_value("")


def present(page: Page, uid: str) -> Locator:
    return page.locator(f'[data-testid=room-present][data-uid="{uid}"]')


def messages(page: Page) -> Locator:
    return page.get_by_test_id("room-message")


def test_a_member_sees_the_room_live_and_a_non_member_sees_nothing_of_it(open_page: OpenPage) -> None:
    alice, bob, mallory = (open_page().page for _ in range(3))
    alice_uid = sign_up(alice, "alice")
    bob_uid = sign_up(bob, "bob")
    sign_up(mallory, "mallory")

    # Alice creates a room: she owns it, is its first member, and is here now.
    alice.get_by_test_id("room-name").fill("Team")
    alice.get_by_test_id("room-create").click()
    expect(alice.get_by_test_id("room-subscription")).to_have_attribute("data-state", "subscribed")
    expect(alice.get_by_test_id("room-title")).to_have_text("Team")
    room_id = alice.get_by_test_id("room-view").get_attribute("data-room-id") or ""
    assert room_id
    expect(alice.locator(f'[data-testid=room][data-room-id="{room_id}"]')).to_be_visible()
    expect(present(alice, alice_uid)).to_have_text("you")

    # Before she adds him, bob is refused; once added, the same page opens the room.
    open_room(bob, room_id)
    expect(bob.get_by_test_id("room-subscription")).to_have_attribute("data-state", "refused")
    alice.get_by_test_id("room-member-id").fill(bob_uid)
    alice.get_by_test_id("room-add-member").click()
    expect(alice.get_by_test_id("room-member-id")).to_have_value("")
    open_room(bob, room_id)
    expect(bob.get_by_test_id("room-subscription")).to_have_attribute("data-state", "subscribed")
    expect(bob.get_by_test_id("room-refused")).to_be_hidden()
    expect(bob.get_by_test_id("room-title")).to_have_text("Team")

    # Who is here now, on both sides, refetched on presence-updated.
    expect(present(alice, bob_uid)).to_have_count(1)
    expect(present(bob, alice_uid)).to_have_count(1)

    # Messages arrive live in the other member's page, without a reload.
    post(alice, "hello team")
    expect(messages(bob)).to_have_count(1)
    expect(messages(bob).first).to_contain_text("hello team")
    post(bob, "hi alice")
    expect(messages(alice)).to_have_count(2)
    expect(messages(alice).last).to_contain_text("hi alice")

    # Mallory is not a member: refused, told so, and shown nothing of the room, then or later.
    open_room(mallory, room_id)
    expect(mallory.get_by_test_id("room-subscription")).to_have_attribute("data-state", "refused")
    expect(mallory.get_by_test_id("room-refused")).to_be_visible()
    expect(mallory.get_by_test_id("room-title")).not_to_have_text("Team")
    expect(mallory.get_by_test_id("room-send-form")).to_be_hidden()
    post(alice, "still just us")
    expect(messages(bob)).to_have_count(3)
    mallory.wait_for_timeout(500)  # a frame of the room would have arrived by now
    expect(messages(mallory)).to_have_count(0)
    expect(mallory.locator(f'[data-testid=event-log-entry][data-topic="room:{room_id}"]')).to_have_count(0)
    expect(mallory.locator(f'[data-testid=room][data-room-id="{room_id}"]')).to_have_count(0)
    expect(present(alice, bob_uid)).to_have_count(1)  # mallory never showed up as here
    # The panel passes axe-core as a member sees it (messages, who is here) and as a refused user does.
    assert violations(alice) == []
    assert violations(mallory) == []

    # Bob closes his page: he leaves who is here now.
    bob.close()
    expect(present(alice, bob_uid)).to_have_count(0, timeout=20_000)
    expect(present(alice, alice_uid)).to_have_count(1)


def test_the_rooms_panel_is_labelled_for_assistive_technology(open_page: OpenPage) -> None:
    page = open_page().page
    sign_up(page, "labels")
    for name in ["Name", "Room id"]:
        expect(page.get_by_role("textbox", name=name, exact=True)).to_be_visible()
    page.get_by_role("textbox", name="Name", exact=True).fill("Labelled")
    page.get_by_role("button", name="Create room").click()
    for name in ["Add member", "Message"]:
        expect(page.get_by_role("textbox", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("list", name="Room messages")).to_be_attached()
    expect(page.get_by_role("list", name="Here now")).to_be_visible()
