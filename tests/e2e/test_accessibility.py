"""The demo page passes axe-core (WCAG 2 A and AA rules, colour contrast included) in the real Chromium:
signed out, and signed in with a job running and a chat message on screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from testsupport.browser import OpenedPage, sign_in, unique_email

OpenPage = Callable[..., OpenedPage]
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# What each violation says, short enough to read in a failed assertion.
RUN_AXE = """async () => {
  const results = await axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  });
  return results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary.split('\\n').slice(1).join(' ')}`),
  }));
}"""


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (axe injected from node_modules, as a script tag)."""
    assert AXE.exists(), "axe-core is missing from node_modules: run `make install`"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return found


def test_the_signed_out_page_has_no_violations(open_page: OpenPage) -> None:
    page = open_page().page
    expect(page.get_by_test_id("auth-panel")).to_be_visible()

    assert violations(page) == []


def test_signed_in_with_a_running_job_and_a_chat_message_there_are_no_violations(open_page: OpenPage) -> None:
    alice, bob = open_page().page, open_page().page
    sign_in(alice, unique_email("axe-alice"), new_account=True)
    bob_uid = sign_in(bob, unique_email("axe-bob"), new_account=True)
    for page in (alice, bob):
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")

    alice.get_by_test_id("job-seconds").fill("120")
    alice.get_by_test_id("start-report").click()
    job = alice.locator('[data-testid=job][data-kind="report"]')
    expect(job).to_have_attribute("data-status", "running", timeout=30_000)
    expect(job.get_by_test_id("job-progress")).not_to_have_attribute("aria-valuenow", "0", timeout=30_000)

    alice.get_by_test_id("chat-peer").fill(bob_uid)
    alice.get_by_test_id("chat-open").click()
    alice.get_by_test_id("chat-text").fill("hello, accessibly")
    alice.get_by_test_id("chat-send").click()
    expect(alice.get_by_test_id("chat-messages").locator("li")).to_have_count(1)
    # Bob sees it live: an unread badge with a count and the message in his unread list.
    expect(bob.get_by_test_id("unread-badge")).to_have_attribute("data-count", "1")

    assert violations(alice) == []
    assert violations(bob) == []
    job.get_by_test_id("cancel-job").click()
