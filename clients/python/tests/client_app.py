"""A tiny application for the client's process tests: logs COUNT records through LMSHandler
and exits normally without closing it, so the handler's atexit hook must deliver (or spool)
them. Prints the handler's counters as JSON at the very end (an atexit hook registered before
the handler's, so it runs after it).

    python client_app.py pubsub PROJECT TOPIC COUNT [--spool DIR] [--retry-for S] [--tag T]
    python client_app.py http URL COUNT [--spool DIR] [--retry-for S] [--tag T]
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging

from lms_client import HTTPTransport, LMSHandler, PubSubTransport, Transport

parser = argparse.ArgumentParser()
parser.add_argument("transport", choices=["pubsub", "http"])
parser.add_argument("where", nargs="+")
parser.add_argument("--spool")
parser.add_argument("--retry-for", type=float, default=10.0)
parser.add_argument("--close-timeout", type=float, default=30.0)
parser.add_argument("--tag", default="app")
args = parser.parse_args()

transport: Transport
if args.transport == "pubsub":
    project, topic, count = args.where
    transport = PubSubTransport(project=project, topic=topic, timeout=5)
else:
    url, count = args.where
    transport = HTTPTransport(url=url, timeout=5)

handler_box: list[LMSHandler] = []
atexit.register(lambda: print(json.dumps(dataclasses.asdict(handler_box[0].counters)), flush=True))
handler = LMSHandler(
    service_name="client-app",
    transport=transport,
    spool_dir=args.spool,
    retry_for=args.retry_for,
    close_timeout=args.close_timeout,
    flush_interval=0.2,
)
handler_box.append(handler)
logging.basicConfig(level=logging.INFO, handlers=[handler])
log = logging.getLogger("client-app")
for n in range(int(count)):
    log.info("%s record %d", args.tag, n, extra={"n": n, "tag": args.tag})
