"""Client middleware benchmark: requests/s of a minimal FastAPI endpoint with and without
lms_client.ASGIMiddleware, in the same run.

    .venv/bin/python bench/client_middleware.py                  # `make bench-client` runs it
    .venv/bin/python bench/client_middleware.py --seconds 5 --rounds 2 --no-docs

A real uvicorn process (one worker, access log off) serves `GET /ping` -> `{"ok": true}`,
plain or with the middleware, whose LMSHandler publishes every request's log to Pub/Sub
(its own emulator, a free port); wrk (Debian's `wrk`) loads it with `--connections`
connections for `--seconds` seconds. The two variants alternate for `--rounds` rounds (so a
change in the shared machine's load hits both); the figure is the median of the rounds'
ratios, each within its round (target >= 0.9), beside the ratio of the best round of
each. Beside it, the server process's CPU time per request (all its threads: the event
loop, the handler's sending thread, gRPC's), whose ratio plain / logged is what the req/s
ratio would be if the server's CPU alone limited it: it moves much less with the load of a
shared machine. Written to docs/performance.md, "Client
middleware benchmark" (--no-docs to skip).

    python bench/client_middleware.py --serve plain|logged PORT    (one server, for the run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients" / "python"))

from bench.pipeline.report import replace_section  # noqa: E402
from lms.devtools.emulator import running_emulator  # noqa: E402
from lms.devtools.ports import free_port  # noqa: E402
from lms.devtools.resources import ensure_resources  # noqa: E402
from lms.settings import load_settings  # noqa: E402

DOCS = ROOT / "docs" / "performance.md"
TITLE = "Client middleware benchmark"
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")
_REQUESTS = re.compile(r"(\d+) requests in")


def say(text: str) -> None:
    print(text, flush=True)


def make_app(variant: str) -> object:
    """The app uvicorn serves (a factory: uvicorn configures logging, which closes existing
    logging handlers, before it makes the app, so the LMSHandler comes after)."""
    import fastapi

    app = fastapi.FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    if variant == "logged":
        from lms_client import ASGIMiddleware, LMSHandler, PubSubTransport

        handler = LMSHandler(
            service_name="bench-middleware",
            transport=PubSubTransport(
                project=os.environ["PUBSUB_PROJECT"], topic=os.environ["PUBSUB_TOPIC"]
            ),
            queue_size=100_000,
        )
        app.add_middleware(ASGIMiddleware, handler=handler, user_id=lambda _scope: "bench")
    return app


def serve(variant: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        lambda: make_app(variant),
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def server(variant: str, env: dict[str, str], workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = (workdir / f"{variant}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{variant} did not start: {(workdir / f'{variant}.log')}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def wrk(url: str, seconds: float, connections: int) -> tuple[float, float, int]:
    """(requests/s, mean latency in ms, requests) of wrk against GET {url}/ping."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url + "/ping"],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = _RATE.search(done.stdout)
    latency = _LATENCY.search(done.stdout)
    requests = _REQUESTS.search(done.stdout)
    if rate is None or latency is None or requests is None:
        raise RuntimeError(f"wrk said: {done.stdout}{done.stderr}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)]
    return float(rate.group(1)), float(latency.group(1)) * scale, int(requests.group(1))


Run = tuple[float, float, float]
"""One wrk run of one variant: requests/s, mean latency in ms, server CPU µs per request."""


def summarize(runs: dict[str, list[Run]]) -> dict:
    """Each variant's best round (its rates, the lowest CPU per request); `paired`, the
    rounds' ratios logged / plain, each within its round (the two variants ran back to back
    in it), sorted; `ratio`, their median, the figure, as a shared machine's load moves both;
    `best_ratio` and `cpu_ratio` (plain / logged), of the best rounds."""
    results: dict = {}
    for variant, measured in runs.items():
        best = max(measured)
        results[variant] = {
            "rate": best[0],
            "latency": best[1],
            "rounds": [rate for rate, _, _ in measured],
            "cpu_us": min(cpu for _, _, cpu in measured),
        }
    results["paired"] = sorted(
        logged[0] / plain[0] for plain, logged in zip(runs["plain"], runs["logged"], strict=True)
    )
    results["ratio"] = statistics.median(results["paired"])
    results["best_ratio"] = results["logged"]["rate"] / results["plain"]["rate"]
    results["cpu_ratio"] = results["plain"]["cpu_us"] / results["logged"]["cpu_us"]
    return results


def write_docs(results: dict, args: argparse.Namespace) -> None:
    plain, logged = results["plain"], results["logged"]
    paired, ratio, cpu_ratio = results["paired"], results["ratio"], results["cpu_ratio"]
    verdict = "met" if ratio >= 0.9 else "BELOW"
    section = "\n".join(
        [
            f"## {TITLE}",
            "",
            f"`bench/client_middleware.py` (`make bench-client`), {results['when']}:"
            f" {results['machine']}.",
            f"A minimal FastAPI endpoint (`GET /ping`) in one uvicorn process (access log off),"
            f" under wrk with {args.connections} connections, {args.seconds:g} s per run; plain"
            f" and with `lms_client.ASGIMiddleware` back to back in each of {args.rounds} rounds"
            " (their order alternating); the figure is the median of the rounds' ratios, each"
            " within its round, beside the best round of each. With the middleware, every"
            " request's log is published by the LMSHandler's thread to the Pub/Sub emulator.",
            "",
            "| variant | requests/s | mean latency | server CPU per request"
            " | rounds (requests/s) |",
            "|---|---:|---:|---:|---|",
            f"| plain FastAPI | {plain['rate']:,.0f} | {plain['latency']:.2f} ms |"
            f" {plain['cpu_us']:.0f} µs | {', '.join(f'{r:,.0f}' for r in plain['rounds'])} |",
            f"| with ASGIMiddleware | {logged['rate']:,.0f} | {logged['latency']:.2f} ms |"
            f" {logged['cpu_us']:.0f} µs | {', '.join(f'{r:,.0f}' for r in logged['rounds'])} |",
            f"| ratio, best / best | {results['best_ratio']:.2f} | |"
            f" {cpu_ratio:.2f} (plain / logged) | |",
            f"| ratio, median of the rounds | {ratio:.2f} | | |"
            f" {', '.join(f'{r:.2f}' for r in paired)}; target >= 0.9: {verdict} |",
            "",
            "In the event loop the middleware only captures the request: a seq and timestamp"
            " under a lock, the request id (the instance's prefix and the seq), the user id"
            " callable's answer, the figures written into the request's log object, which is"
            " queued as it is; the user id's check, the log's JSON (one template, with what"
            " each route shares made once) and the publishing run on the handler's thread,"
            " which shares the GIL with the server. Server CPU per request is the"
            " server process's CPU time (every thread) over the requests of the run, the"
            " lowest of the rounds; its ratio is what the requests/s ratio would be were the"
            " server's CPU the only limit. wrk and the server share the machine's CPUs with the"
            " emulator and, on a shared machine, with everything else, so the absolute figures"
            " and the requests/s ratio move with its load (by a few tenths between runs on a"
            " loaded machine), the CPU ratio by about a tenth: on a loaded machine one run"
            " decides nothing, the median of several does.",
        ]
    )
    docs: Path = args.docs
    text = docs.read_text(encoding="utf-8") if docs.exists() else "# Performance\n"
    docs.write_text(replace_section(text, TITLE, section), encoding="utf-8")
    say(f"wrote {docs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/performance.md")
    parser.add_argument(
        "--docs", type=Path, default=DOCS, help="the file the section goes to (docs/performance.md)"
    )
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if shutil.which("wrk") is None:
        say("bench/client_middleware.py needs wrk (Debian: apt-get install -y wrk)")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f} before",
    }
    with tempfile.TemporaryDirectory(prefix="lms-bench-middleware-") as tmp:
        workdir = Path(tmp)
        with running_emulator(workdir / "emulator.log") as emulator:
            settings = load_settings(
                _env_file=None,
                pubsub_emulator_host=emulator.host,
                pubsub_project="lms-bench",
                pubsub_topic=f"middleware-{secrets.token_hex(4)}",
                pubsub_subscription=f"middleware-{secrets.token_hex(4)}",
            )
            asyncio.run(ensure_resources(settings))
            env = {
                **os.environ,
                "PUBSUB_EMULATOR_HOST": emulator.host,
                "PUBSUB_PROJECT": settings.pubsub_project,
                "PUBSUB_TOPIC": settings.pubsub_topic,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "clients" / "python"), str(ROOT)]),
            }
            runs: dict[str, list[Run]] = {"plain": [], "logged": []}
            with server("plain", env, workdir) as plain, server("logged", env, workdir) as logged:
                servers = {"plain": plain, "logged": logged}
                for url, _pid in servers.values():  # warm-up: imports, first connections
                    wrk(url, 1, args.connections)
                time.sleep(1.5)  # the warm-up's last batch is sent
                for n in range(args.rounds):
                    for variant in ("plain", "logged") if n % 2 == 0 else ("logged", "plain"):
                        url, pid = servers[variant]
                        cpu = cpu_seconds(pid)
                        rate, latency, requests = wrk(url, args.seconds, args.connections)
                        # The logged server's sending thread publishes a batch after the run
                        # too: its CPU is the run's.
                        time.sleep(1.5 if variant == "logged" else 0.0)
                        cpu_us = (cpu_seconds(pid) - cpu) / requests * 1e6
                        runs[variant].append((rate, latency, cpu_us))
                        say(
                            f"  round {n + 1} {variant}: {rate:,.0f} req/s, {latency:.2f} ms,"
                            f" server CPU {cpu_us:.0f} us/request"
                        )
    results.update(summarize(runs))
    results["machine"] += f", {os.getloadavg()[0]:.2f} after"
    say(
        f"with the middleware / plain: {results['ratio']:.2f}, median of the rounds"
        f" ({results['paired'][0]:.2f}-{results['paired'][-1]:.2f}; target >= 0.9);"
        f" best / best {results['best_ratio']:.2f};"
        f" by server CPU per request: {results['cpu_ratio']:.2f}"
    )
    if not args.no_docs:
        write_docs(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
