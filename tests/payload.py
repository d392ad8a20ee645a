"""The classic pickle code payload the readers' tests throw at every loader."""

from __future__ import annotations

import os


class Payload:
    """Unpickling this runs ``touch MARKER`` (``os.system``): a test checks the marker never
    appears, i.e. that a reader refused the file instead of running it."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
