"""Who may call `lms api`: the Host check on loopback, ingestion tokens (Bearer or the password
of HTTP Basic) apart from the read token, and the refusal to serve anonymous ingestion beyond
this machine. The middleware decides before routing, so the app needs no database here."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lms.api.app import create_app
from lms.api.auth import check_exposure, is_ingestion
from lms.devtools.monitor_process import child_environment
from lms.settings import Settings, SettingsError, load_settings

READ = "read-token-" + "r" * 20
INGEST = ["svc-a-" + "a" * 20, "svc-b-" + "b" * 20]


def settings(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **overrides)


async def status(app_settings: Settings, method: str, path: str, **headers: str) -> int:
    app = create_app(app_settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost:3000"
    ) as client:
        response = await client.request(method, path, headers=headers)
        return response.status_code


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("host", ["localhost:3000", "127.0.0.1:1234", "[::1]:3000", "LOCALHOST"])
async def test_loopback_accepts_its_own_names_on_any_port(host: str) -> None:
    assert await status(settings(), "GET", "/healthz", host=host) == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "127.0.0.2", "[::2]:3000"])
async def test_loopback_refuses_other_host_names(host: str) -> None:
    """A page that rebinds its domain to 127.0.0.1 sends its own domain as Host."""
    assert await status(settings(), "GET", "/healthz", host=host) == 400


async def test_allowed_hosts_are_a_setting_and_off_beyond_loopback() -> None:
    assert await status(settings(api_allowed_hosts="*"), "GET", "/healthz", host="a.b") == 200
    custom = settings(api_allowed_hosts="logs.internal")
    assert await status(custom, "GET", "/healthz", host="logs.internal:3000") == 200
    assert await status(custom, "GET", "/healthz", host="localhost") == 400
    exposed = settings(api_host="0.0.0.0", ingest_tokens=",".join(INGEST))
    assert await status(exposed, "GET", "/healthz", host="any.name") == 200


def test_ingestion_paths_are_told_apart_from_the_query_api() -> None:
    assert is_ingestion("POST", "/v1/logs")
    assert not is_ingestion("GET", "/v1/logs")
    for path in ("/otlp/v1/logs", "/loki/api/v1/push", "/api/prom/push", "/_bulk", "/idx/_bulk"):
        assert is_ingestion("POST", path), path
    for path in ("/", "/_cluster/health", "/_license", "/_xpack"):  # Elasticsearch probes
        assert is_ingestion("GET", path), path
    assert not is_ingestion("GET", "/v1/services")


async def test_ingestion_needs_an_ingest_token_as_bearer_or_basic_password() -> None:
    s = settings(api_token=READ, ingest_tokens=" , ".join(INGEST))
    refused = [
        {},
        {"authorization": f"Bearer {READ}"},  # the read token does not write
        {"authorization": "Bearer nope"},
        {"authorization": basic("promtail", "nope")},
        {"authorization": "Basic !!!not-base64"},
        {"authorization": f"Basic {base64.b64encode(INGEST[0].encode()).decode()}"},  # no colon
    ]
    for headers in refused:
        assert await status(s, "POST", "/v1/logs", **headers) == 401, headers
    for token in INGEST:
        for authorization in (f"Bearer {token}", basic("promtail", token)):
            # Past the middleware: whatever the route then answers, it is not a 401.
            assert await status(s, "POST", "/v1/logs", authorization=authorization) != 401


async def test_the_query_api_needs_the_read_token_not_an_ingest_token() -> None:
    s = settings(api_token=READ, ingest_tokens=",".join(INGEST))
    assert await status(s, "GET", "/openapi.json", authorization=f"Bearer {INGEST[0]}") == 401
    assert await status(s, "GET", "/openapi.json", authorization=f"Bearer {READ}") == 200
    assert await status(s, "GET", "/healthz") == 200


async def test_without_ingest_tokens_ingestion_is_open_on_loopback() -> None:
    s = settings(api_token=READ)
    assert await status(s, "POST", "/v1/logs") != 401
    assert await status(s, "GET", "/openapi.json") == 401


def test_anonymous_ingestion_beyond_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(SettingsError, match="INGEST_TOKENS"):
        check_exposure(settings(api_host="0.0.0.0"))
    check_exposure(settings(api_host="0.0.0.0", ingest_tokens=INGEST[0]))
    check_exposure(settings(api_host="0.0.0.0", ingest_allow_anonymous=True))
    check_exposure(settings(api_host="0.0.0.0", api_ingest=False))
    check_exposure(settings(api_host="::1"))
    check_exposure(settings())


def test_lms_api_refuses_to_start_open_to_the_network(tmp_path: Path) -> None:
    lms = Path(sys.executable).with_name("lms")
    result = subprocess.run(
        [str(lms), "api", "--host", "0.0.0.0", "--port", "1"],
        env=child_environment(settings()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("lms api: API_HOST=0.0.0.0 is not a loopback address")
    assert len(result.stderr.strip().splitlines()) == 1
