"""gymnax, imported without its plotting stack.

gymnax 1.0.1 imports ``matplotlib.pyplot`` and ``seaborn`` at module level in five environments
(Pong, Rooms, PointRobot, MetaMaze, Catch) for their ``render`` functions only; with scipy.stats
and pandas behind them that is seconds of every process start (``python -m
benchmarks.dev.xla_cpu_tricks`` measures it as ``gymnax_import``).
:func:`load` imports gymnax while those two names resolve to stand-ins that import the real module
on first attribute access (so gymnax's renderers still work), then removes the stand-ins from
``sys.modules``: every later ``import seaborn`` or ``import matplotlib.pyplot`` is the real one.
``PGJAX_PLAIN=1`` (or a list naming ``gymnax_import``; see :mod:`pgjax._xla_cpu`, whose switch
this is) imports gymnax plainly.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

_DEFERRED = ("seaborn", "matplotlib.pyplot")


class _Deferred(types.ModuleType):
    """Imports the module it stands for on first attribute access and delegates to it."""

    def __getattr__(self, attr):
        if attr.startswith("__"):  # the import system's probes (__path__, …): not a package
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _plain() -> bool:
    """Whether ``PGJAX_PLAIN`` asks for a plain ``import gymnax``."""
    value = os.environ.get("PGJAX_PLAIN", "").strip()
    return value in ("1", "all") or "gymnax_import" in value.split(",")


def load():
    """The ``gymnax`` module, imported once with its plotting imports deferred."""
    if "gymnax" in sys.modules:
        return sys.modules["gymnax"]
    placed = [] if _plain() else [name for name in _DEFERRED if name not in sys.modules]
    for name in placed:
        sys.modules[name] = _Deferred(name)
    try:
        import gymnax
    finally:
        for name in placed:
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]
    return gymnax
