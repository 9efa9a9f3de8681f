"""The demo page in a real browser against the local stack: what a user sees, live, without reloading."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from playwright.sync_api import Page, expect

from testsupport.browser import PASSWORD, OpenedPage, open_tab, sign_in, unique_email

if TYPE_CHECKING:
    from testsupport.localstack import LocalStack

OpenPage = Callable[..., OpenedPage]

# Wraps the page's WebSocket to count connection attempts and, with `badToken`, to present a
# credential the gateway refuses.
WEBSOCKET_PROBE = """
(() => {
  const Native = window.WebSocket;
  const probe = { attempts: 0, badToken: %(bad_token)s };
  window.__wsProbe = probe;
  function ProbedWebSocket(url, protocols) {
    probe.attempts += 1;
    if (probe.badToken) protocols = ['bearer', 'not-a-valid-firebase-token'];
    return new Native(url, protocols);
  }
  ProbedWebSocket.prototype = Native.prototype;
  Object.assign(ProbedWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = ProbedWebSocket;
})();
"""


def probe(bad_token: bool = False) -> str:
    return WEBSOCKET_PROBE % {"bad_token": json.dumps(bad_token)}


def sign_up(page: Page, label: str, *, wait_open: bool = True) -> str:
    """Create an account through the page's form; returns the uid the page shows."""
    page.get_by_test_id("auth-email").fill(unique_email(label))
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("sign-up").click()
    expect(page.get_by_test_id("my-uid")).not_to_be_empty()
    if wait_open:
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    return page.get_by_test_id("my-uid").inner_text().strip()


def open_conversation(page: Page, peer_uid: str) -> None:
    page.get_by_test_id("chat-peer").fill(peer_uid)
    page.get_by_test_id("chat-open").click()
    expect(page.get_by_test_id("chat-text")).to_be_enabled()


def send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-text").fill(text)
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-text")).to_have_value("")


def mark_document(page: Page) -> None:
    """A marker that a reload or navigation would erase."""
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_two_users_see_each_others_messages_live(open_page: OpenPage) -> None:
    alice, bob = open_page().page, open_page().page
    alice_uid = sign_up(alice, "alice")
    bob_uid = sign_up(bob, "bob")
    mark_document(alice)
    mark_document(bob)

    open_conversation(alice, bob_uid)
    send(alice, "hello bob")
    # Bob has no conversation open: his badge counts the message as it arrives.
    expect(bob.get_by_test_id("unread-badge")).to_have_text("1")
    expect(bob.get_by_test_id("unread-from")).to_contain_text(alice_uid)

    open_conversation(bob, alice_uid)
    expect(bob.get_by_test_id("chat-message")).to_contain_text(["hello bob"])
    expect(bob.get_by_test_id("unread-badge")).to_have_text("0")  # reading it marks it read

    send(bob, "hi alice")
    expect(alice.get_by_test_id("chat-message")).to_contain_text(["hello bob", "hi alice"])
    expect(bob.get_by_test_id("chat-message")).to_contain_text(["hello bob", "hi alice"])
    expect(
        alice.locator('[data-testid=event-log-entry][data-key="chat-messages-updated"]')
    ).not_to_have_count(0)
    assert_same_document(alice)
    assert_same_document(bob)


def test_two_tabs_of_one_browser_are_two_users_and_each_keeps_its_own_across_a_reload(
    open_page: OpenPage, stack: LocalStack
) -> None:
    """The demo signs in with the Firebase JS SDK, with session persistence: one user per tab."""
    first = open_page()
    requested: list[str] = []
    first.context.on("request", lambda request: requested.append(request.url))
    second = open_tab(first.context, stack.web_url)  # same browser window: shared storage but sessionStorage
    alice_email, bob_email = unique_email("alice"), unique_email("bob")
    alice_uid = sign_in(first.page, alice_email, new_account=True)
    bob_uid = sign_in(second.page, bob_email, new_account=True)
    assert alice_uid != bob_uid

    for tab, uid in ((first.page, alice_uid), (second.page, bob_uid)):
        tab.reload()
        tab.wait_for_selector("body[data-ready=true]")
        expect(tab.get_by_test_id("my-uid")).to_have_text(uid)
        expect(tab.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")

    # A new tab starts signed out; a wrong password is refused with the SDK's answer, in words.
    third = open_tab(first.context, stack.web_url)
    expect(third.page.get_by_test_id("auth-panel")).to_be_visible()
    third.page.get_by_test_id("auth-email").fill(alice_email)
    third.page.get_by_test_id("auth-password").fill("not-the-password")
    third.page.get_by_test_id("sign-in").click()
    expect(third.page.get_by_test_id("auth-error")).to_have_text("wrong email or password")
    assert sign_in(third.page, alice_email) == alice_uid

    # Signing out of one tab leaves the others signed in.
    first.page.get_by_test_id("sign-out").click()
    expect(first.page.get_by_test_id("auth-panel")).to_be_visible()
    expect(first.page.get_by_test_id("connection-state")).to_have_attribute("data-state", "closed")
    second.page.reload()
    second.page.wait_for_selector("body[data-ready=true]")
    expect(second.page.get_by_test_id("my-uid")).to_have_text(bob_uid)
    expect(third.page.get_by_test_id("my-uid")).to_have_text(alice_uid)

    # The SDK came from the demo server and talked to the emulator: nothing left this machine.
    assert any("/node_modules/firebase/auth/" in url for url in requested)
    assert any(stack.auth_emulator_host in url for url in requested)
    outside = [url for url in requested if not url.startswith(("http://127.0.0.1", "ws://127.0.0.1"))]
    assert outside == []


def test_a_report_jobs_progress_bar_fills_and_a_failing_job_shows_its_error(open_page: OpenPage) -> None:
    page = open_page().page
    sign_up(page, "jobs")
    page.get_by_test_id("job-seconds").fill("3")
    page.get_by_test_id("start-report").click()
    report = page.locator('[data-testid=job][data-kind="report"]')
    expect(report).to_have_count(1)
    expect(report.get_by_test_id("job-progress")).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    expect(report).to_have_attribute("data-status", "succeeded")
    expect(report.get_by_test_id("job-detail")).to_contain_text("result")

    page.get_by_test_id("start-fail").click()
    failing = page.locator('[data-testid=job][data-kind="fail"]')
    expect(failing).to_have_attribute("data-status", "failed", timeout=30_000)
    expect(failing.get_by_test_id("job-detail")).to_contain_text("error")
    # The page refetches only when told to: every update above came through the socket.
    expect(page.locator('[data-testid=event-log-entry][data-key="jobs-updated"]')).not_to_have_count(0)


def test_a_test_payment_appears_in_the_payments_list(open_page: OpenPage) -> None:
    page = open_page().page
    sign_up(page, "payer")
    expect(page.get_by_test_id("payment")).to_have_count(0)
    page.get_by_test_id("fire-payment").click()
    expect(page.get_by_test_id("payment")).to_have_count(1, timeout=20_000)
    expect(page.get_by_test_id("payment")).to_contain_text("19.99")
    expect(page.locator('[data-testid=event-log-entry][data-key="payments-updated"]')).to_have_count(1)


def test_after_a_gateway_restart_the_page_reconnects_and_resyncs_a_missed_message(
    open_page: OpenPage, stack: LocalStack
) -> None:
    alice = open_page().page
    bob = open_page().page
    alice_uid = sign_up(alice, "alice")
    bob_uid = sign_up(bob, "bob")
    open_conversation(alice, bob_uid)
    open_conversation(bob, alice_uid)
    mark_document(alice)

    stack.stop_gateway()  # kill -9: every socket drops, no close handshake
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    send(bob, "sent while alice was disconnected")  # REST still works; the frame to alice has nowhere to go
    expect(bob.get_by_test_id("chat-message")).to_contain_text(["sent while alice was disconnected"])
    expect(alice.get_by_test_id("chat-message")).to_have_count(0)

    stack.start_gateway()
    # Within the backoff ceiling the page is back, emits `resync` and refetches the conversation.
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "open", timeout=45_000)
    expect(alice.get_by_test_id("chat-message")).to_contain_text(["sent while alice was disconnected"])
    expect(alice.locator('[data-testid=event-log-entry][data-key="resync"]')).to_have_count(1)
    assert_same_document(alice)

    # A crash-and-restart in one step (restart_gateway) is recovered from the same way.
    stack.restart_gateway()
    expect(alice.locator('[data-testid=event-log-entry][data-key="resync"]')).to_have_count(2, timeout=45_000)
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    send(bob, "after the restart")
    expect(alice.get_by_test_id("chat-message")).to_contain_text(
        ["sent while alice was disconnected", "after the restart"]
    )


def test_an_invalid_token_backs_off_instead_of_spinning(open_page: OpenPage) -> None:
    opened = open_page(init_script=probe(bad_token=True))
    page = opened.page
    sign_up(page, "refused", wait_open=False)
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    start = page.evaluate("window.__wsProbe.attempts")
    page.wait_for_timeout(5_000)
    attempts = page.evaluate("window.__wsProbe.attempts") - start
    # Full-jitter backoff from 0.5 s doubling: about 5 attempts in 5 s (a tight loop makes hundreds).
    assert 1 <= attempts <= 12, f"{attempts} connection attempts in 5 s"
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")


def test_cancel_stops_a_running_report_and_a_fourth_active_job_is_refused_with_its_wait(
    open_page: OpenPage,
) -> None:
    page = open_page().page
    sign_up(page, "canceller")
    page.get_by_test_id("job-seconds").fill("600")
    for _ in range(3):
        page.get_by_test_id("start-report").click()
    reports = page.locator('[data-testid=job][data-kind="report"]')
    expect(reports).to_have_count(3)
    # The fourth while three are active: refused, and the page says why and how long to wait.
    page.get_by_test_id("start-report").click()
    expect(page.get_by_test_id("page-error")).to_contain_text("3 active jobs")
    expect(page.get_by_test_id("page-error")).to_contain_text("try again in 10 s")
    expect(reports).to_have_count(3)

    running = page.locator('[data-testid=job][data-kind="report"][data-status="running"]').first
    expect(running.get_by_test_id("job-progress")).not_to_have_attribute("aria-valuenow", "0", timeout=30_000)
    job_id = running.get_attribute("data-job-id")
    running.get_by_test_id("cancel-job").click()
    cancelled = page.locator(f'[data-testid=job][data-job-id="{job_id}"]')
    # The runner stops at its next progress point; `jobs-updated` brings the page the final state.
    expect(cancelled).to_have_attribute("data-status", "cancelled", timeout=20_000)
    expect(cancelled.get_by_test_id("cancel-job")).to_have_count(0)
    progress = int(cancelled.get_by_test_id("job-progress").get_attribute("aria-valuenow") or "0")
    assert 0 < progress < 100
    # Its slot is free again.
    page.get_by_test_id("start-report").click()
    expect(reports).to_have_count(4)
    buttons = page.get_by_test_id("cancel-job")
    for remaining in (2, 1, 0):  # leave nothing running on the shared stack
        buttons.first.click()
        expect(buttons).to_have_count(remaining, timeout=20_000)
    expect(page.locator('[data-testid=job][data-status="cancelled"]')).to_have_count(4)
