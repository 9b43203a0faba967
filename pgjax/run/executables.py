"""Traced programs kept on disk, so that a process running a configuration it ran before skips
tracing and lowering it.

JAX's persistent compilation cache (:mod:`pgjax.run.compilation_cache`) skips XLA's compile, but a
new process still traces and lowers each program before the cache can be asked (seconds for a
PPO training chunk on a small CPU, most of a warm tiny run's start-up: ``python -m
benchmarks.startup --whole``). This store keeps
each program as ``jax.export`` serialises it (StableHLO, the lowered program) and compiles it
through ``jax.jit(exported.call)``, whose compiled form JAX's cache then holds: a process that finds
the program here neither traces nor compiles it. (jaxlib 0.10's XLA:CPU executables themselves
are not kept: one re-serialised after a cache hit fails at its first call in a new process.)

A program is found again by a key built from everything it is made of:

- the caller's description of it (its configuration, the tree structure, shapes and dtypes of
  its arguments, its static arguments);
- the bytes of every source file of pgjax (the package and its environments), and the versions of
  jax, jaxlib, flax, optax, chex, gymnax and each environment family's suite (brax, …) that
  trace it;
- the backend, its devices and the process settings that change a program (``XLA_FLAGS``,
  ``jax_enable_x64``, ``jax_default_matmul_precision``).

A program whose code lives outside pgjax (an environment a user registered, an algorithm of
their own) is not stored: the key could not see that code change; neither is a program placed on
several devices or processes, nor one ``jax.export`` refuses. The store sits beside the compilation
cache (``~/.cache/pgjax/jax-executables`` by default), is on and off with it, keeps the
:data:`MAX_ENTRIES` most recently used programs, and a file it cannot read is traced again and
rewritten. Whether a program comes from the store or not, it is traced and compiled the same way
(always through ``jax.export``), so it computes the same bits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import os
import pickle
import tempfile
from pathlib import Path

MAX_ENTRIES = 1024  # about 0.1 to 1 MB each
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "chex", "gymnax")  # and each environment family's
_LOADED: dict = {}  # program key -> its compiled Program, in this process


def source_roots() -> list[Path]:
    """The folders of pgjax's source: the package and its environments (``pgjax.envs``, the
    ``envs/`` folder of a checkout)."""
    import pgjax
    import pgjax.envs
    return sorted({Path(pgjax.__file__).parent, Path(pgjax.envs.__file__).parent})


def digest_of(roots) -> str:
    """SHA-256 over the relative path and bytes of every ``.py`` file under ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """:func:`digest_of` pgjax's :func:`source_roots`, once per process."""
    return digest_of(source_roots())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    from pgjax.envs.registry import FAMILIES
    found = []
    for name in (*_VERSIONED, *(family.package for family in FAMILIES)):
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


def environment_key() -> tuple:
    """What, beyond the program's own description, decides the compiled bits."""
    import jax

    from pgjax import _xla_cpu
    devices = jax.local_devices()
    return (source_digest(), _versions(), jax.default_backend(), devices[0].device_kind,
            len(devices), os.environ.get("XLA_FLAGS", ""), bool(jax.config.jax_enable_x64),
            str(jax.config.jax_default_matmul_precision), _xla_cpu.selection())


def directory() -> Path | None:
    """The store's folder (beside the compilation cache's), or None when the cache is off.
    ``PGJAX_PROGRAM_STORE=0`` turns the store off alone; ``=1`` keeps it on beside a cache that
    JAX was pointed at directly (``JAX_COMPILATION_CACHE_DIR``, as the test suite does) while
    the runner's own cache setting is off."""
    from pgjax.run import compilation_cache
    setting = os.environ.get("PGJAX_PROGRAM_STORE", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return None
    cache = compilation_cache.directory()
    if cache is None or not (compilation_cache.wanted() or setting in ("1", "true", "yes", "on")):
        return None
    cache = Path(cache)
    return cache.with_name(cache.name + "-executables")


def storable(config) -> bool:
    """Whether every piece of code behind ``config``'s programs is pgjax's own: its algorithm's
    configuration class, and an environment from gymnax, brax or pgjax.envs."""
    import jax
    if jax.process_count() > 1 or not type(config).__module__.startswith("pgjax."):
        return False
    from pgjax.envs import registry
    from pgjax.envs.families import family_of
    env_id = getattr(config, "env_id", None)
    family = family_of(env_id, registry.FAMILIES)
    factory = family.make if family is not None else registry._OWN.get(env_id)
    return factory is None or getattr(factory, "__module__", "").startswith(("pgjax.", "envs."))


def describe(tree) -> tuple:
    """The part of a program's key that its array arguments make: their tree structure, shapes
    and dtypes (what it is traced from; not their values)."""
    import jax
    return (str(jax.tree.structure(tree)),
            tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(tree)))


def program_key(*parts) -> str:
    """The file name of a program described by ``parts`` (reprs that say everything the caller
    traces from) in this process's environment."""
    return hashlib.sha256(repr((parts, environment_key())).encode()).hexdigest()


class Program:
    """A compiled program that takes and returns the trees it was traced with (the exported
    program itself takes and returns their leaves)."""

    def __init__(self, compiled, in_tree, out_tree):
        self.compiled, self.in_tree, self.out_tree = compiled, in_tree, out_tree

    def __call__(self, *args):
        import jax
        leaves, tree = jax.tree.flatten(args)
        if tree != self.in_tree:
            raise TypeError(f"arguments of structure {tree} given to a program of {self.in_tree}")
        return jax.tree.unflatten(self.out_tree, self.compiled(*leaves))

    def memory_analysis(self):
        return self.compiled.memory_analysis()


def export(fn, args: tuple) -> tuple[bytes, object, object]:
    """(``jax.export``'s serialisation of ``fn`` on the leaves of ``args``, the tree of ``args``,
    the tree of its result)."""
    import jax
    leaves, in_tree = jax.tree.flatten(args)
    trees = {}

    def on_leaves(*xs):
        outputs, trees["out"] = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, xs)))
        return outputs

    exported = jax.export.export(jax.jit(on_leaves))(*leaves)
    return exported.serialize(), in_tree, trees["out"]


def compile_exported(serialized: bytes, in_tree, out_tree, args: tuple, compile_) -> Program:
    """``compile_(jax.jit(exported.call).lower(*leaves))`` wrapped to take and return trees."""
    import jax
    exported = jax.export.deserialize(bytearray(serialized))
    lowered = jax.jit(exported.call).lower(*jax.tree.leaves(args))
    return Program(compile_(lowered), in_tree, out_tree)


def load_or_compile(parts: tuple, fn, args: tuple, compile_, *, store: bool = True):
    """``fn`` compiled for ``args`` (abstract values): ``compile_(jax.jit(fn).lower(*args))``
    when it is not storable (``store=False``, the cache off, or ``jax.export`` refuses it); else
    exported (or loaded from the store when a process before this one exported the program that
    ``parts`` describe), and compiled from that export. Returns something to call with ``args``'s
    tree that has ``memory_analysis()``."""
    import jax
    folder = directory() if store else None
    plain = lambda: compile_(jax.jit(fn).lower(*args))  # noqa: E731
    if folder is None:
        return plain()
    key = program_key(*parts)
    if key not in _LOADED:
        path = folder / key
        found = _load(path)
        if found is None:
            try:
                found = export(fn, args)
            except Exception:  # noqa: BLE001 - a program jax.export refuses: compiled as it is
                return plain()
            _save(folder, path, found)
        _LOADED[key] = compile_exported(*found, args, compile_)
    return _LOADED[key]


def _load(path: Path):
    try:
        found = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - absent, cut short or from another build: traced again
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used
    return found


def _save(folder: Path, path: Path, exported: tuple) -> None:
    """Write atomically (a reader sees the whole file or none); a store that cannot be written
    only costs the next process its tracing."""
    temporary = None
    try:
        blob = pickle.dumps(exported)
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(handle, "wb") as file:
            file.write(blob)
        os.replace(temporary, path)
        temporary = None
        _prune(folder)
    except Exception:  # noqa: BLE001 - an unwritable store
        pass
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _prune(folder: Path) -> None:
    """Keep the :data:`MAX_ENTRIES` most recently used programs."""
    entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
    for entry in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
