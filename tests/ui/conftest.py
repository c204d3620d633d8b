"""The fixtures every browser test module shares: one running stack (lms api, lms mon, the
emulator, a seeded database) and one chromium per module, and a fresh page per test that
fails the test if the browser's console logged an error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from tests.ui.stack import Console, Stack, assert_quiet, chromium, open_page, running_stack


@pytest.fixture(scope="module")
async def stack(
    request: pytest.FixtureRequest,
    pubsub_emulator: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    async with running_stack(pubsub_emulator, workdir) as s:
        yield s


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[tuple[Page, Console]]:
    async with open_page(browser) as (p, console):
        yield p, console
        assert_quiet(console)
