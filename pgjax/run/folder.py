"""A run folder's life cycle.

A folder is always in a state that ``pgjax train --resume`` or a fresh start under the same name
can handle:

- ``config.json`` is written before anything is compiled; a run with no checkpoint yet resumes
  from step 0 with that configuration, and a fresh start may reuse such a folder (nothing trained
  is lost). A folder that holds a checkpoint is never overwritten by a fresh start.
- ``.lock`` is held (``fcntl.flock``, released by the kernel when the process dies, so it is
  never stale) by the one process that owns the run; a second process is refused with the
  holder's pid. A ``.lock`` that is a symbolic link, a directory or anything but a regular file
  is refused in one line and never followed (a link would have the run overwrite its target).
- ``status.json`` records ``running`` / ``interrupted`` / ``diverged`` / ``completed`` with the
  update reached and the pid. A folder whose status says ``running`` while nobody holds the lock
  was killed (SIGKILL, power loss) and resumes from its latest checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
from pathlib import Path

from pgjax.config_error import ConfigError, require
from pgjax.run.loggers import write_json_atomic, writing

RUNNING, INTERRUPTED, DIVERGED, COMPLETED = "running", "interrupted", "diverged", "completed"
PAUSED = "paused"  # stopped on purpose before its last update (a rung of successive halving)
KILLED = "killed"  # read-only: 'running' in status.json but no process holds the lock

LOCK_NAME, STATUS_NAME = ".lock", "status.json"
# what a fresh start clears from a folder that holds no checkpoint (a run stopped before its first)
_OUTPUTS = ("metrics.jsonl", "eval.jsonl", "reeval.jsonl", "summary.json", STATUS_NAME)
_OUTPUT_DIRS = ("eval", "tb", "plots", "checkpoints")


def check_name(name: str, runs_dir: Path | None = None) -> None:
    """A run name is one folder inside the runs directory: no separators, not '.' or '..', and
    no longer than the file system of ``runs_dir`` allows (its ``PC_NAME_MAX`` bytes, or 255)."""
    require(bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
            and "\0" not in name, "--name", name,
            "a single folder name (no '/', not '.' or '..'), e.g. ppo-cartpole")
    # the file system's limit on one name, in bytes: PC_NAME_MAX where the runs go, or 255
    where = Path(runs_dir if runs_dir is not None else ".").absolute()
    existing = next((p for p in (where, *where.parents) if p.is_dir()), Path("/"))
    try:
        limit = int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(name))
    if size > limit:
        raise ConfigError(f"--name={name[:32]!r}… ({size} bytes) is not allowed: at most {limit} "
                          "bytes (the file system's limit on a folder name)")


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
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"run_dir={str(self.path.parent)!r} is not allowed: it is in use by "
                              f"process {holder_pid(self.path.parent) or '?'} (lock {self.path}); "
                              "wait for it to finish or stop it first") from None
        self._fd = fd
        try:
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                os.fsync(fd)
        except BaseException:
            self.release()
            raise
        return self

    def _open(self) -> int:
        """The lock file, opened (created if absent) without following a symbolic link: a link
        there would have the run truncate and overwrite whatever it points to. A symbolic link, a
        directory or anything else that is not a regular file is refused in one line."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise ConfigError(what_is_not_a_lock(self.path) or (
                f"run_dir={str(self.path.parent)!r} is not allowed: cannot open its lock "
                f"{self.path} ({error.strerror})")) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(what_is_not_a_lock(self.path) or f"{self.path} is not a regular file")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def what_is_not_a_lock(path: Path) -> str | None:
    """The one-line refusal of a ``.lock`` that is not a regular file (pgjax never follows or
    replaces it: it is the user's to remove), or None when it is one or absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "not a regular file")
    return (f"run_dir={str(Path(path).parent)!r} is not allowed: its lock {path} is {kind}; a run "
            "folder's lock must be a regular file (pgjax never follows or replaces it): remove it")


def _read_lock(path: Path) -> int | None:
    """A read-only descriptor of the lock file, or None when it is absent or not a regular file."""
    if what_is_not_a_lock(path) is not None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None


def holder_pid(run_dir: Path) -> int | None:
    """The pid written in the lock file (whether or not it still holds the lock)."""
    fd = _read_lock(Path(run_dir) / LOCK_NAME)
    if fd is None:
        return None
    try:
        return int(os.read(fd, 64).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds ``run_dir``'s lock now."""
    import fcntl
    fd = _read_lock(Path(run_dir) / LOCK_NAME)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def write_status(run_dir: Path, status: str, update: int, message: str = "", **extra) -> None:
    """``status.json``, atomically; :class:`pgjax.run.loggers.WriteFailed` when it cannot be written."""
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
