"""The tabs of one user in one browser share one WebSocket: what the gateway holds and what each tab sees.

All tabs of a Playwright BrowserContext share Web Locks and BroadcastChannel, as the tabs of a
browser window do; each tab keeps its own sign-in (the demo's session is per tab).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from testsupport.browser import OpenedPage, live_connections_of, open_tab, received, sign_in, unique_email
from testsupport.localstack import LocalStack

if TYPE_CHECKING:
    from collections.abc import Sequence

KEY = "chat-messages-updated"
HANDOVER_SECONDS = 2.0

# Every state the page's connection badge shows, in order, kept in the tab: an evicted or dropped
# socket shows as `reconnecting` even if it is open again by the time the test looks.
STATE_RECORDER = """
window.__states = [];
document.addEventListener('DOMContentLoaded', () => {
  const badge = document.querySelector('[data-testid="connection-state"]');
  new MutationObserver(() => window.__states.push(badge.dataset.state))
    .observe(badge, { attributes: true, attributeFilter: ['data-state'] });
});
"""

OpenTab = Callable[[], Page]


@pytest.fixture
def window(request: pytest.FixtureRequest, browser: Browser) -> Iterator[BrowserContext]:
    """One browser window: its tabs share Web Locks and BroadcastChannel."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(15_000)
    context.add_init_script(STATE_RECORDER)
    request.node.e2e_pages = []
    yield context
    context.close()


def tab_opener(request: pytest.FixtureRequest, context: BrowserContext, url: str) -> OpenTab:
    def open_one() -> Page:
        opened: OpenedPage = open_tab(context, url)
        request.node.e2e_pages.append(opened)  # screenshots and console on failure
        return opened.page

    return open_one


@pytest.fixture
def new_tab(request: pytest.FixtureRequest, window: BrowserContext, stack: LocalStack) -> OpenTab:
    return tab_opener(request, window, stack.web_url)


def tabs_of_one_user(new_tab: OpenTab, count: int, label: str) -> tuple[list[Page], str, str]:
    """`count` tabs signed in as one new user, each open: (tabs, uid, email)."""
    email = unique_email(label)
    tabs = [new_tab() for _ in range(count)]
    uid = sign_in(tabs[0], email, new_account=True)
    for tab in tabs[1:]:
        assert sign_in(tab, email) == uid
    for tab in tabs:
        expect(tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    return tabs, uid, email


def roles(tabs: Sequence[Page]) -> list[str]:
    return [tab.get_by_test_id("connection-role").get_attribute("data-role") or "" for tab in tabs]


def wait_for_connections(stack: LocalStack, uid: str, count: int, timeout: float = 10.0) -> list[str]:
    """The user's live connections once there are `count` of them (the last list seen otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        live = live_connections_of(stack, uid)
        if len(live) == count or time.monotonic() > deadline:
            return live
        time.sleep(0.2)


def message(stack: LocalStack, sender_token: str, to: str, text: str) -> None:
    """A chat message over REST: the recipient is notified with chat-messages-updated."""
    response = requests.post(
        stack.rest_url + "/messages",
        json={"to": to, "text": text},
        headers={"Authorization": f"Bearer {sender_token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def states_seen(tab: Page) -> list[str]:
    return list(tab.evaluate("window.__states"))


def test_tabs_of_one_user_hold_one_connection_and_each_gets_every_key(
    new_tab: OpenTab, stack: LocalStack
) -> None:
    tabs, uid, _ = tabs_of_one_user(new_tab, 3, "tabs")
    assert sorted(roles(tabs)) == ["follower", "follower", "leader"]
    assert len(wait_for_connections(stack, uid, 1)) == 1

    _, carol_token = stack.sign_up()
    for n in range(1, 3):
        message(stack, carol_token, uid, f"message {n}")
        for tab in tabs:
            expect(received(tab, KEY)).to_have_count(n)
    expect(tabs[2].get_by_test_id("unread-badge")).to_have_text("2")  # each tab refetched over REST
    assert len(live_connections_of(stack, uid)) == 1
    for tab in tabs:
        expect(received(tab, "resync")).to_have_count(0)


def crash(tab: Page) -> None:
    """Kill the tab's renderer, as a crash does: no unload, the browser releases what it held."""
    from playwright.sync_api import Error

    session = tab.context.new_cdp_session(tab)
    with tab.expect_event("crash"), contextlib.suppress(Error):  # a crashed page never answers
        session.send("Page.crash", timeout=500)


@pytest.mark.parametrize("end", [Page.close, crash], ids=["closed", "crashed"])
def test_when_the_leader_goes_the_connection_is_handed_over_and_every_tab_resyncs(
    new_tab: OpenTab, stack: LocalStack, end: Callable[[Page], None]
) -> None:
    tabs, uid, _ = tabs_of_one_user(new_tab, 3, "handover")
    first = wait_for_connections(stack, uid, 1)
    assert len(first) == 1
    leader = tabs[roles(tabs).index("leader")]
    remaining = [tab for tab in tabs if tab is not leader]

    closed_at = time.monotonic()
    end(leader)
    new_leader = None
    while new_leader is None and time.monotonic() - closed_at < 10:
        taken = [tab for tab in remaining if roles([tab]) == ["leader"]]
        new_leader = taken[0] if taken else None
    assert new_leader is not None, "no tab took the connection over"
    expect(new_leader.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    handover = time.monotonic() - closed_at
    assert handover < HANDOVER_SECONDS, f"the socket was open again {handover:.2f} s after the leader closed"

    for tab in remaining:
        expect(received(tab, "resync")).to_have_count(1)
        expect(tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    live = wait_for_connections(stack, uid, 1)
    assert len(live) == 1 and live != first, live

    _, carol_token = stack.sign_up()
    message(stack, carol_token, uid, "after the handover")
    for tab in remaining:
        expect(received(tab, KEY)).to_have_count(1)


def test_another_user_in_the_same_window_has_their_own_connection_and_never_gets_the_first_users_keys(
    new_tab: OpenTab, stack: LocalStack
) -> None:
    alice_tabs, alice, _ = tabs_of_one_user(new_tab, 2, "alice")
    bob_tab = new_tab()
    bob = sign_in(bob_tab, unique_email("bob"), new_account=True)
    expect(bob_tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(bob_tab.get_by_test_id("connection-role")).to_have_attribute("data-role", "leader")
    assert len(wait_for_connections(stack, alice, 1)) == 1
    assert len(wait_for_connections(stack, bob, 1)) == 1

    _, carol_token = stack.sign_up()
    for n in range(1, 4):
        message(stack, carol_token, alice, f"for alice {n}")
        for tab in alice_tabs:
            expect(received(tab, KEY)).to_have_count(n)
    message(stack, carol_token, bob, "for bob")
    expect(received(bob_tab, KEY)).to_have_count(1)
    bob_tab.wait_for_timeout(500)  # a stray relay of alice's frames would have arrived by now
    expect(bob_tab.get_by_test_id("event-log-entry")).to_have_count(1)  # bob's one key, nothing of alice's
    for tab in alice_tabs:
        expect(received(tab, KEY)).to_have_count(3)

    # Alice's second tab signs out and in as bob: it moves to bob's group and follows bob's tab.
    moved = alice_tabs[1]
    moved.get_by_test_id("sign-out").click()
    logged = moved.get_by_test_id("event-log-entry").count()  # the log of alice's time stays on screen
    bob_email = bob_tab.get_by_test_id("my-email").inner_text().strip()
    assert sign_in(moved, bob_email) == bob
    expect(moved.get_by_test_id("connection-role")).to_have_attribute("data-role", "follower")
    expect(moved.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    message(stack, carol_token, alice, "for alice again")
    expect(received(alice_tabs[0], KEY)).to_have_count(4)
    message(stack, carol_token, bob, "for bob again")
    expect(moved.get_by_test_id("event-log-entry")).to_have_count(logged + 1)
    expect(moved.get_by_test_id("event-log-entry").first).to_have_attribute("data-key", KEY)
    expect(received(bob_tab, KEY)).to_have_count(2)
    moved.wait_for_timeout(500)
    expect(moved.get_by_test_id("event-log-entry")).to_have_count(logged + 1)  # nothing of alice since
    assert len(live_connections_of(stack, alice)) == 1
    assert len(live_connections_of(stack, bob)) == 1


@pytest.fixture(scope="module")
def capped_stack() -> Iterator[LocalStack]:
    """A local stack allowing 2 connections per user, so a few tabs are more than the cap."""
    from testsupport.localstack import require_local_stack_tools

    require_local_stack_tools()
    with LocalStack(extra_env={"MAX_CONNECTIONS_PER_USER": "2"}) as capped:
        yield capped


def test_more_tabs_than_the_per_user_cap_evict_nobody_and_all_get_the_keys(
    request: pytest.FixtureRequest, window: BrowserContext, capped_stack: LocalStack
) -> None:
    new_tab = tab_opener(request, window, capped_stack.web_url)
    tabs, uid, _ = tabs_of_one_user(new_tab, 4, "capped")
    assert len(wait_for_connections(capped_stack, uid, 1)) == 1

    _, carol_token = capped_stack.sign_up()
    for n in range(1, 3):
        message(capped_stack, carol_token, uid, f"message {n}")
        for tab in tabs:
            expect(received(tab, KEY)).to_have_count(n)
    tabs[0].wait_for_timeout(1000)  # evictions, had there been any, close sockets within this
    for tab in tabs:
        assert states_seen(tab)[-1] == "open"
        assert "reconnecting" not in states_seen(tab), states_seen(tab)
        expect(received(tab, "resync")).to_have_count(0)
    assert len(live_connections_of(capped_stack, uid)) == 1


def test_while_the_leader_reconnects_every_tab_shows_reconnecting_then_resyncs_once(
    request: pytest.FixtureRequest, window: BrowserContext, capped_stack: LocalStack
) -> None:
    new_tab = tab_opener(request, window, capped_stack.web_url)
    tabs, uid, _ = tabs_of_one_user(new_tab, 3, "outage")
    follower = tabs[roles(tabs).index("follower")]

    capped_stack.stop_gateway()  # kill -9: the leader's socket drops, no close handshake
    try:
        for tab in tabs:
            expect(tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    finally:
        capped_stack.start_gateway()
    for tab in tabs:
        expect(tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "open", timeout=45_000)
        expect(received(tab, "resync")).to_have_count(1)
    assert follower.get_by_test_id("connection-role").get_attribute("data-role") == "follower"
    assert len(wait_for_connections(capped_stack, uid, 1)) == 1

    _, carol_token = capped_stack.sign_up()
    message(capped_stack, carol_token, uid, "after the outage")
    for tab in tabs:
        expect(received(tab, KEY)).to_have_count(1)


def test_a_hung_leader_is_replaced_when_a_follower_is_looked_at_and_follows_once_it_runs_again(
    new_tab: OpenTab, stack: LocalStack
) -> None:
    tabs, uid, _ = tabs_of_one_user(new_tab, 2, "hung")
    leader, follower = tabs if roles(tabs)[0] == "leader" else tabs[::-1]
    first = wait_for_connections(stack, uid, 1)

    # The leader's main thread is busy for 12 s: it keeps its lock and socket but answers nothing, as
    # a frozen background tab on a phone does. (Chromium's CDP freeze does not stop BroadcastChannel.)
    leader.evaluate("setTimeout(() => { const end = Date.now() + 12_000; while (Date.now() < end); })")
    follower.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the user looks at it
    expect(follower.get_by_test_id("connection-role")).to_have_attribute(
        "data-role", "leader", timeout=10_000
    )
    expect(follower.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(received(follower, "resync")).to_have_count(1)
    _, carol_token = stack.sign_up()
    message(stack, carol_token, uid, "while the old leader hangs")
    expect(received(follower, KEY)).to_have_count(1)

    # Running again, the old leader finds its lock taken, closes its socket and follows.
    expect(leader.get_by_test_id("connection-role")).to_have_attribute(
        "data-role", "follower", timeout=20_000
    )
    expect(leader.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(received(leader, "resync")).to_have_count(1)  # it may have missed frames while it hung
    live = wait_for_connections(stack, uid, 1)
    assert len(live) == 1 and live != first, live
    # The frame sent while it hung may have reached its old socket, or not: counted from here.
    seen = received(leader, KEY).count()
    message(stack, carol_token, uid, "after it runs again")
    expect(received(follower, KEY)).to_have_count(2)
    expect(received(leader, KEY)).to_have_count(seen + 1)
