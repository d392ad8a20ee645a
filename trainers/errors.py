"""The one exception type for mistakes a user can fix (bad path, bad value, foreign file).

CLIs catch it and print its message as a single line (``error: ...``) with exit status 2;
everything else is a bug and keeps its traceback. Messages say what is wrong *and* how to fix it.
"""


class UserError(Exception):
    """A user-fixable problem; ``str(err)`` is one line that names the fix."""
