"""The initialisation program compiled at LLVM optimisation level 1, instead of XLA's default 3.

A run's initialisation program (parameters, optimiser state and first environment states of every
member) runs once, so its compile time is all it costs: at level 1 it compiles with about a third
less CPU time and runs as fast (``python -m benchmarks.dev.xla_cpu_tricks``, the ``init_level``
row). The training and evaluation programs keep level 3: they run for the whole run, and at a
lower level a CNN's are slower. Another level's LLVM passes may reorder a vectorised reduction,
so the initial state's last bits can differ from level 3's, as they do between two CPUs; a given
configuration is always initialised at the same level (a resume restores its state; the program
store and the compilation cache compile it alike).

A level the user sets in ``XLA_FLAGS`` (``--xla_backend_optimization_level=N``) is left alone.
"""

from __future__ import annotations

import os

OPTION = "xla_backend_optimization_level"
LEVEL = 1


def compiler_options() -> dict:
    """``{OPTION: LEVEL}``, or nothing when ``XLA_FLAGS`` already chooses a level."""
    if f"--{OPTION}" in os.environ.get("XLA_FLAGS", ""):
        return {}
    return {OPTION: LEVEL}
