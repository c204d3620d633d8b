"""The web UI's build and serving without a browser: its own JavaScript and CSS within the
issue's 300 KB gzipped, no inline script in its page, a clear answer when it is not built,
and API_UI=false turning it off (GET / back to Elasticsearch's info for everyone)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import lms.ui
from lms.api.app import create_app
from lms.settings import Settings
from tests.conftest import query_settings

BUDGET = 300 * 1024
"""Bytes, gzipped: the issue's limit for the page's own JavaScript and CSS."""
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _settings(**overrides: object) -> Settings:
    # No query is made: these tests read the UI's routes only (the pool opens lazily).
    return query_settings("lms_ui_unused").model_copy(update=overrides)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as c:
        yield c


def test_built_javascript_and_css_fit_the_budget() -> None:
    assets = lms.ui.STATIC_DIR / "assets"
    assert lms.ui.built(), lms.ui.NOT_BUILT
    files = [p for p in assets.iterdir() if p.suffix in (".js", ".css")]
    assert any(p.suffix == ".js" for p in files) and any(p.suffix == ".css" for p in files)
    size = sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in files)
    assert size <= BUDGET, f"{size} bytes gzipped > {BUDGET}"


def test_page_has_no_inline_script() -> None:
    page = (lms.ui.STATIC_DIR / "index.html").read_text()
    scripts = page.count("<script")
    assert scripts == page.count('<script type="module" crossorigin src="/ui/assets/') == 1


async def test_every_ui_path_is_the_page_with_the_policy(client: httpx.AsyncClient) -> None:
    for path in ("/ui/", "/ui/services", "/ui/logs/12"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == lms.ui.CSP
        assert response.headers["cache-control"] == "no-cache"
    root = await client.get("/", headers=HTML)
    assert root.text == (await client.get("/ui/")).text


async def test_a_ui_that_is_not_built_says_what_to_do(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lms.ui, "STATIC_DIR", tmp_path)  # an empty build directory
    for path in ("/ui/", "/ui/assets/index.js"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 503
        assert "make install" in response.text and "API_UI=false" in response.text


async def test_api_ui_false_turns_it_off() -> None:
    app = create_app(_settings(api_ui=False, api_ingest=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as c:
        assert (await c.get("/ui/")).status_code == 404
        root = await c.get("/", headers=HTML)
        assert root.headers["x-elastic-product"] == "Elasticsearch"
