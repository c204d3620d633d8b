"""Client benchmark: what LMSHandler costs the application, and what one process delivers.

    .venv/bin/python bench/client_handler.py                 # `make bench` runs it
    .venv/bin/python bench/client_handler.py --calls 20000 --records 30000 --no-docs

1. Cost of one `logger.info("order %s paid", n, extra={...})` through LMSHandler (publishing
   to the emulator in the background meanwhile) against the same call with a
   logging.NullHandler: microseconds per call, the best of `--repeats` runs of `--calls`
   calls each, and their ratio. The call includes building the LogRecord, which both pay.
2. Sustained delivery of one process: `--records` logs emitted as fast as the queue takes
   them (on_full="block", so none is dropped), until the handler's `sent` counter says every
   one was confirmed: by Pub/Sub (PubSubTransport, the emulator) and by `lms api`
   (HTTPTransport; an ingest-only `lms api` subprocess publishing to the same emulator).

Its own emulator (a free port, stopped at the end). Figures are printed and written to
docs/performance.md under "Client handler benchmark" (--no-docs to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients" / "python"))

from bench.pipeline.report import replace_section  # noqa: E402
from lms.devtools.emulator import running_emulator  # noqa: E402
from lms.devtools.monitor_process import child_environment  # noqa: E402
from lms.devtools.ports import free_port  # noqa: E402
from lms.devtools.resources import ensure_resources  # noqa: E402
from lms.settings import Settings, load_settings  # noqa: E402
from lms_client import HTTPTransport, LMSHandler, PubSubTransport, Transport  # noqa: E402

DOCS = ROOT / "docs" / "performance.md"
TITLE = "Client handler benchmark"


def say(text: str) -> None:
    print(text, flush=True)


def bench_logger() -> logging.Logger:
    logger = logging.getLogger("bench.client")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def per_call(
    logger: logging.Logger, calls: int, repeats: int, after: Callable[[], object] = lambda: None
) -> float:
    """Microseconds per logger.info call, the best of `repeats` runs (`after` each run)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for n in range(calls):
            logger.info("order %s paid", n, extra={"order": n, "amount": 12.5})
        best = min(best, time.perf_counter() - began)
        after()
    return best / calls * 1e6


def handler_for(transport: Transport, **options: object) -> LMSHandler:
    return LMSHandler(
        service_name="bench-client",
        transport=transport,
        queue_size=100_000,
        on_error=lambda problem: say(f"  problem: {problem}"),
        **options,  # type: ignore[arg-type]
    )


def call_cost(settings: Settings, calls: int, repeats: int) -> dict[str, float]:
    logger = bench_logger()
    logger.handlers[:] = [logging.NullHandler()]
    null = per_call(logger, calls, repeats)

    def transport() -> PubSubTransport:  # each handler owns (and closes) its transport
        return PubSubTransport(settings.pubsub_project, settings.pubsub_topic)

    # The caller's part alone: batches larger than a run, sent (drained) between the runs.
    quiet = handler_for(transport(), batch_size=10_000, flush_interval=3600.0)
    logger.handlers[:] = [quiet]
    alone = per_call(logger, min(calls, 9_000), repeats, lambda: quiet.drain(120))
    quiet.close()
    # In steady state: the sending thread publishes while the application logs.
    handler = handler_for(transport())
    logger.handlers[:] = [handler]
    lms = per_call(logger, calls, repeats)
    handler.drain(120)
    handler.close()
    logger.handlers.clear()
    dropped = quiet.counters.dropped + handler.counters.dropped
    say(
        f"  NullHandler {null:.2f} us/call; LMSHandler {alone:.2f} us/call with the sender"
        f" idle ({alone / null:.1f}x), {lms:.2f} us/call while it sends ({lms / null:.1f}x);"
        f" dropped {dropped}"
    )
    return {
        "null_us": null,
        "alone_us": alone,
        "lms_us": lms,
        "ratio_alone": alone / null,
        "ratio": lms / null,
        "dropped": dropped,
    }


def delivery_rate(transport: Transport, records: int) -> dict[str, float]:
    """Records/s from the first emit until every record is confirmed (`sent`)."""
    logger = bench_logger()
    handler = handler_for(transport, on_full="block", block_timeout=60.0)
    logger.handlers[:] = [handler]
    began = time.perf_counter()
    for n in range(records):
        logger.info("order %s paid", n, extra={"order": n, "amount": 12.5})
    emitted = time.perf_counter() - began
    handler.drain(300)
    elapsed = time.perf_counter() - began
    handler.close()
    logger.handlers.clear()
    counters = handler.counters
    rate = counters.sent / elapsed
    say(
        f"  {transport!r}: {counters.sent} of {records} sent in {elapsed:.2f} s:"
        f" {rate:,.0f} records/s (emitting took {emitted:.2f} s; dropped {counters.dropped})"
    )
    return {"rate": rate, "sent": counters.sent, "records": records, "seconds": elapsed}


@contextlib.contextmanager
def lms_api(settings: Settings, workdir: Path) -> Iterator[str]:
    """An ingest-only `lms api` subprocess; yields its base URL once /healthz answers."""
    port = free_port()
    env = child_environment(settings, {"API_QUERY": "false", "LOG_LEVEL": "warning"})
    log = (workdir / "api.log").open("wb")
    lms = Path(sys.executable).with_name("lms")
    proc = subprocess.Popen(
        [str(lms), "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lms api did not start: {(workdir / 'api.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def write_docs(results: dict, args: argparse.Namespace) -> None:
    cost, pubsub, http = results["cost"], results["pubsub"], results["http"]
    section = "\n".join(
        [
            f"## {TITLE}",
            "",
            f"`bench/client_handler.py` (`make bench`), {results['when']}: {results['machine']}.",
            "The client library's LMSHandler (clients/python), one process, its own emulator.",
            "",
            "| measure | figure | notes |",
            "|---|---:|---|",
            f"| `logger.info(...)` with logging.NullHandler | {cost['null_us']:.2f} µs/call |"
            f" best of {args.repeats} runs of {args.calls:,} calls; includes making the"
            " LogRecord |",
            f"| `logger.info(...)` with LMSHandler, sender idle | {cost['alone_us']:.2f} µs/call |"
            " the caller's own part: mapping, copying `extra=`, queueing (runs of up to 9,000"
            " calls, encoded and sent between the runs) |",
            f"| ratio, sender idle | {cost['ratio_alone']:.1f}x | LMSHandler / NullHandler |",
            f"| `logger.info(...)` with LMSHandler, while sending | {cost['lms_us']:.2f} µs/call"
            " | the same calls while the sending thread encodes and publishes (it shares the"
            " GIL) |",
            f"| ratio, while sending | {cost['ratio']:.1f}x | LMSHandler / NullHandler |",
            f"| delivered by one process, PubSubTransport | {pubsub['rate']:,.0f} records/s |"
            f" {pubsub['sent']:,} records to the emulator, emit to the last confirmation |",
            f"| delivered by one process, HTTPTransport | {http['rate']:,.0f} records/s |"
            f" {http['sent']:,} records through an ingest-only `lms api` (one worker) to the"
            " emulator |",
            "",
            "Encoding and sending are on the handler's thread: the application pays the"
            " mapping and queueing of each call, plus, while batches are encoded and go out,"
            " its share of the GIL.",
            "HTTPTransport has one request in flight (one sending thread): its rate is a batch"
            " (1,000 logs by default) per round trip through `lms api` and Pub/Sub's confirmation.",
            "On a shared machine the absolute figures vary with its load (this run's is above);"
            " the ratios less so.",
        ]
    )
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Performance\n"
    DOCS.write_text(replace_section(text, TITLE, section), encoding="utf-8")
    say(f"wrote {DOCS}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timing run")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs (best kept)")
    parser.add_argument("--records", type=int, default=30_000, help="records per delivery run")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/performance.md")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the emulator of the run is stopped (its `with`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f} before",
    }
    with tempfile.TemporaryDirectory(prefix="lms-bench-client-") as tmp:
        workdir = Path(tmp)
        with running_emulator(workdir / "emulator.log") as emulator:
            os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
            settings = load_settings(
                _env_file=None,
                pubsub_emulator_host=emulator.host,
                pubsub_project="lms-bench",
                pubsub_topic=f"client-{secrets.token_hex(4)}",
                pubsub_subscription=f"client-{secrets.token_hex(4)}",
            )
            asyncio.run(ensure_resources(settings))
            say("== cost of one logger.info call")
            results["cost"] = call_cost(settings, args.calls, args.repeats)
            say("== records/s delivered by one process")
            results["pubsub"] = delivery_rate(
                PubSubTransport(settings.pubsub_project, settings.pubsub_topic), args.records
            )
            with lms_api(settings, workdir) as url:
                results["http"] = delivery_rate(HTTPTransport(url), args.records)
    results["machine"] += f", {os.getloadavg()[0]:.2f} after"
    if not args.no_docs:
        write_docs(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
