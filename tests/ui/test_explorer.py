"""The explorer page of the web UI in a real browser (Debian's chromium through Playwright)
against a real `lms api`, `lms mon`, emulator and MariaDB seeded with known logs
(tests/ui_stack.py): what the page shows is checked against what the API answers."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from lms.ui import CSP
from tests.helpers import rfc3339, wait_until
from tests.ui.stack import (
    ROWS,
    TRACE,
    USER,
    WORD,
    XSS,
    Console,
    Stack,
    assert_quiet,
    open_page,
)

pytestmark = pytest.mark.integration

LOCAL_INPUT = "%Y-%m-%dT%H:%M:%S"  # what <input type=datetime-local step=1> holds


async def shown_ids(page: Page) -> list[int]:
    await expect(page.locator(".status.loading")).to_have_count(0)
    return [
        int(i) for i in await page.locator(ROWS).evaluate_all("els => els.map(e => e.dataset.id)")
    ]


def url_params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def api_ids(stack: Stack, **params: object) -> list[int]:
    body = await stack.api("/v1/logs", limit=100, **params)
    return [log["id"] for log in body["logs"]]


# --- serving ---------------------------------------------------------------------------


async def test_root_is_the_ui_for_browsers_and_elasticsearch_info_otherwise(stack: Stack) -> None:
    html = await stack.client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert '<div id="app">' in html.text
    probe = await stack.client.get("/", headers={"Accept": "application/json"})
    assert probe.json()["version"]["number"].startswith("8.")
    assert probe.headers["x-elastic-product"] == "Elasticsearch"
    assert (await stack.client.head("/", headers={"Accept": "text/html"})).headers[
        "x-elastic-product"
    ] == "Elasticsearch"
    asset = re.search(r'src="(/ui/assets/[^"]+\.js)"', html.text)
    assert asset is not None
    script = await stack.client.get(asset.group(1))
    assert script.status_code == 200
    assert "immutable" in script.headers["cache-control"]


# --- the explorer ----------------------------------------------------------------------


async def test_text_search_finds_exactly_what_the_api_finds(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    await p.goto(stack.url + "/?range=7d")
    await p.keyboard.press("/")  # focuses the search
    await expect(p.locator("#q")).to_be_focused()
    await p.keyboard.type(WORD)
    await p.keyboard.press("Enter")
    await expect(p).to_have_url(re.compile(f"q={WORD}"))
    since = rfc3339(stack.now - timedelta(days=7, minutes=5))
    expected = await api_ids(stack, q=WORD, **{"from": since})
    assert len(expected) == 6  # the seeded ones, the 10-day-old one aside
    await expect(p.locator(ROWS)).to_have_count(len(expected))
    assert await shown_ids(p) == expected  # the same logs, newest first
    await p.locator("#q").press("Escape")
    await expect(p.locator("#q")).to_have_value("")
    await expect(p).not_to_have_url(re.compile("q="))


async def test_severity_chips_and_paging(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    await p.goto(stack.url + "/")
    await expect(p.locator(ROWS)).to_have_count(100)
    newest = await stack.api(
        "/v1/logs", limit=1000, **{"from": rfc3339(stack.now - timedelta(minutes=55))}
    )
    in_order = [log["id"] for log in newest["logs"]]
    assert len(in_order) > 200
    # The button, without scrolling it into view (a scroll would load pages by itself, and
    # the rows it adds move the button away from under the click).
    await p.get_by_role("button", name="Load more").dispatch_event("click")
    await expect(p.locator(ROWS)).to_have_count(200)
    assert await shown_ids(p) == in_order[:200]
    # The scroll: reaching the end of the list loads the next pages until there is no more.
    await p.locator(".more").scroll_into_view_if_needed()
    await expect(p.locator(".more")).to_have_count(0, timeout=20_000)
    ids = await shown_ids(p)
    assert len(set(ids)) == len(ids) and ids[: len(in_order)] == in_order
    await p.locator(".chips").get_by_role("button", name="error").click()
    await expect(p).to_have_url(re.compile("severity=error"))
    errors = [
        s
        for s in stack.seeds
        if s.body["severity"] == "error" and s.at > stack.now - timedelta(hours=1)
    ]
    await expect(p.locator(ROWS)).to_have_count(len(errors))
    severities = await p.locator(f"{ROWS} .log-summary .sev").all_inner_texts()
    assert {s.lower() for s in severities} == {"error"}
    await expect(p.locator(".chips").get_by_role("button", name="error")).to_have_attribute(
        "aria-pressed", "true"
    )


async def test_trace_id_click_filters_by_the_trace(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    traced = stack.ids["ui-13"]
    await p.goto(stack.url + f"/?range=1h&open={traced}")
    detail = p.locator(f".log-detail[data-log-id='{traced}']")
    await expect(detail).to_be_visible()
    await detail.locator("button[data-filter='trace_id']").click()
    await expect(p).to_have_url(re.compile(f"trace_id={TRACE}"))
    want = sorted(stack.ids[f"ui-{i}"] for i in (12, 13, 14))
    await expect(p.locator(ROWS)).to_have_count(3)
    assert sorted(await shown_ids(p)) == want
    assert await api_ids(stack, trace_id=TRACE) == await shown_ids(p)


async def test_time_presets_filter(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    await p.goto(stack.url + "/")
    await expect(p.locator(".zone").first).to_contain_text("Europe/Berlin")
    clicked = datetime.now(UTC).replace(tzinfo=None)
    await p.get_by_role("button", name="Last 15 min").click()
    await expect(p).to_have_url(re.compile("range=15m"))
    # A seed every 12 s: one may cross the boundary between this clock and the page's.
    recent = [s for s in stack.seeds if s.at >= clicked - timedelta(minutes=15)]

    async def narrowed() -> bool:
        return abs(await p.locator(ROWS).count() - len(recent)) <= 1

    await wait_until(narrowed, timeout=20, message="the last 15 minutes shown")
    shown = await p.locator(f"{ROWS} time").evaluate_all("els => els.map(e => e.dateTime)")
    oldest = min(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in shown)
    assert oldest.replace(tzinfo=None) >= clicked - timedelta(minutes=15, seconds=1)
    await p.get_by_role("button", name="Last 7 d").click()
    await p.locator("#q").fill(WORD)
    await p.locator("#q").press("Enter")
    await expect(p.locator(ROWS)).to_have_count(6)
    # 2 days old: in the last 7 days, not in the last 24 hours; 10 days old: in neither.
    assert stack.ids["ui-300"] in await shown_ids(p)
    assert stack.ids["ui-301"] not in await shown_ids(p)
    await p.get_by_role("button", name="Last 24 h").click()
    await expect(p.locator(ROWS)).to_have_count(5)


async def test_absolute_range_is_read_in_the_browsers_time_zone(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    await p.goto(stack.url + "/")
    await expect(p.locator(ROWS)).to_have_count(100)
    start = (stack.now - timedelta(minutes=35)).replace(microsecond=0, tzinfo=UTC)
    end = (stack.now - timedelta(minutes=30)).replace(microsecond=0, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")  # the page's zone (open_page), an hour or two from UTC
    form = p.locator("form.absolute")
    await form.locator("input[name=from]").fill(start.astimezone(berlin).strftime(LOCAL_INPUT))
    await form.locator("input[name=to]").fill(end.astimezone(berlin).strftime(LOCAL_INPUT))
    await form.get_by_role("button", name="Apply range").click()
    await expect(p).to_have_url(re.compile("to="))
    params = url_params(p)
    assert "range" not in params
    assert datetime.fromisoformat(params["from"][0]) == start
    assert datetime.fromisoformat(params["to"][0]) == end
    expected = await api_ids(stack, **{"from": rfc3339(start), "to": rfc3339(end)})
    assert 0 < len(expected) < 100  # one page, so every log of the range is on screen
    await expect(p.locator(ROWS)).to_have_count(len(expected))
    assert await shown_ids(p) == expected
    await p.reload()  # the range lives in the URL
    await expect(p.locator(ROWS)).to_have_count(len(expected))
    assert await form.locator("input[name=from]").input_value() == start.astimezone(
        berlin
    ).strftime(LOCAL_INPUT)


async def test_histogram_drag_narrows_the_range_and_the_url(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    await p.goto(stack.url + "/?range=6h")
    await expect(p.locator(".histogram .hint")).to_contain_text("per minute")
    over = p.locator(".histogram .u-over")
    box = await over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await p.mouse.move(box["x"] + box["width"] * 0.80, y)
    await p.mouse.down()
    await p.mouse.move(box["x"] + box["width"] * 0.90, y, steps=5)
    await p.mouse.up()
    await expect(p).not_to_have_url(re.compile("range="))
    params = url_params(p)
    since = datetime.fromisoformat(params["from"][0].replace("Z", "+00:00"))
    until = datetime.fromisoformat(params["to"][0].replace("Z", "+00:00"))
    span = until - since
    assert timedelta(minutes=20) < span < timedelta(minutes=50), span  # a tenth of 6 h
    inside = [s for s in stack.seeds if since <= s.at.replace(tzinfo=UTC) < until]
    assert inside, "the seeds cover the last 5 hours"
    first_inside = rfc3339(max(s.at for s in inside).replace(tzinfo=UTC))
    await expect(p.locator(f"{ROWS} time").first).to_have_attribute(
        "datetime", re.compile(re.escape(first_inside[:19]))
    )
    await expect(p.locator(ROWS)).to_have_count(min(len(inside), 100))
    times = await p.locator(f"{ROWS} time").evaluate_all("els => els.map(e => e.dateTime)")
    for t in times:
        assert since <= datetime.fromisoformat(t.replace("Z", "+00:00")) < until
    # the legend toggles the severity filter
    await p.locator(".legend").get_by_role("button", name=re.compile("^warn")).click()
    await expect(p).to_have_url(re.compile("severity=warn"))
    await expect(p.locator(f"{ROWS} .log-summary .sev").first).to_have_text("warn")
    sev = await p.locator(f"{ROWS} .log-summary .sev").all_inner_texts()
    assert sev and {s.lower() for s in sev} == {"warn"}


async def test_reload_and_a_pasted_url_restore_the_view(
    stack: Stack, browser: Browser, page: tuple[Page, Console]
) -> None:
    p, _ = page
    opened = stack.ids["ui-90"]  # an info log with the word
    await p.goto(stack.url + "/")
    await p.locator("#q").fill(WORD)
    await p.locator("#q").press("Enter")
    await p.locator(".chips").get_by_role("button", name="info").click()
    await p.locator(".chips").get_by_role("button", name="warn").click()
    await p.get_by_role("button", name="Last 6 h").click()
    await p.locator(f"li[data-id='{opened}'] .log-summary").click()
    await expect(p.locator(f".log-detail[data-log-id='{opened}']")).to_be_visible()
    url = p.url

    async def same_view(q: Page) -> None:
        await expect(q.locator("#q")).to_have_value(WORD)
        for name, pressed in (("info", "true"), ("warn", "true"), ("error", "false")):
            chip = q.locator(".chips").get_by_role("button", name=name)
            await expect(chip).to_have_attribute("aria-pressed", pressed)
        await expect(q.get_by_role("button", name="Last 6 h")).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(q.locator(f".log-detail[data-log-id='{opened}']")).to_be_visible()

    await p.reload()
    await same_view(p)
    async with open_page(browser) as (pasted, console):
        await pasted.goto(url)
        await same_view(pasted)
        assert_quiet(console)


async def test_back_and_forward(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    await p.goto(stack.url + "/?range=1h")
    await p.locator(".chips").get_by_role("button", name="fatal").click()
    await expect(p).to_have_url(re.compile("severity=fatal"))
    await expect(p.locator(ROWS).first).to_have_class(re.compile("sev-row-fatal"))
    await expect(p.locator(f"{ROWS}:not(.sev-row-fatal)")).to_have_count(0)
    fatal = await shown_ids(p)
    await p.get_by_role("button", name="Last 15 min").click()
    await expect(p).to_have_url(re.compile("range=15m"))
    await p.go_back()
    await expect(p).to_have_url(re.compile("range=1h"))
    await expect(p.locator(ROWS)).to_have_count(len(fatal))
    assert await shown_ids(p) == fatal
    await p.go_back()
    await expect(p).not_to_have_url(re.compile("severity="))
    await expect(p.locator(ROWS)).to_have_count(100)
    await p.go_forward()
    await expect(p).to_have_url(re.compile("severity=fatal"))
    await expect(p.locator(ROWS)).to_have_count(len(fatal))


async def test_expanded_row_shows_every_field_and_its_metadata(
    stack: Stack, page: tuple[Page, Console]
) -> None:
    p, _ = page
    target = stack.ids["ui-20"]
    await p.goto(stack.url + "/")
    await p.locator(f"li[data-id='{target}'] .log-summary").click()
    await expect(p).to_have_url(re.compile(f"open={target}"))
    detail = p.locator(f".log-detail[data-log-id='{target}']")
    metadata = json.loads(await detail.locator("pre.metadata").inner_text())
    assert metadata == stack.seeds[20].body["metadata"]
    await expect(detail.locator("button[data-filter='user_id']")).to_have_text(USER)
    await expect(detail.locator("button[data-filter='resource_id']")).to_have_text("res-0")
    await expect(detail.get_by_role("button", name="Copy JSON")).to_be_visible()
    # the user click filters by metadata.user_id
    await detail.locator("button[data-filter='user_id']").click()
    await expect(p).to_have_url(re.compile(f"user_id={USER}"))
    await expect(p.locator(ROWS)).to_have_count(4)


async def test_a_payload_with_markup_stays_text(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    target = stack.ids["ui-30"]
    await p.goto(stack.url + f"/?open={target}")
    detail = p.locator(f".log-detail[data-log-id='{target}']")
    await expect(detail.locator(".payload-full")).to_have_text(XSS)
    await expect(p.locator(f"li[data-id='{target}'] .payload")).to_have_text(XSS)
    assert await p.evaluate("window.__xss") is None
    assert await p.locator("main script, main img, main b").count() == 0
    assert "<i>markup</i>" in await detail.locator("pre.metadata").inner_text()


async def test_api_errors_are_shown_in_words(stack: Stack, page: tuple[Page, Console]) -> None:
    p, console = page
    await p.goto(stack.url + "/?trace_id=%20abc")  # edge whitespace: no id can be that
    alert = p.locator(".results [role='alert']")
    await expect(alert).to_contain_text("422")
    await expect(alert).to_contain_text("trace_id")
    await expect(p.locator(".status.empty")).to_have_count(0)
    # chromium logs each refused request: the expected ones are the 422s of this URL
    console.errors[:] = [e for e in console.errors if "422" not in e]
    await p.goto(stack.url + f"/?q={secrets.token_hex(8)}zz")
    await expect(p.locator(".status.empty")).to_contain_text("No logs match")


async def test_download_ndjson_and_csv(
    stack: Stack, page: tuple[Page, Console], tmp_path: Path
) -> None:
    p, _ = page
    await p.goto(stack.url + f"/?q={WORD}&range=7d")
    await expect(p.locator(ROWS)).to_have_count(6)
    async with p.expect_download() as info:
        await p.get_by_role("button", name="Download NDJSON").click()
    path = tmp_path / "logs.ndjson"
    await (await info.value).save_as(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [log["id"] for log in lines] == await shown_ids(p)
    async with p.expect_download() as info:
        await p.get_by_role("button", name="Download CSV").click()
    csv_path = tmp_path / "logs.csv"
    await (await info.value).save_as(csv_path)
    assert len(csv_path.read_text().strip().splitlines()) == 7  # a header and 6 logs


async def test_permalink_opens_the_log_in_context(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    target = stack.ids["ui-13"]
    await p.goto(stack.url + f"/ui/logs/{target}")
    detail = p.locator(f".log-page .log-detail[data-log-id='{target}']").first
    await expect(detail).to_be_visible()
    await expect(detail.locator(".payload-full")).to_have_text(stack.seeds[13].body["payload"])
    context = p.locator("section.context")
    # around it: the same service within 5 minutes either side, itself expanded among them
    at = stack.seeds[13].at
    around = [
        s
        for s in stack.seeds
        if s.body["service_name"] == "checkout" and abs(s.at - at) < timedelta(minutes=5)
    ]
    await expect(context.locator(ROWS)).to_have_count(len(around))
    await expect(context.locator(f".log-detail[data-log-id='{target}']")).to_be_visible()
    await p.get_by_role("link", name="Its trace").first.click()
    await expect(p).to_have_url(re.compile("view=trace"))
    await expect(context.locator(ROWS)).to_have_count(3)
    # the user's requests, oldest first, from a log of that user
    user_log = stack.ids["ui-40"]
    await p.goto(stack.url + f"/ui/logs/{user_log}?view=user")
    await expect(context.locator(ROWS)).to_have_count(4)
    ids = await context.locator(ROWS).evaluate_all("els => els.map(e => Number(e.dataset.id))")
    body = await stack.api(f"/v1/users/{USER}/requests")
    assert ids == [log["id"] for log in body["requests"]]


async def test_facet_click_filters(stack: Stack, page: tuple[Page, Console]) -> None:
    p, _ = page
    await p.goto(stack.url + "/")
    facets = p.locator("aside.facets")
    await expect(facets.locator(".status.loading")).to_have_count(0)
    await facets.locator(".facet[data-field='service_name'] button", has_text="worker").click()
    await expect(p).to_have_url(re.compile("service=worker"))
    # The filtered page replaces the unfiltered one once its query answers: wait for it rather
    # than read the rows at once (a fresh-clone CI run read them in between, and found none).
    services = p.locator(f"{ROWS} .service")
    await expect(services.first).to_have_text("worker")
    await expect(p.locator(f"{ROWS} .service", has_not_text="worker")).to_have_count(0)
    assert set(await services.all_inner_texts()) == {"worker"}
