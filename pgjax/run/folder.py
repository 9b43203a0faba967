"""A run folder's life cycle (shared/DESIGN.md, "Run folder lifecycle").

A folder is always in a state that ``pgjax train --resume`` or a fresh start under the same name
can handle:

- ``config.json`` is written before anything is compiled; a run with no checkpoint yet resumes
  from step 0 with that configuration, and a fresh start may reuse such a folder (nothing trained
  is lost). A folder that holds a checkpoint is never overwritten by a fresh start.
- ``.lock`` is held (``fcntl.flock``, released by the kernel when the process dies, so it is
  never stale) by the one process that owns the run; a second process is refused with the
  holder's pid.
- ``status.json`` records ``running`` / ``interrupted`` / ``diverged`` / ``completed`` with the
  update reached and the pid. A folder whose status says ``running`` while nobody holds the lock
  was killed (SIGKILL, power loss) and resumes from its latest checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

from pgjax.config import ConfigError, require
from pgjax.run.loggers import write_json_atomic

RUNNING, INTERRUPTED, DIVERGED, COMPLETED = "running", "interrupted", "diverged", "completed"
KILLED = "killed"  # read-only: 'running' in status.json but no process holds the lock

LOCK_NAME, STATUS_NAME = ".lock", "status.json"
# what a fresh start clears from a folder that holds no checkpoint (a run stopped before its first)
_OUTPUTS = ("metrics.jsonl", "eval.jsonl", "reeval.jsonl", "summary.json", STATUS_NAME)
_OUTPUT_DIRS = ("eval", "tb", "plots", "checkpoints")


def check_name(name: str) -> None:
    """A run name is one folder inside the runs directory: no separators, not '.' or '..'."""
    require(bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
            and "\0" not in name, "--name", name,
            "a single folder name (no '/', not '.' or '..'), e.g. ppo-cartpole")


def check_writable_dir(path: Path, what: str) -> None:
    """``path`` is a directory we can write into, or one we can create: probed by creating and
    removing a temporary file in it (or in its nearest existing parent), so nothing is left."""
    import tempfile
    path = Path(path)
    if path.exists():
        require(path.is_dir(), what, str(path), "a directory (this is a file)")
        probe = path
    else:
        probe = next((p for p in path.absolute().parents if p.exists()), None)
        require(probe is not None and probe.is_dir(), what, str(path),
                f"a directory (its parent {probe} is a file)")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:
        raise ConfigError(f"{what}={str(path)!r} is not allowed: a directory you can write to "
                          f"(cannot create a file in {probe}: {error.strerror})") from None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a committed checkpoint (orbax's finished step folders)."""
    root = Path(run_dir) / "checkpoints"
    return any(step.is_dir() and step.name.isdigit()
               for kind in ("latest", "best") if (root / kind).is_dir()
               for step in (root / kind).iterdir())


def check_fresh_start(run_dir: Path) -> None:
    """Refuse a fresh run in a folder that holds a trained checkpoint (use --resume)."""
    if has_checkpoint(run_dir):
        raise ConfigError(f"run_dir={str(run_dir)!r} is not allowed: it already holds a run with "
                          "checkpoints; resume it (resume=True, pgjax train --resume) or use a new folder")


def clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier start left in a folder without checkpoints."""
    for name in _OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    for name in _OUTPUT_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` holding the owner's pid."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"run_dir={str(self.path.parent)!r} is not allowed: it is in use by "
                              f"process {holder_pid(self.path.parent) or '?'} (lock {self.path}); "
                              "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holder_pid(run_dir: Path) -> int | None:
    """The pid written in the lock file (whether or not it still holds the lock)."""
    try:
        return int((Path(run_dir) / LOCK_NAME).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds ``run_dir``'s lock now."""
    import fcntl
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def write_status(run_dir: Path, status: str, update: int, message: str = "", **extra) -> None:
    write_json_atomic(Path(run_dir) / STATUS_NAME, {
        "status": status, "update": int(update), "pid": os.getpid(), "message": message,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})


def read_status(run_dir: Path) -> dict:
    """``status.json`` (empty if absent or unreadable), with ``running`` turned into ``killed`` when
    no process holds the lock."""
    try:
        status = json.loads((Path(run_dir) / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if status.get("status") == RUNNING and not is_locked(run_dir):
        status["status"] = KILLED
    return status
