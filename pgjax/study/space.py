"""A study's search space: what ``--sweep KEY=SPEC`` (or a config file's ``[sweep]`` table) says,
and the settings it expands to (host side, NumPy only).

Each key gets one axis. A **grid** axis lists its values::

    learning_rate=1e-3,3e-4          the values as written
    learning_rate=log:1e-4:1e-2:5    5 values spaced evenly in log space, both ends included
    clip_eps=lin:0.1:0.3:3           3 values spaced evenly, both ends included
    hidden_sizes=(64,64),(128,128)   a tuple field: each value in parentheses

A key of the algorithm's static config (``num_envs``, ``hidden_sizes``, ``env_id``, …) changes the
compiled program, so it is swept as a grid of programs run one after another in one run folder
(:mod:`pgjax.run.programs`); hyperparameter keys vary inside each program.

A **random** axis is a distribution; ``--samples N`` draws N points of every random axis jointly
(Bergstra & Bengio 2012, "Random search for hyper-parameter optimization")::

    learning_rate=loguniform:1e-5:1e-2   log-uniform on [LO, HI]
    ent_coef=uniform:0:0.05              uniform on [LO, HI]
    epochs=int:1:8                       an integer, uniform on LO..HI (both included)
    activation=choice:tanh,relu          one of the values, each equally likely

The settings are the cartesian product of the grid axes with the N draws (N = 1 when every axis is
a grid). The draws come from NumPy's PCG64 generator seeded with the study's ``sweep_seed``, which
the run records beside the drawn values, so a study is reproduced from its record.

Every malformed axis is a :class:`pgjax.config.ConfigError` naming it and what is allowed: an
empty list, LO ≥ HI, a log range with a bound ≤ 0, N < 1, a key given twice, a random axis
without ``samples`` (or ``samples`` without a random axis).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from pgjax.config_error import ConfigError

GRID_KINDS = ("list", "log", "lin")
RANDOM_KINDS = ("loguniform", "uniform", "int", "choice")
FORMS = ("a,b,c", "log:LO:HI:N", "lin:LO:HI:N", "loguniform:LO:HI", "uniform:LO:HI", "int:LO:HI",
         "choice:a,b,c")


@dataclass(frozen=True)
class Axis:
    """One swept key: ``kind`` is one of :data:`GRID_KINDS` or :data:`RANDOM_KINDS`; ``values`` the
    grid's values or the choices; ``low``/``high`` a range's bounds."""
    key: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    @property
    def is_random(self) -> bool:
        return self.kind in RANDOM_KINDS

    @property
    def log_scale(self) -> bool:
        """Whether the axis is spaced in log space (a report draws it on a log axis)."""
        return self.kind in ("log", "loguniform")

    def record(self) -> dict:
        """The axis as JSON (``config.json``'s ``sweep.axes``)."""
        out = {"key": self.key, "kind": self.kind}
        if self.values:
            out["values"] = list(self.values)
        if self.low is not None:
            out["low"], out["high"] = self.low, self.high
        return out


def _refuse(text: str, allowed: str) -> ConfigError:
    return ConfigError(f"--sweep {text!r} is not allowed: {allowed}")


def _number(word: str, text: str) -> float:
    try:
        value = float(word)
    except ValueError:
        raise _refuse(text, f"{word!r} is not a number") from None
    if not math.isfinite(value):
        raise _refuse(text, f"{word!r} is not a finite number")
    return value


def _count(word: str, text: str) -> int:
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer() and value >= 1):
        raise _refuse(text, f"the number of values N={word!r} must be a positive integer")
    return int(value)


def _bounds(words: list[str], text: str, *, log: bool = False) -> tuple[float, float]:
    if len(words) != 2:
        raise _refuse(text, "a range is LO:HI")
    low, high = (_number(w, text) for w in words)
    if not low < high:
        raise _refuse(text, f"the range is empty or reversed (LO={low:g} must be < HI={high:g})")
    if log and low <= 0:
        raise _refuse(text, f"a log range needs bounds > 0 (LO={low:g})")
    return low, high


def _split_values(body: str) -> list[str]:
    """``a,b,(64,64)`` → ``["a", "b", "(64,64)"]``: commas inside parentheses belong to a value
    (a tuple field such as ``hidden_sizes``)."""
    values, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(body[start:i])
            start = i + 1
    return values + [body[start:]]


def _listed(body: str, text: str) -> tuple[str, ...]:
    if body.count("(") != body.count(")"):
        raise _refuse(text, "unbalanced parentheses (a tuple value is written (64,64))")
    values = tuple(v.strip() for v in _split_values(body) if v.strip())
    if not values:
        raise _refuse(text, "at least one value")
    return values


def parse_axis(text: str) -> Axis:
    """``KEY=SPEC`` → :class:`Axis` (grid values stay strings, as ``--set`` parses them)."""
    if "=" not in text:
        raise _refuse(text, f"expected KEY=SPEC with SPEC one of {', '.join(FORMS)}")
    key, spec = (part.strip() for part in text.split("=", 1))
    if not key:
        raise _refuse(text, "the key is empty")
    kind, colon, body = spec.partition(":")
    if not colon or kind not in GRID_KINDS + RANDOM_KINDS:
        return Axis(key, "list", values=_listed(spec, text))
    words = body.split(":")
    if kind in ("log", "lin"):
        if len(words) != 3:
            raise _refuse(text, f"{kind}:LO:HI:N")
        low, high = _bounds(words[:2], text, log=kind == "log")
        count = _count(words[2], text)
        grid = np.geomspace(low, high, count) if kind == "log" else np.linspace(low, high, count)
        return Axis(key, kind, values=tuple(repr(float(v)) for v in grid), low=low, high=high)
    if kind == "choice":
        return Axis(key, kind, values=_listed(body, text))
    low, high = _bounds(words, text, log=kind == "loguniform")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise _refuse(text, "int:LO:HI takes integer bounds")
    return Axis(key, kind, low=low, high=high)


def parse(texts, samples: int | None = None) -> list[Axis]:
    """The axes of ``--sweep`` texts; refuses a key given twice and a random axis without
    ``samples`` (or ``samples`` with no random axis)."""
    axes, seen = [], {}
    for text in texts:
        axis = parse_axis(text)
        if axis.key in seen:
            raise ConfigError(f"--sweep {text!r} is not allowed: {axis.key} is swept twice (also "
                              f"--sweep {seen[axis.key]!r}); give all its values in one --sweep "
                              f"{axis.key}=SPEC")
        seen[axis.key] = text
        axes.append(axis)
    random_keys = [a.key for a in axes if a.is_random]
    if random_keys and samples is None:
        raise ConfigError(f"--sweep {random_keys[0]} is not allowed without --samples N: a random "
                          "axis needs the number of settings to draw")
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"--samples={samples!r} is not allowed: a positive integer")
        if not random_keys:
            raise ConfigError(f"--samples={samples} is not allowed without a random --sweep axis "
                              "(loguniform:, uniform:, int: or choice:)")
    return axes


def _draw(axis: Axis, rng: np.random.Generator, n: int) -> list[str]:
    if axis.kind == "loguniform":
        values = np.exp(rng.uniform(math.log(axis.low), math.log(axis.high), n))
    elif axis.kind == "uniform":
        values = rng.uniform(axis.low, axis.high, n)
    elif axis.kind == "int":
        return [str(int(v)) for v in rng.integers(int(axis.low), int(axis.high), n, endpoint=True)]
    else:  # choice
        return [axis.values[i] for i in rng.integers(0, len(axis.values), n)]
    return [repr(float(v)) for v in values]


def expand(axes: list[Axis], samples: int | None = None, sweep_seed: int = 0) -> list[dict[str, str]]:
    """The settings as ``{key: value text}``: the product of the grid axes (in the order given,
    the last varying fastest) with ``samples`` joint draws of the random axes. Draws are made axis
    by axis in the order given, from one PCG64 generator seeded with ``sweep_seed``."""
    grid = [a for a in axes if not a.is_random]
    random = [a for a in axes if a.is_random]
    rng = np.random.Generator(np.random.PCG64(sweep_seed))
    draws = {a.key: _draw(a, rng, samples) for a in random} if random else {}
    points = [{a.key: draws[a.key][i] for a in random} for i in range(samples or 1)] if random else [{}]
    grid_points = itertools.product(*[[(a.key, v) for v in a.values] for a in grid])
    return [{**dict(g), **p} for g in grid_points for p in points]


def record(axes: list[Axis], samples: int | None, sweep_seed: int | None) -> dict:
    """What ``config.json`` keeps of the study's space (the settings themselves are recorded as
    the run's ``hparams_settings``)."""
    return {"axes": [a.record() for a in axes], "samples": samples, "sweep_seed": sweep_seed}
