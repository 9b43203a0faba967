"""``ShortCorridor-v0``: the short corridor with switched actions (Sutton & Barto 2018, Example 13.1).

::

    S ──── [0] ⇄ [1]* ⇄ [2] ──── G          * in state 1 the actions are reversed

Three non-terminal states 0, 1, 2 and the goal 3 at the right end. Actions ``0 = left`` and
``1 = right`` move one cell that way, except in state 1 where ``right`` moves left and ``left``
moves right. Moving left in state 0 bumps into the wall and stays put. Every step costs −1 and
entering the goal terminates the episode. Episodes start in state 0.

Every state produces the same observation ``ones((1,))``, so a policy cannot tell them apart: the
best it can do is a *stochastic* policy "right with probability p". :func:`start_value` gives
v_π(s₀) of that policy by solving the Bellman equations (S&B eq. 3.14) as a dense linear system,
:func:`closed_form_start_value` the same in closed form, and :func:`optimal_right_probability`
the best p and its value (S&B quote p* ≈ 0.59, v* ≈ −11.6).

Time limit: ``max_steps_in_episode`` defaults to 1000 steps, far above the expected episode
length −v_π(s₀) ≤ 82.1 of every policy with p ∈ [0.05, 0.95] (the ε = 0.1-greedy policies of
Example 13.1), so it only cuts episodes of near-deterministic policies that would never reach the
goal (p → 0 or p → 1). At the limit the episode is *truncated*, not terminated (gymnax ≥ 1.0).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .constant_observation import ConstantObservationEnv
from .registry import register
from .rendering import register_renderer

LEFT, RIGHT = 0, 1
NUM_STATES = 3        # non-terminal states 0, 1, 2
GOAL = 3              # the terminal state at the right end
REVERSED_STATE = 1    # where left and right are switched

# Hand-written successor table s' = NEXT[s, a] for the non-terminal states (Example 13.1), used
# by the NumPy Bellman solve; the JAX dynamics below compute moves arithmetically instead.
NEXT = np.array([[0, 1],    # state 0: left hits the wall, right → 1
                 [2, 0],    # state 1 (reversed): left → 2, right → 0
                 [1, GOAL]])  # state 2: left → 1, right → goal


@struct.dataclass
class EnvState(environment.EnvState):
    position: jax.Array  # int32 cell in {0, 1, 2} (3 = goal only before the auto-reset)
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


def move(position: jax.Array, action: jax.Array) -> jax.Array:
    """The successor cell: ±1 in the action's direction, reversed in state 1, clipped at the wall."""
    step = jnp.where(action == RIGHT, 1, -1)
    step = jnp.where(position == REVERSED_STATE, -step, step)
    return jnp.clip(position + step, 0, GOAL).astype(jnp.int32)


class ShortCorridor(ConstantObservationEnv):
    """S&B 2018 Example 13.1 as a gymnax environment (reward −1 per step, goal terminates)."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):
        position = move(state.position, jnp.asarray(action, jnp.int32))
        new_state = EnvState(position=position, time=state.time + 1)
        reward = jnp.asarray(-1.0, jnp.float32)
        terminated = position == GOAL
        return self.get_obs(new_state, params), new_state, reward, terminated, {}

    def reset_env(self, key: jax.Array, params: EnvParams):
        state = EnvState(position=jnp.asarray(0, jnp.int32), time=0)
        return self.get_obs(state, params), state

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.position == GOAL

    @property
    def name(self) -> str:
        return "ShortCorridor-v0"

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)


    def state_space(self, params: EnvParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        return spaces.Dict({"position": spaces.Discrete(GOAL + 1),
                            "time": spaces.Discrete(params.max_steps_in_episode + 1)})


# --------------------------------------------------------------------------- exact values (NumPy)

def policy_transition_matrix(p: float) -> np.ndarray:
    """P_π[s, s'] among the non-terminal states under π(right) = p (rows sum to 1 minus the
    probability of entering the goal)."""
    P = np.zeros((NUM_STATES, NUM_STATES))
    for s in range(NUM_STATES):
        for action, prob in ((LEFT, 1.0 - p), (RIGHT, p)):
            nxt = NEXT[s, action]
            if nxt != GOAL:
                P[s, nxt] += prob
    return P


def state_values(p: float, gamma: float = 1.0) -> np.ndarray:
    """v_π for the three non-terminal states, from the Bellman equations v = r_π + γ P_π v
    (S&B 2018, eq. 3.14) solved densely: (I − γ P_π) v = r_π with r_π = −1. Needs 0 < p < 1
    when γ = 1 (otherwise the goal is never reached and the system is singular)."""
    P = policy_transition_matrix(float(p))
    return np.linalg.solve(np.eye(NUM_STATES) - gamma * P, -np.ones(NUM_STATES))


def start_value(p: float, gamma: float = 1.0) -> float:
    """v_π(s₀) of "right with probability p" by the linear solve of :func:`state_values`."""
    return float(state_values(p, gamma)[0])


def closed_form_start_value(p):
    """v_π(s₀) = 2(p − 2) / (p(1 − p)) for γ = 1, derived by eliminating v₂ and v₀ from the three
    Bellman equations v₀ = −1 + p v₁ + (1−p) v₀, v₁ = −1 + p v₀ + (1−p) v₂, v₂ = −1 + (1−p) v₁
    (which give v₁ = (p − 3)/(p(1 − p)) and v₀ = v₁ − 1/p). Works on arrays."""
    p = np.asarray(p, np.float64)
    return 2.0 * (p - 2.0) / (p * (1.0 - p))


def optimal_right_probability(gamma: float = 1.0, tol: float = 1e-10) -> tuple[float, float]:
    """(p*, v*(s₀)): golden-section search of :func:`start_value` over p ∈ (0, 1) (it is unimodal
    there). For γ = 1 the stationarity condition of the closed form is p² − 4p + 2 = 0, whose
    root in (0, 1) is p* = 2 − √2."""
    inv_phi = (np.sqrt(5.0) - 1.0) / 2.0
    low, high = 1e-6, 1.0 - 1e-6
    a, b = high - inv_phi * (high - low), low + inv_phi * (high - low)
    fa, fb = start_value(a, gamma), start_value(b, gamma)
    while high - low > tol:
        if fa < fb:
            low, a, fa = a, b, fb
            b = low + inv_phi * (high - low)
            fb = start_value(b, gamma)
        else:
            high, b, fb = b, a, fa
            a = high - inv_phi * (high - low)
            fa = start_value(a, gamma)
    p = 0.5 * (low + high)
    return p, start_value(p, gamma)


# --------------------------------------------------------------------------- rendering

def render_short_corridor(state: EnvState, env_params: EnvParams, cell: int = 24) -> np.ndarray:
    """Four cells left to right: states 0–2 (grey, the reversed state 1 purple), the goal (green);
    the agent is a red square. Returns ``uint8 [cell, 4·cell, 3]``."""
    colours = [(120, 120, 120), (130, 90, 170), (120, 120, 120), (60, 170, 80)]
    frame = np.zeros((cell, (GOAL + 1) * cell, 3), np.uint8)
    for index, colour in enumerate(colours):
        frame[1:-1, index * cell + 1:(index + 1) * cell - 1] = colour
    position = int(state.position)
    margin = cell // 4
    frame[margin:cell - margin, position * cell + margin:(position + 1) * cell - margin] = (220, 40, 40)
    return frame


register("ShortCorridor-v0", ShortCorridor)
register_renderer("ShortCorridor-v0", render_short_corridor)
