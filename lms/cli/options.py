"""What every command group shares: the help epilog, argument types, the handler type."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol, TypeAlias, TypeVar

from lms.settings import Settings

Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
"""A command: runs with the parsed arguments and the loaded settings, returns the exit status."""

Number = TypeVar("Number", int, float)

SETTINGS_HELP = "Configuration comes from environment variables (and a .env file); see README."


class Commands(Protocol):
    """What a command group uses of `add_subparsers()`, whose type argparse keeps private."""

    def add_parser(
        self, name: str, *, help: str, description: str, epilog: str
    ) -> argparse.ArgumentParser: ...


def add_command(
    commands: Commands, name: str, handler: Handler, *, help: str, description: str
) -> argparse.ArgumentParser:
    """The parser of one command, run by `handler`, with the epilog every command shows."""
    parser = commands.add_parser(name, help=help, description=description, epilog=SETTINGS_HELP)
    parser.set_defaults(handler=handler)
    return parser


def positive_int(text: str) -> int:
    return _positive(text, int, "a whole number")


def positive_float(text: str) -> float:
    return _positive(text, float, "a number")


def _positive(text: str, parse: Callable[[str], Number], what: str) -> Number:
    """`text` parsed, or the one-line usage error argparse shows (exit 2)."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value
