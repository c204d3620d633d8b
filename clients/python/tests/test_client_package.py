"""The package as an application meets it: light to import, a clear error without the
Pub/Sub extra; and its benchmark still runs (a tiny run, figures not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_ROOT = Path(__file__).resolve().parent.parent
REPO = CLIENT_ROOT.parent.parent


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(CLIENT_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_importing_the_client_pulls_in_nothing_of_the_server() -> None:
    done = _python(
        "import json, sys, lms_client, logging\n"
        "h = lms_client.LMSHandler(service_name='s', transport=lms_client.HTTPTransport("
        "url='http://127.0.0.1:9'), on_error=lambda p: None)\n"
        "h.close(timeout=0)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    assert done.returncode == 0, done.stderr
    top = set(json.loads(done.stdout))
    assert not top & {"lms", "fastapi", "starlette", "aiomysql", "pymysql", "google", "grpc"}


def test_pubsub_transport_without_the_extra_says_how_to_install_it() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['google.pubsub_v1'] = None  # as if google-cloud-pubsub were absent\n"
        "from lms_client import PubSubTransport\n"
        "PubSubTransport(project='p', topic='t')"
    )
    assert done.returncode == 1
    assert "pip install 'lms-client[pubsub]'" in done.stderr


@pytest.mark.integration
def test_the_client_benchmark_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "client_handler.py"),
            *("--calls", "200", "--repeats", "1", "--records", "300", "--no-docs"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "records/s" in done.stdout and "dropped 0" in done.stdout
