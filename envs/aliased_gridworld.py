"""``AliasedGridworld-v0``: a small grid world whose observation aliases two states, the standard
example of why a stochastic policy can beat every deterministic one when states are aliased
(Sutton & Barto 2018, §13.1).

Layout (row 0 on top)::

    [ 0 ][ 1 ][ 2 ][ 3 ][ 4 ]      top row: the agent starts in one of these, uniformly
    [ X ][###][ G ][###][ X ]      X: skull (bad terminal), G: gold (goal terminal), ###: wall

Actions 0..3 = N, E, S, W. Moving into a wall or off the grid leaves the agent where it is.
Entering a bottom cell ends the episode (``terminated``); the time limit
``max_steps_in_episode`` ends it by ``truncated`` (a limit, not a terminal state).

Observation: the four wall bits (N, E, S, W) of the current cell, 1 = blocked. The grey cells 1
and 3 both read (1, 0, 1, 0), so no policy on these features can tell them apart (the
agent cannot tell the aliased states apart).

Rewards (``EnvParams``; the transition's reward depends on the cell entered):
``gold_reward`` = +1 on entering the gold, ``skull_reward`` = −1 on entering a skull, and
``step_reward`` = −0.1 for every other step. Why: with these numbers and the uniform start,
the undiscounted value J(π) = E[Σ r] is

- 0.72 for the best stochastic policy (E/W with probability ½ each in the grey cells, E in
  cell 0, S in cell 2, W in cell 4): from a grey cell, half the time it steps next to the gold
  and into it (−0.1 + 1), else it goes out to the corner and back (−0.2) and tries again:
  v = ½·0.9 + ½(−0.2 + v) ⇒ v = 0.7; the corners are worth 0.6 and the middle 1, so
  J = (0.6 + 0.7 + 1 + 0.7 + 0.6)/5 = 0.72 (0.7191 under the 20-step limit). ½ is the best
  probability: J(p) = 0.66 at p = 0.3, 0.71 at p = 0.4;
- 0.12 for the best deterministic policy on the features (E in both grey cells, then S into the
  skull from cell 4, or the mirror image): starts 0,1,2 reach the gold (0.8, 0.9, 1.0), starts
  3,4 hit the skull (−1.1, −1.0);
- −2 from the trapped starts for a deterministic policy that avoids the skull (it oscillates
  between a grey cell and a corner until the 20-step time limit).

So the best stochastic policy beats every deterministic one by 0.6 per episode, the point of
the example. ``exact_values`` computes these numbers for any policy (linear solve, or the exact
finite-horizon recursion under the time limit); ``tests/test_env_aliased_gridworld.py`` checks
them against hand values and Monte-Carlo returns of this environment.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .registry import register
from .rendering import register_renderer

ENV_ID = "AliasedGridworld-v0"
LAYOUT = (".....",
          "X#G#X")
ACTIONS = ("N", "E", "S", "W")
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)  # (drow, dcol) for N, E, S, W
NUM_ROWS, NUM_COLS = len(LAYOUT), len(LAYOUT[0])
START_CELLS = tuple((0, c) for c in range(NUM_COLS))
GREY_CELLS = ((0, 1), (0, 3))


def _blocked(row: int, col: int) -> bool:
    return not (0 <= row < NUM_ROWS and 0 <= col < NUM_COLS) or LAYOUT[row][col] == "#"


def wall_bits_table() -> np.ndarray:
    """``[rows, cols, 4]`` float32: for each cell, 1 where N, E, S, W is a wall or the border."""
    table = np.zeros((NUM_ROWS, NUM_COLS, 4), np.float32)
    for r in range(NUM_ROWS):
        for c in range(NUM_COLS):
            table[r, c] = [_blocked(r + dr, c + dc) for dr, dc in MOVES]
    return table


_KIND = {".": 0, "G": 1, "X": 2, "#": 3}
KINDS = np.array([[_KIND[ch] for ch in row] for row in LAYOUT], np.int32)
WALL_BITS = wall_bits_table()


@struct.dataclass
class EnvState(environment.EnvState):
    row: jax.Array
    col: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    step_reward: float = -0.1
    gold_reward: float = 1.0
    skull_reward: float = -1.0
    max_steps_in_episode: int = 20


def next_cell(row, col, action):
    """The cell after ``action`` (0..3 = N, E, S, W); blocked moves stay put. Works on NumPy
    ints and on traced JAX scalars alike."""
    moves = jnp.asarray(MOVES)
    new_row, new_col = row + moves[action, 0], col + moves[action, 1]
    inside = (new_row >= 0) & (new_row < NUM_ROWS) & (new_col >= 0) & (new_col < NUM_COLS)
    safe_row, safe_col = jnp.clip(new_row, 0, NUM_ROWS - 1), jnp.clip(new_col, 0, NUM_COLS - 1)
    free = inside & (jnp.asarray(KINDS)[safe_row, safe_col] != _KIND["#"])
    return jnp.where(free, new_row, row), jnp.where(free, new_col, col)


def cell_reward(kind, params: EnvParams):
    """Reward for entering a cell of ``kind`` (0 free, 1 gold, 2 skull)."""
    return jnp.where(kind == _KIND["G"], params.gold_reward,
                     jnp.where(kind == _KIND["X"], params.skull_reward, params.step_reward))


class AliasedGridworld(environment.Environment[EnvState, EnvParams]):
    """The aliased grid world as a gymnax environment; see the module doc."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        row, col = next_cell(state.row, state.col, action)
        kind = jnp.asarray(KINDS)[row, col]
        reward = cell_reward(kind, params).astype(jnp.float32)
        state = EnvState(row=row, col=col, time=state.time + 1)
        terminated = self.is_terminated(state, params)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward,
                terminated, {"discount": self.discount(state, params)})

    def reset_env(self, key, params: EnvParams):
        col = jax.random.randint(key, (), 0, NUM_COLS)
        state = EnvState(row=jnp.asarray(0, jnp.int32), col=col.astype(jnp.int32), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """The wall bits (N, E, S, W) of the agent's cell: aliased in the two grey cells."""
        return jnp.asarray(WALL_BITS)[state.row, state.col]

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        kind = jnp.asarray(KINDS)[state.row, state.col]
        return (kind == _KIND["G"]) | (kind == _KIND["X"])

    @property
    def name(self) -> str:
        return ENV_ID

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (4,), jnp.float32)

    def state_space(self, params: EnvParams) -> spaces.Dict:
        return spaces.Dict({"row": spaces.Discrete(NUM_ROWS), "col": spaces.Discrete(NUM_COLS),
                            "time": spaces.Discrete(params.max_steps_in_episode)})


# ----------------------------------------------------------------------------------------------
# Exact values (NumPy, host side): the numbers the benchmark draws as lines and the tests check.

def start_observations() -> np.ndarray:
    """``[5, 4]`` the observation of each top-row (start) cell, left to right."""
    return np.stack([WALL_BITS[r, c] for r, c in START_CELLS])


def distinct_observations() -> np.ndarray:
    """``[4, 4]`` the distinct start-row observations: cell 0, grey (cells 1 and 3), cell 2,
    cell 4 — the only things a policy on these features can condition on."""
    obs = start_observations()
    return obs[[0, 1, 2, 4]]


def cell_policy_from_obs_policy(obs_probs: np.ndarray) -> np.ndarray:
    """``[4 obs classes, 4]`` → ``[5 cells, 4]``: the grey cells share one row (aliasing)."""
    obs_probs = np.asarray(obs_probs, np.float64)
    return obs_probs[[0, 1, 2, 1, 3]]


def transition_model(params: EnvParams) -> tuple[np.ndarray, np.ndarray]:
    """(P ``[5, 4, 5]``, R ``[5, 4]``) over the five top-row cells: P[s, a, s'] is 1 where action
    a moves s to top cell s' and 0 where it enters a terminal cell (absorbing, value 0); R[s, a]
    is the reward of that move. Plain Python from ``LAYOUT`` (independent of the JAX step)."""
    p = np.zeros((NUM_COLS, 4, NUM_COLS))
    r = np.zeros((NUM_COLS, 4))
    rewards = {".": params.step_reward, "G": params.gold_reward, "X": params.skull_reward}
    for s, (row, col) in enumerate(START_CELLS):
        for a, (dr, dc) in enumerate(MOVES.tolist()):
            new_row, new_col = (row, col) if _blocked(row + dr, col + dc) else (row + dr, col + dc)
            cell = LAYOUT[new_row][new_col]
            r[s, a] = float(rewards[cell])
            if cell == ".":
                p[s, a, new_col] = 1.0
    return p, r


def exact_values(cell_probs: np.ndarray, params: EnvParams, horizon: int | None = None) -> np.ndarray:
    """Undiscounted values v_π(s) of the five start cells under π(a|s) = ``cell_probs[s, a]``.

    ``horizon=None``: the linear solve v = (I − P_π)⁻¹ r_π of an absorbing Markov chain (Sutton
    & Barto 2018, §4.1, Bellman equation for v_π with γ = 1); it needs every start cell to reach a
    terminal with probability 1 (``LinAlgError`` for a policy that can cycle for ever).
    ``horizon=T``: the exact expected sum of the first T rewards, v_{k+1} = r_π + P_π v_k from
    v_0 = 0 (what the time-limited environment returns). J(π) is the mean over the uniform start.
    """
    p, r = transition_model(params)
    probs = np.asarray(cell_probs, np.float64)
    p_pi = np.einsum("sa,sat->st", probs, p)
    r_pi = np.sum(probs * r, axis=1)
    if horizon is None:
        return np.linalg.solve(np.eye(NUM_COLS) - p_pi, r_pi)
    v = np.zeros(NUM_COLS)
    for _ in range(int(horizon)):
        v = r_pi + p_pi @ v
    return v


def optimal_stochastic_obs_policy(p_east: float = 0.5) -> np.ndarray:
    """``[4 obs classes, 4]``: E in cell 0, E w.p. ``p_east`` else W in the grey cells, S in cell 2,
    W in cell 4 (p_east = ½ is optimal by symmetry of the start distribution)."""
    probs = np.zeros((4, 4))
    probs[0, 1] = 1.0
    probs[1, 1], probs[1, 3] = p_east, 1.0 - p_east
    probs[2, 2] = 1.0
    probs[3, 3] = 1.0
    return probs


def all_deterministic_obs_policies() -> np.ndarray:
    """``[256, 4, 4]`` every deterministic policy on the four distinct observations (one-hot rows)."""
    grids = np.stack(np.meshgrid(*[np.arange(4)] * 4, indexing="ij"), -1).reshape(-1, 4)
    return np.eye(4)[grids]


def reference_values(params: EnvParams | None = None) -> dict[str, Any]:
    """J of the best stochastic policy and of the best deterministic policy on the features, both
    exact under the time limit (finite-horizon recursion), and the best deterministic policy."""
    params = params or EnvParams()
    horizon = int(params.max_steps_in_episode)
    stochastic = exact_values(cell_policy_from_obs_policy(optimal_stochastic_obs_policy()), params, horizon)
    deterministic = all_deterministic_obs_policies()
    values = np.array([exact_values(cell_policy_from_obs_policy(d), params, horizon).mean()
                       for d in deterministic])
    best = int(np.argmax(values))
    return {"optimal_stochastic": float(stochastic.mean()), "best_deterministic": float(values[best]),
            "best_deterministic_actions": [ACTIONS[i] for i in deterministic[best].argmax(-1)]}


# ----------------------------------------------------------------------------------------------
# Renderer: one cell = 16 px; grey cells grey, walls black, skulls red, gold yellow, agent blue.

_COLOURS = {0: (235, 235, 235), 1: (230, 190, 40), 2: (200, 40, 40), 3: (20, 20, 20)}


def render(state, env_params) -> np.ndarray:
    """``[32, 80, 3]`` uint8 frame of one environment's ``EnvState`` (NumPy leaves)."""
    size = 16
    frame = np.zeros((NUM_ROWS * size, NUM_COLS * size, 3), np.uint8)
    for r in range(NUM_ROWS):
        for c in range(NUM_COLS):
            colour = (150, 150, 150) if (r, c) in GREY_CELLS else _COLOURS[int(KINDS[r, c])]
            frame[r * size + 1:(r + 1) * size - 1, c * size + 1:(c + 1) * size - 1] = colour
    row, col = int(np.asarray(state.row)), int(np.asarray(state.col))
    frame[row * size + 5:row * size + 11, col * size + 5:col * size + 11] = (40, 80, 220)
    return frame


register(ENV_ID, AliasedGridworld)
register_renderer(ENV_ID, render)
