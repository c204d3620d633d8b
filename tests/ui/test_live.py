"""Live tail of the web UI's explorer in a real chromium: a log published through a real
`lms api` (HTTP ingestion -> Pub/Sub emulator -> a real `lms mon` -> MariaDB) shows up within
seconds, and the tail pauses while text is selected or the newest rows are scrolled away.
A module of its own: the logs it publishes would change what the other modules count."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from tests.helpers import rfc3339
from tests.ui.stack import ROWS, Console, Stack

pytestmark = pytest.mark.integration


async def test_live_tail_shows_a_log_published_during_the_test(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    await p.goto(stack.url + "/?range=15m&live=1")
    await expect(p.locator(".live-state")).to_contain_text("Live")
    await expect(p.locator(ROWS).first).to_be_visible()
    payload = f"tail me {secrets.token_hex(6)}"
    body = {
        "service_name": "checkout",
        "severity": "error",
        "payload": payload,
        "timestamp": rfc3339(datetime.now(UTC)),
    }
    response = await stack.client.post("/v1/logs", json=body)
    assert response.status_code == 202, response.text
    first = p.locator(ROWS).first
    await expect(first.locator(".payload")).to_have_text(payload, timeout=15_000)
    # selecting text pauses it, and so does scrolling the newest rows out of view
    await first.locator(".payload").evaluate("e => getSelection().selectAllChildren(e)")
    await expect(p.locator(".live-state")).to_contain_text("paused (selecting text)")
    await p.evaluate("getSelection().removeAllRanges()")
    await expect(p.locator(".live-state")).not_to_contain_text("paused")
    await p.mouse.wheel(0, 3000)
    await expect(p.locator(".live-state")).to_contain_text("paused (scrolled down)")
    paused_rows = await p.locator(ROWS).count()
    body["payload"] = f"while paused {secrets.token_hex(6)}"
    response = await stack.client.post("/v1/logs", json=body)
    assert response.status_code == 202, response.text
    await p.mouse.wheel(0, -10_000)  # back at the top: it resumes and brings the log in
    await expect(p.locator(".live-state")).not_to_contain_text("paused")
    await expect(p.locator(ROWS).first.locator(".payload")).to_have_text(
        body["payload"], timeout=15_000
    )
    assert await p.locator(ROWS).count() == paused_rows + 1
