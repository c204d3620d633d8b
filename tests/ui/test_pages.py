"""The web UI's other pages (Services, Analytics, Health), the permalink page, the token
flow, phone width, accessibility (axe-core: no serious or critical violation) and the light
and dark screenshots of every page under .run/ui/ for people to look at; in a real chromium
against a real `lms api`, `lms mon`, emulator and MariaDB (tests/ui_stack.py)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from tests.helpers import rfc3339
from tests.lms_process import lms_api
from tests.ui.stack import (
    ROWS,
    SHOTS,
    USER,
    WORD,
    Stack,
    assert_quiet,
    axe_violations,
    open_page,
)

pytestmark = pytest.mark.integration


def pages(stack: Stack) -> dict[str, str]:
    """Every page, by the name of its screenshot."""
    return {
        "explorer": "/?range=1h",
        "explorer-expanded": f"/?range=1h&open={stack.ids['ui-20']}",
        "log-in-context": f"/ui/logs/{stack.ids['ui-13']}",
        "services": "/ui/services",
        "analytics": f"/ui/analytics?user={USER}",
        "health": "/ui/health",
    }


async def settled(page: Page) -> None:
    """Every load the page started has answered (loading states gone)."""
    await expect(page.locator("main")).to_be_visible()
    await expect(page.locator(".status.loading")).to_have_count(0, timeout=20_000)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_page_passes_axe_and_is_photographed(
    stack: Stack, browser: Browser, scheme: str
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, object] = {}
    async with open_page(browser, scheme, bypass_csp=True) as (page, console):
        for name, path in pages(stack).items():
            await page.goto(stack.url + path)
            await settled(page)
            assert await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (
                scheme == "dark"
            )
            await page.screenshot(path=SHOTS / f"{name}-{scheme}.png", full_page=True)
            violations = await axe_violations(page)
            if violations:
                found[name] = violations
        assert_quiet(console)
    assert not found, found


async def test_phone_width(stack: Stack, browser: Browser) -> None:
    """390 px wide: nothing wider than the screen, the results still readable."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with open_page(browser, width=390, height=844) as (page, console):
        for name, path in pages(stack).items():
            await page.goto(stack.url + path)
            await settled(page)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (name, width)
            await page.screenshot(path=SHOTS / f"{name}-phone.png", full_page=True)
        assert_quiet(console)


async def test_services_page(stack: Stack, browser: Browser) -> None:
    expected = (await stack.api("/v1/services"))["services"]
    async with open_page(browser) as (page, console):
        await page.goto(stack.url + "/ui/services")
        await settled(page)
        rows = page.locator("table.services tbody tr")
        await expect(rows).to_have_count(len(expected))
        for i, service in enumerate(expected):
            cells = await rows.nth(i).locator("td.num").all_inner_texts()
            # five severities then the total, then the error rate
            assert [int(c.replace(",", "")) for c in cells[:6]] == [
                *(service["severity"][s] for s in ("debug", "info", "warn", "error", "fatal")),
                service["total"],
            ]
            assert cells[6].endswith("%")
        await expect(page.locator("table.services canvas")).to_have_count(len(expected))
        await page.get_by_role("link", name="worker").click()
        await expect(page).to_have_url(re.compile(r"/\?.*service=worker"))
        await expect(page.locator(f"{ROWS} .service").first).to_have_text("worker")
        services = await page.locator(f"{ROWS} .service").all_inner_texts()
        assert services and set(services) == {"worker"}
        assert_quiet(console)


async def test_analytics_page(stack: Stack, browser: Browser) -> None:
    async with open_page(browser) as (page, console):
        await page.goto(stack.url + f"/ui/analytics?user={USER}")
        await settled(page)
        await expect(
            page.locator("#h-volume ~ .chart canvas, section .chart canvas").first
        ).to_be_visible()
        # The seeded request logs: 4 of GET /cart, in a row per service.
        routes = page.locator("section[aria-labelledby='h-routes'] tbody tr")
        answer = await stack.api(
            "/v1/analytics/requests", **{"from": rfc3339(stack.now - timedelta(days=30))}
        )
        await expect(routes).to_have_count(len(answer["routes"]))
        assert sum(route["count"] for route in answer["routes"]) == 4
        assert set(await routes.locator("th").all_inner_texts()) == {"GET /cart"}
        counts = await routes.locator("td.num:nth-of-type(2)").all_inner_texts()
        assert sorted(counts) == sorted(str(route["count"]) for route in answer["routes"])
        requests = page.locator("section[aria-labelledby='h-user'] " + ROWS)
        body = await stack.api(f"/v1/users/{USER}/requests")
        await expect(requests).to_have_count(len(body["requests"]))
        ids = await requests.evaluate_all("els => els.map(e => Number(e.dataset.id))")
        assert ids == [log["id"] for log in body["requests"]]
        # a pattern's click shows its logs
        patterns = (await stack.api("/v1/analytics/patterns", limit=20))["patterns"]
        word = next(p for p in patterns if WORD in p["template"])
        await page.locator("ol.patterns a", has_text=WORD).first.click()
        await expect(page).to_have_url(re.compile(f"pattern={word['pattern_id']}"))
        await expect(page.locator(f"{ROWS} .payload").first).to_contain_text(WORD)
        payloads = await page.locator(f"{ROWS} .payload").all_inner_texts()
        assert payloads and all(WORD in p for p in payloads)
        assert_quiet(console)


async def test_health_page(stack: Stack, browser: Browser) -> None:
    consistent = (await stack.api("/v1/consistency"))["consistent"]
    async with open_page(browser) as (page, console):
        await page.goto(stack.url + "/ui/health")
        await settled(page)
        await expect(page.locator("[data-consistent]")).to_have_attribute(
            "data-consistent", str(consistent).lower()
        )
        state = page.locator(".pipeline-state")
        await expect(state).to_have_count(1)
        pipeline = await stack.api("/v1/pipeline")
        assert pipeline["state"] == "ok", pipeline  # the stack's lms mon, via MON_METRICS_URL
        await expect(state).to_have_attribute("data-state", "ok")
        await expect(state).to_contain_text("ok")
        assert_quiet(console)


async def test_token_flow(
    stack: Stack, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With API_TOKEN the page asks once, keeps it in sessionStorage, sends it as a bearer
    token (never in a URL, no cookie), and asks again when it is refused."""
    token = "ui-" + secrets.token_hex(16)
    workdir = tmp_path_factory.mktemp("ui-token")
    async with lms_api(stack.settings, workdir, API_TOKEN=token, API_INGEST="false") as client:
        url = str(client.base_url).rstrip("/")
        async with open_page(browser) as (page, console):
            sent: list[tuple[str, str | None]] = []
            page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
            await page.goto(url + "/")  # the page itself needs no token
            dialog = page.get_by_role("dialog")
            await expect(dialog).to_be_visible()
            await page.locator("#token").fill("wrong-" + token)
            await page.get_by_role("button", name="Use this token").click()
            await expect(dialog).to_contain_text("refused")
            await page.locator("#token").fill(token)
            await page.get_by_role("button", name="Use this token").click()
            await expect(dialog).to_have_count(0)
            await expect(page.locator(ROWS)).to_have_count(100)
            assert await page.evaluate("sessionStorage.getItem('lms.token')") == token
            await page.reload()  # once per session: no second prompt
            await expect(page.locator(ROWS)).to_have_count(100)
            await expect(dialog).to_have_count(0)
            api_calls = [(u, a) for u, a in sent if "/v1/" in u]
            assert api_calls and all(token not in u for u, _ in sent)
            assert (api_calls[-1][1] or "") == f"Bearer {token}"
            assert not await page.context.cookies()
            # The refused requests (no token, then the wrong one) are the only errors.
            assert_quiet(console, "401")
