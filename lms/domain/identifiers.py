"""What a name or an id may not hold: whitespace at either end, or control characters.

Service names and ids are compared by the database in `utf8mb4_bin`, a PAD SPACE collation:
`svc` and `svc   ` are one value in GROUP BY, in filters and in unique keys, so two services
(or two idempotency keys) would silently become one. A control character has no business in
a name or an id, and could carry a terminal escape sequence to whoever prints it. So these
values are refused, never trimmed: altering a client's value silently would break its own
lookups. Payloads may hold both, so whatever prints stored text shows it through
`printable`, which escapes control characters (names stored before these rules included).
"""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode's control characters (category Cc): C0, DEL and C1 (0x9b is an 8-bit CSI)."""
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be a service name or an id (a phrase to follow the field's name),
    or None when it can.

    str.isprintable() is one C pass and true for the usual value; only a printable value
    with a space at either end, or a value with non-printable characters, is looked at more.
    """
    if value.isprintable():
        if not (value.startswith(" ") or value.endswith(" ")):
            return None
    else:
        control = CONTROL.search(value)
        if control is not None:
            return f"contains the control character U+{ord(control.group()):04X}"
    if value != value.strip():
        return (
            "starts or ends with whitespace, which the database does not tell apart from the"
            " value without it"
        )
    return None


def printable(text: str) -> str:
    """`text` with each control character as an escape: `\\n`, `\\r`, `\\t`, else `\\xNN`."""
    if text.isprintable():  # one C pass: the usual text costs nothing more
        return text
    return CONTROL.sub(lambda match: _NAMED.get(match[0]) or f"\\x{ord(match[0]):02x}", text)
