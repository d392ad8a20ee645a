"""The one exception type for mistakes a user can fix (bad path, bad value, foreign file).

CLIs catch it and print its message as a single line (``error: ...``) with exit status 2;
everything else is a bug and keeps its traceback. Messages say what is wrong *and* how to fix it.
The three console scripts share the rest here: :class:`OneLineParser` (a bad command line in
one line) and :func:`one_line_errors` (a UserError in one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UserError(Exception):
    """A user-fixable problem; ``str(err)`` is one line that names the fix."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), without the usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line_errors(prog: str, call: Callable[[], int | None]) -> int:
    """``call()``'s exit status; a :class:`UserError` is printed as ``PROG: error: ...`` on one
    stderr line (exit 2), an interrupt as ``<command>: interrupted`` (exit 130). ``prog``:
    the command and its verb, e.g. ``"asgan-probe attack"``."""
    try:
        return int(call() or 0)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog.split()[0]}: interrupted", file=sys.stderr)
        return 130
