"""Parts a and a2: the bare Pub/Sub drain, the ceiling the emulator sets for any consumer."""

from __future__ import annotations

import asyncio
import time

from google.api_core import exceptions as gexc
from google.pubsub_v1 import PullResponse

from bench.pipeline.common import Context, Meter, publish_backlog, say
from lms.devtools.backlog import subscription_backlog
from lms.devtools.resources import delete_resources
from lms.ingest.sources.pubsub import client as pubsub
from lms.settings import Settings


async def drain(settings: Settings, count: int, hold: int = 0, idle_timeout: float = 30.0) -> dict:
    """Pull 1,000 at a time from one task; ack each response at once (or per `hold` held).

    The acks run as tasks, so pulling never waits for them. Timed from the first pull to the
    pull that brought the last message.
    """
    path = settings.subscription_path
    received = pulls = 0
    largest = 0
    acks: list[asyncio.Task[None]] = []
    held: list[str] = []
    async with pubsub.subscriber_client(settings) as client:

        async def ack(ack_ids: list[str]) -> None:
            for start in range(0, len(ack_ids), 2500):
                await client.acknowledge(subscription=path, ack_ids=ack_ids[start : start + 2500])

        started = last = time.perf_counter()
        while received < count:
            try:
                response = await client.pull(
                    subscription=path, max_messages=1000, timeout=10, retry=None
                )
            except gexc.DeadlineExceeded:
                response = None
            messages = PullResponse.pb(response).received_messages if response else []
            if not messages:
                if time.perf_counter() - last > idle_timeout:
                    raise RuntimeError(f"drain stalled at {received} of {count} messages")
                continue
            pulls += 1
            received += len(messages)
            largest = max(largest, len(messages))
            last = time.perf_counter()
            ack_ids = [rm.ack_id for rm in messages]
            if hold:
                held.extend(ack_ids)
                if len(held) >= hold:
                    acks.append(asyncio.create_task(ack(held)))
                    held = []
            else:
                acks.append(asyncio.create_task(ack(ack_ids)))
        seconds = last - started
        if held:
            acks.append(asyncio.create_task(ack(held)))
        await asyncio.gather(*acks)
    return {
        "messages": received,
        "seconds": seconds,
        "rate": received / seconds,
        "pulls": pulls,
        "per_pull": received / max(pulls, 1),
        "largest_pull": largest,
    }


async def part_drain(ctx: Context, hold: int) -> dict:
    part = "a2" if hold else "a"
    settings = ctx.settings(part)
    ctx.databases.pop()  # no database in this part
    try:
        published = await publish_backlog(settings, ctx.messages(ctx.args.messages))
        meter = Meter(ctx).start()
        result = await drain(settings, ctx.args.messages, hold=hold)
        result.update(meter.stop())
        result["publish_rate"] = published["rate"]
        result["backlog_after"] = await subscription_backlog(settings, pull_timeout=2.0)
        if hold:
            result["hold"] = hold
        return result
    finally:
        await delete_resources(settings)


async def warm_up(ctx: Context) -> None:
    """JIT-warm the emulator with a small publish + drain, so part (a) is not penalised."""
    settings = ctx.settings("warmup")
    ctx.databases.pop()
    count = ctx.args.warmup
    if not count:
        return
    say(f"== warm-up: {count:,} messages through the emulator")
    try:
        await publish_backlog(settings, ctx.messages(count))
        await drain(settings, count)
    finally:
        await delete_resources(settings)
    await asyncio.sleep(3)  # let its JIT and GC settle
