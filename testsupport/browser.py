"""What the browser tests and `bench.tabs` share: Chromium's launch, the page handle, account helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from playwright.sync_api import BrowserContext, Locator, Page, expect

if TYPE_CHECKING:
    from testsupport.localstack import LocalStack

# Debian's Chromium (scripts/install-chromium); Playwright never downloads a browser here.
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"


@dataclass
class OpenedPage:
    """A page and its browser context (each tab has its own sessionStorage: its own signed-in user)."""

    page: Page
    context: BrowserContext
    console: list[str] = field(default_factory=list)


def unique_email(label: str) -> str:
    """A fresh address per call: the emulator keeps accounts for the whole session."""
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


def open_tab(context: BrowserContext, url: str) -> OpenedPage:
    """A new tab of `context` (a window: its tabs share Web Locks and BroadcastChannel) at `url`, ready."""
    page = context.new_page()
    opened = OpenedPage(page, context)
    page.on("console", lambda message: opened.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: opened.console.append(f"pageerror: {error}"))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return opened


def sign_in(page: Page, email: str, *, new_account: bool = False) -> str:
    """Sign in (or up) through the page's form; returns the uid the page shows."""
    page.get_by_test_id("auth-email").fill(email)
    page.get_by_test_id("auth-password").fill(PASSWORD)
    page.get_by_test_id("sign-up" if new_account else "sign-in").click()
    expect(page.get_by_test_id("auth-panel")).to_be_hidden()
    expect(page.get_by_test_id("my-email")).to_have_text(email)
    return page.get_by_test_id("my-uid").inner_text().strip()


def received(page: Page, key: str) -> Locator:
    """The event-log entries of `key`: what the page received and handled."""
    return page.locator(f'[data-testid=event-log-entry][data-key="{key}"]')


def live_connections_of(stack: LocalStack, user_id: str) -> list[str]:
    """The connections the gateway holds open for `user_id` (its stored rows that are live at the gateway)."""
    live = set(requests.get(stack.management_url + "/_connections", timeout=5).json()["connections"])
    rows = stack.aws_client("dynamodb").query(
        TableName=stack.environment["CONNECTIONS_TABLE"],
        IndexName="by_user",
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
    )["Items"]
    return [row["connection_id"]["S"] for row in rows if row["connection_id"]["S"] in live]
