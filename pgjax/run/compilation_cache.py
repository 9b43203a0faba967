"""JAX's persistent compilation cache for runs (a host-side setting; the math layer never touches it).

A run's programs (init, the training chunk, evaluation) are stored on disk after their first
compilation, so a second run with the same configuration, a resumed run or a restarted process
loads them instead of compiling again. The cache lives in ``$PGJAX_CACHE_DIR`` or, by default,
``$XDG_CACHE_HOME/pgjax/jax`` (``~/.cache/pgjax/jax``); ``PGJAX_COMPILATION_CACHE=0`` (or
``pgjax train --no-compile-cache``) turns it off. A directory a user already set through
``jax_compilation_cache_dir`` wins.
"""

from __future__ import annotations

import os
from pathlib import Path

_OFF = ("0", "false", "no", "off")


def default_dir() -> Path:
    if os.environ.get("PGJAX_CACHE_DIR"):
        return Path(os.environ["PGJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pgjax" / "jax"


def wanted() -> bool:
    return os.environ.get("PGJAX_COMPILATION_CACHE", "1").strip().lower() not in _OFF


def enable(directory: Path | None = None) -> Path | None:
    """Point JAX's persistent cache at ``directory`` (default :func:`default_dir`) unless it is
    turned off or already configured. Returns the directory in use, or None when off. Programs
    compiled in under ``jax_persistent_cache_min_compile_time_secs`` (1 s by default) are not
    stored."""
    import jax
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    if not wanted():
        return None
    path = Path(directory) if directory is not None else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache location only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(path))
    try:  # JAX decides whether to use the cache at its first compilation; ask it again
        from jax._src import compilation_cache as _jax_cache
        _jax_cache.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - a JAX without this private hook
        pass
    return path


def directory() -> str | None:
    """The persistent cache directory JAX uses now (None when off)."""
    import jax
    return jax.config.jax_compilation_cache_dir or None


def entries() -> int | None:
    """How many programs the cache holds now (None when off): a compilation that adds none was a
    cache hit."""
    path = directory()
    if path is None or not os.path.isdir(path):
        return None
    return sum(1 for entry in os.scandir(path) if not entry.name.startswith("."))
