"""`lms`, the command line: one module per command group; it parses arguments and wires the
parts together, nothing more."""

from lms.cli.main import main

__all__ = ["main"]
