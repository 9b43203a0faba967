"""The cache of evaluation episodes: every evaluation's episodes, kept step by step.

Every evaluation during a run saves its episodes, compressed, to
``runs/<name>/eval/step_<env steps>.npz``:

    returns, lengths            [M, E]        every evaluation episode of every member
    obs, actions, rewards,      [M, L, K, ...] step by step for the first K episodes, time-major,
    terminated, truncated, valid               cut to the longest recorded episode (``valid`` marks
                                               the steps inside each episode)
    state.<field>               [M, L, K, ...] the environment's own state before each step (to render)
    final_state.<field>         [M, K, ...]   the state each cached episode ended in
    seeds, members, env_steps, greedy

M is the population (seeds × hyperparameter settings), E the evaluation episodes, K the cached
ones. :func:`load` returns them as NumPy arrays; :func:`summary` tabulates the cache;
:func:`episode_states` cuts one episode out for rendering. A file that cannot be written raises
:class:`pgjax.run.loggers.WriteFailed` (no partial file is left); one that cannot be read back
(truncated, not an ``.npz``) raises :class:`DamagedCache`, one line naming it.

Frames are the states the agent acted in (``s_0 … s_{T−1}``) and the state the episode ended in
(``final_state.<field>`` ``[M, K, ...]``), which evaluation records through ``envs.VecEnv``'s
``keep_final_state`` (every environment that uses gymnax's own ``step``).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from pathlib import Path

import jax
import numpy as np

from pgjax.config import ConfigError
from pgjax.run.loggers import WriteFailed, writing

STEP_FILE = re.compile(r"step_(\d+)\.npz$")
STEP_NAMES = ("obs", "actions", "rewards", "terminated", "truncated", "valid")


class DamagedCache(ConfigError):
    """A cached evaluation file that cannot be read back."""


def eval_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "eval"


def _field_name(prefix: str, path) -> str:
    return prefix + "." + ".".join(str(getattr(p, "name", getattr(p, "key", p))) for p in path)


def _state_fields(states, prefix: str = "state") -> dict[str, np.ndarray]:
    """Flatten the (struct dataclass) env state into ``<prefix>.<path>`` arrays."""
    flat, _ = jax.tree_util.tree_flatten_with_path(states)
    return {_field_name(prefix, path): np.asarray(leaf) for path, leaf in flat}


def save(run_dir: Path, env_steps: int, result: dict, seeds: list[int], greedy: bool) -> Path:
    """Write one evaluation (the vmapped output of :func:`pgjax.run.evaluation.evaluate` with recording)
    atomically; returns the file."""
    arrays = {"returns": np.asarray(result["returns"]), "lengths": np.asarray(result["lengths"]),
              "seeds": np.asarray(seeds), "env_steps": np.asarray(env_steps),
              "greedy": np.asarray(greedy)}
    if "valid" in result:
        valid = np.asarray(result["valid"])                    # [M, L, K]
        longest = max(1, int(valid.sum(axis=1).max()))
        arrays.update({name: np.asarray(result[name])[:, :longest] for name in STEP_NAMES})
        states = jax.tree.map(lambda x: np.asarray(x)[:, :longest], result["states"])
        arrays.update(_state_fields(states))
        if "final_states" in result:
            arrays.update(_state_fields(result["final_states"], "final_state"))
    folder = eval_dir(run_dir)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{int(env_steps):012d}.npz"
    tmp = folder / f".tmp_{path.name}"
    try:
        with writing(path):
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)
            os.replace(tmp, path)
    except WriteFailed:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def cached_steps(run_dir: Path) -> list[int]:
    """Env steps of every cached evaluation, ascending."""
    folder = eval_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := STEP_FILE.match(p.name)))


def load(run_dir: Path, step: int | None = None) -> dict[str, np.ndarray]:
    """The cached evaluation at ``step`` env steps (default: the latest) as a dict of arrays."""
    steps = cached_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"no cached evaluation episodes in {eval_dir(run_dir)}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"step={step} is not allowed: cached evaluations are at steps {steps}")
    path = eval_dir(run_dir) / f"step_{step:012d}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise DamagedCache(f"{path} is damaged and cannot be read ({reason.rstrip(': ')}); the "
                           "other cached evaluations are intact") from None


def episode_states(cache: dict[str, np.ndarray], like_state, member: int = 0, episode: int = 0,
                   with_final: bool = True):
    """The env states of one cached episode in the structure of ``like_state`` (one env's state,
    e.g. from ``env.reset``): ``[length, ...]`` leaves, the states acted in, then (``with_final``,
    where cached) the state the episode ended in, ``[length + 1, ...]``."""
    if "valid" not in cache:
        raise ValueError("this evaluation cached returns only (cache_episodes=0)")
    num_members, _, num_cached = cache["valid"].shape
    if not 0 <= member < num_members:
        raise ValueError(f"member={member} is not allowed: 0 ≤ member < {num_members}")
    if not 0 <= episode < num_cached:
        raise ValueError(f"episode={episode} is not allowed: 0 ≤ episode < {num_cached} cached")
    length = int(cache["valid"][member, :, episode].sum())
    flat, treedef = jax.tree_util.tree_flatten_with_path(like_state)
    leaves = []
    for path, _ in flat:
        steps = cache[_field_name("state", path)][member, :length, episode]
        final_name = _field_name("final_state", path)
        if with_final and final_name in cache:
            steps = np.concatenate([steps, cache[final_name][member, episode][None]], axis=0)
        leaves.append(steps)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def summary(run_dir: Path, step: int | None = None, members: list[int] | None = None) -> str:
    """A markdown table: one row per cached evaluation (returns over training), or only the one at
    ``step``, then the distribution of episode lengths in the latest one (or at ``step``), over
    every member or only ``members`` (a setting, a seed). A damaged file is left out with a
    one-line warning (an error when it is the one asked for)."""
    steps = cached_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"no cached evaluation episodes in {eval_dir(run_dir)}")
    if step is not None and step not in steps:
        raise ValueError(f"step={step} is not allowed: cached evaluations are at steps {steps}")
    cached = {}
    for at in [step] if step is not None else steps:
        try:
            cached[at] = load(run_dir, at)
        except DamagedCache as error:
            if step is not None:
                raise
            warnings.warn(f"{error}: left out", stacklevel=2)
    if not cached:
        raise DamagedCache(f"every cached evaluation in {eval_dir(run_dir)} is damaged")
    lines = ["| env steps | episodes | return mean | std | min | median | max | length mean |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    chosen = slice(None) if members is None else list(members)
    for at, data in cached.items():
        r, n = np.asarray(data["returns"])[chosen], np.asarray(data["lengths"])[chosen]
        lines.append(f"| {at:,d} | {r.size} | {r.mean():.2f} | {r.std():.2f} | {r.min():.2f} | "
                     f"{np.median(r):.2f} | {r.max():.2f} | {n.mean():.1f} |")
    last = max(cached)
    lengths = np.asarray(cached[last]["lengths"])[chosen].ravel()
    quantiles = np.percentile(lengths, [0, 10, 25, 50, 75, 90, 100])
    lines += ["", f"episode lengths at step {last:,d} ({'all members' if members is None else f'members {list(members)}'}): "
              + ", ".join(f"p{q}={v:.0f}" for q, v in zip((0, 10, 25, 50, 75, 90, 100), quantiles))]
    counts, edges = np.histogram(lengths, bins=min(10, max(1, len(np.unique(lengths)))))
    width = max(counts.max(), 1)
    for count, low, high in zip(counts, edges[:-1], edges[1:]):
        lines.append(f"  [{low:7.1f}, {high:7.1f}) {'#' * int(round(30 * count / width))} {count}")
    return "\n".join(lines)


def check_gif_path(out: Path) -> None:
    """``--gif OUT``: a file to (over)write, not a directory, in a folder that is not a file."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--gif={str(out)!r} is not allowed: it is a directory; give the file to "
                          f"write, e.g. {out / 'episode.gif'}")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--gif={str(out)!r} is not allowed: {parent} is a file, not a folder")


def render_gif(run_dir: Path, config, out: Path, step: int | None = None, member: int = 0,
               episode: int = 0, fps: int = 30) -> Path:
    """Render cached episode ``episode`` of ``member`` at evaluation ``step`` to a GIF."""
    check_gif_path(out)
    from pgjax.envs import make
    from pgjax.envs.rendering import can_render, render_episode
    if not can_render(config.env_id):
        from pgjax.envs.rendering import render_frame
        render_frame(config.env_id, None, None)  # raises the error that lists what can draw
    env, env_params = make(config.env_id, **dict(config.env_overrides))
    _, like = env.reset(jax.random.key(0), env_params)
    states = episode_states(load(run_dir, step), like, member, episode)
    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        render_episode(config.env_id, states, env_params, out, fps=fps)
    return out
