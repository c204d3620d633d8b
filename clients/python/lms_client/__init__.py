"""lms-client: send Python logs to LMS, the Log Monitoring Server.

    import logging
    from lms_client import LMSHandler, HTTPTransport

    logging.getLogger().addHandler(
        LMSHandler(service_name="checkout", transport=HTTPTransport(url="http://lms:3000"))
    )

See README.md of clients/python for the options, the transports and the field mapping, and
for ASGIMiddleware and WSGIMiddleware, which log every HTTP request of an app.
"""

from __future__ import annotations

__version__ = "0.1.0"

from lms_client.asgi import ASGIMiddleware
from lms_client.counters import Counters, Problem
from lms_client.delivery import Timer
from lms_client.entry import Entry
from lms_client.handler import LMSHandler
from lms_client.http import HTTPTransport
from lms_client.pubsub import PubSubTransport
from lms_client.requestlog import Sequencer
from lms_client.transport import Refused, Retryable, Transport
from lms_client.wsgi import WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "Counters",
    "Entry",
    "HTTPTransport",
    "LMSHandler",
    "Problem",
    "PubSubTransport",
    "Refused",
    "Retryable",
    "Sequencer",
    "Timer",
    "Transport",
    "WSGIMiddleware",
    "__version__",
]
