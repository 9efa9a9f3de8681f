"""What the browser tests share besides fixtures: the page handle and account helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from playwright.sync_api import BrowserContext, Page

PASSWORD = "correct-horse-battery"


@dataclass
class OpenedPage:
    """A page in its own browser context (own sessionStorage: its own signed-in user)."""

    page: Page
    context: BrowserContext
    console: list[str] = field(default_factory=list)


def unique_email(label: str) -> str:
    """A fresh address per call: the emulator keeps accounts for the whole session."""
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"
