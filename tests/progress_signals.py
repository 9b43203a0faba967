"""A test helper: an output stream that raises a signal in this process when the run prints its
``at``-th progress line (inside the training loop, between chunks, as a user's Ctrl-C arrives)."""

from __future__ import annotations

import io
import signal


class SignalOnProgress(io.StringIO):
    def __init__(self, signum=signal.SIGINT, at=1):
        super().__init__()
        self.signum, self.at, self.seen = signum, at, 0

    def write(self, text):
        if text.startswith("  steps"):
            self.seen += 1
            if self.seen == self.at:
                signal.raise_signal(self.signum)
        return super().write(text)
