"""Browser tests: the local stack, Debian's Chromium driven by Playwright, screenshots on failure.

Playwright never downloads a browser here: it launches `/usr/bin/chromium` (installed by
`scripts/install-chromium`). Without it the tests skip locally and fail under `CI=true`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from testsupport.browser import CHROMIUM, LAUNCH_ARGS, OpenedPage

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage

    from testsupport.localstack import LocalStack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def missing(reason: str) -> None:
    """Skip on a laptop without the prerequisite; fail in CI, where a skip would hide a gap."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> LocalStack:
    """The whole local stack (REST, gateway, auth emulator, demo page), shared with the integration tests."""
    return local_stack


# Package scope: Playwright's sync API keeps an event loop running on this thread until it stops,
# which would break `asyncio.run` in every test after the browser tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing(
            "Chromium is missing at /usr/bin/chromium: install it with `sudo apt-get install -y chromium` "
            "(or `sudo scripts/install-chromium`)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(
    request: pytest.FixtureRequest, browser: Browser, stack: LocalStack
) -> Iterator[Callable[..., OpenedPage]]:
    """`open_page(init_script=None)`: a fresh context with the demo page loaded and ready."""
    opened: list[OpenedPage] = []
    request.node.e2e_pages = opened

    def open_one(init_script: str | None = None) -> OpenedPage:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        entry = OpenedPage(page, context)
        page.on("console", lambda message: entry.console.append(console_line(message)))
        page.on("pageerror", lambda error: entry.console.append(f"pageerror: {error}"))
        opened.append(entry)
        page.goto(stack.web_url)
        page.wait_for_selector("body[data-ready=true]")
        return entry

    yield open_one
    for entry in opened:
        entry.context.close()


def console_line(message: ConsoleMessage) -> str:
    return f"{message.type}: {message.text}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On a failed browser test, save each page's screenshot and console to test-artifacts/."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    pages: list[OpenedPage] = getattr(item, "e2e_pages", [])
    if report.when != "call" or not report.failed or not pages:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)
    for number, entry in enumerate(pages, start=1):
        try:
            entry.page.screenshot(path=str(ARTIFACTS / f"{stem}-page{number}.png"), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            entry.console.append(f"screenshot failed: {exc}")
        (ARTIFACTS / f"{stem}-page{number}.console.txt").write_text("\n".join(entry.console) + "\n")
