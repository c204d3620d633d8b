"""Numbers in HTTP header and status values, which are ASCII digits only.

`str.isdigit()` also takes superscripts and the digits of other scripts, and `int()` and
`float()` refuse some of them: "²", which is what the byte 0xB2 becomes in latin-1, the way
ASGI and WSGI servers hand header bytes over. Such a value reads as no number: it must never
raise into the request being logged.
"""

from __future__ import annotations


def digits(text: str) -> bool:
    """Whether `text` is one or more ASCII digits: a number `int()` reads."""
    return text.isascii() and text.isdigit()
