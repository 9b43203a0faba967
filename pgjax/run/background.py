"""Threads and signals of the host loop: work in a background thread, SIGINT/SIGTERM turned into a
flag the loop checks, and set-up or compilation that a signal stops at once."""

from __future__ import annotations

import signal
import sys
import threading


class Background:
    """``fn(*args)`` in a daemon thread named ``name``; :meth:`result` waits and returns it (or
    raises what it raised)."""

    def __init__(self, name: str, fn, *args):
        self._outcome: dict = {}

        def work():
            try:
                self._outcome["value"] = fn(*args)
            except BaseException as error:  # handed to the caller of result()
                self._outcome["error"] = error

        self._thread = threading.Thread(target=work, name=name, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; whether ``fn`` has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self):
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]




class StopSignals:
    """SIGINT/SIGTERM set a flag the loop checks; a repeated signal only says what is happening.
    Installed only in the main thread (signal handlers cannot be set elsewhere)."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        print(f"pgjax: {signal.Signals(signum).name} again: already stopping (finishing the current "
              "step, then saving a checkpoint); SIGKILL aborts without saving", file=sys.stderr,
              flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StoppedBeforeTraining(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def while_listening(stop: StopSignals, fn, *args):
    """``fn(*args)`` (set-up, compilation) in a worker thread so that a signal stops the run at
    once instead of after the compiler returns; raises :class:`StoppedBeforeTraining`."""
    if not stop.installed:
        return fn(*args)
    work = Background("pgjax-compile", fn, *args)
    while not work.wait(0.05):
        if stop.received is not None:
            raise StoppedBeforeTraining(stop.received)
    return work.result()
