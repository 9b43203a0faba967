"""``IteratedRPS-v0``: iterated rock-paper-scissors against an opponent that exploits predictable
play: a deterministic policy is easily exploited, and the uniform random policy is optimal (the
Nash equilibrium; Sutton & Barto 2018, §13.1, on why stochastic policies matter).

Actions 0, 1, 2 = rock, paper, scissors, for the agent and for the opponent. The agent's reward
per round is ``PAYOFF[a, b]``: +1 win, 0 tie, −1 loss (a beats b iff (a − b) mod 3 = 1).

Observation: the last ``history_length`` = k joint plays (a, b), most recent first, each one-hot
over the 9 joint plays (all zeros for a slot before the first round): a float32 vector ``[9k]``.

Opponent (a frequency-counting exploiter): it keeps, for every *context* the agent can see (the
last k joint plays: 10^k contexts, counting "no play yet"), an exponential moving average of the
agent's actions in that context, f[c] ← (1 − η) f[c] + η e_a with η = ``ema_rate``, starting at
uniform. Each round it plays a best response to f[c_t] for the current context c_t, ties broken
uniformly at random, then updates f[c_t] with the agent's action. Conditioning on exactly what the
agent observes makes *any* predictability of the agent's policy π(·|obs) exploitable (not only
of its marginal frequencies); a policy that is uniform in every context is the only one whose
expected reward is 0 whatever the opponent's estimates are, and any other stationary policy
loses about ``exploitability(π(·|c))`` per round in context c once the estimates settle.

Episodes last ``max_steps_in_episode`` rounds (default 100) and end by **truncation**, not
termination: the iterated game has no natural end, the observation carries no round counter
(so a value of "the last round" would depend on hidden time), and the limit only sets how often
the opponent's memory is wiped (``reset`` starts it at uniform again). A critic therefore
bootstraps at the cut, as for any time limit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from .registry import register
from .rendering import register_renderer

ENV_ID = "IteratedRPS-v0"
ACTIONS = ("rock", "paper", "scissors")
EMPTY = 9  # history slot before the first round
# PAYOFF[a, b]: the agent's reward when it plays a and the opponent b.
PAYOFF = np.array([[0, -1, 1],
                   [1, 0, -1],
                   [-1, 1, 0]], np.float32)


def payoff(agent_action, opponent_action):
    """+1 if the agent's action beats the opponent's, −1 if it loses, 0 on a tie."""
    return jnp.asarray(PAYOFF)[agent_action, opponent_action]


def opponent_scores(agent_probs):
    """``[..., 3]``: the opponent's expected payoff (its win rate minus loss rate) for each of
    its actions against an agent mixing ``agent_probs`` ``[..., 3]``: −Σ_a p_a PAYOFF[a, b]."""
    return -jnp.einsum("...a,ab->...b", jnp.asarray(agent_probs, jnp.float32), jnp.asarray(PAYOFF))


def exploitability(agent_probs):
    """The best-responding opponent's expected payoff per round, win rate minus loss rate,
    against the mixed strategy ``agent_probs`` ``[..., 3]`` (rock, paper, scissors):
    max_b Σ_a p_a·(−PAYOFF[a, b]). It lies in [0, 1]: 1 for a pure strategy, 0 iff ``agent_probs``
    is uniform (the game is zero-sum and symmetric, so the values against the three replies sum
    to 0 and their maximum is 0 only when all are 0)."""
    return jnp.maximum(jnp.max(opponent_scores(agent_probs), axis=-1), 0.0)  # no −0.0 / −1e-9


def best_response(key, agent_freqs, tol: float = 1e-6):
    """The opponent's reply to estimated agent frequencies ``[3]``: an action maximising
    :func:`opponent_scores`, chosen uniformly among those within ``tol`` of the maximum."""
    scores = opponent_scores(agent_freqs)
    best = scores >= jnp.max(scores) - tol
    return jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf))


def context_index(history):
    """The opponent's context for a history ``[k]`` of joint plays (0..8, or 9 = empty):
    Σ_i history[i]·10^i, in [0, 10^k)."""
    history = jnp.asarray(history, jnp.int32)
    return jnp.sum(history * (10 ** jnp.arange(history.shape[-1], dtype=jnp.int32)), axis=-1)


def joint_play(agent_action, opponent_action):
    """The code 3a + b of a joint play (0..8)."""
    return 3 * agent_action + opponent_action


def history_observation(history):
    """One-hot of each joint play in ``history`` ``[k]`` (empty slots all zero), flattened ``[9k]``."""
    return jax.nn.one_hot(history, 10, dtype=jnp.float32)[..., :9].reshape(history.shape[:-1] + (-1,))


@struct.dataclass
class EnvState(environment.EnvState):
    history: jax.Array  # [k] int32 joint plays, most recent first (EMPTY before the first round)
    freqs: jax.Array    # [10^k, 3] the opponent's EMA of the agent's actions per context
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    ema_rate: float = 0.3
    max_steps_in_episode: int = 100


class IteratedRPS(environment.Environment[EnvState, EnvParams]):
    """Iterated rock-paper-scissors against a per-context frequency exploiter (module doc).
    ``history_length`` (static: it sets the observation shape) is k."""

    def __init__(self, history_length: int = 1):
        super().__init__()
        if not (isinstance(history_length, int) and 1 <= history_length <= 4):
            raise ValueError(f"history_length={history_length!r} is not allowed: an integer in 1..4")
        self.history_length = history_length
        self.num_contexts = 10 ** history_length

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        context = context_index(state.history)
        opponent_action = best_response(key, state.freqs[context])
        action = jnp.asarray(action, jnp.int32)
        reward = payoff(action, opponent_action)
        rate = jnp.asarray(params.ema_rate, jnp.float32)
        new_freq = (1.0 - rate) * state.freqs[context] + rate * jax.nn.one_hot(action, 3)
        history = jnp.concatenate([joint_play(action, opponent_action)[None], state.history[:-1]])
        state = EnvState(history=history, freqs=state.freqs.at[context].set(new_freq),
                         time=state.time + 1)
        info = {"discount": jnp.asarray(1.0), "opponent_action": opponent_action}
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state),
                reward, jnp.asarray(False), info)

    def reset_env(self, key, params: EnvParams):
        state = EnvState(history=jnp.full((self.history_length,), EMPTY, jnp.int32),
                         freqs=jnp.full((self.num_contexts, 3), 1.0 / 3.0, jnp.float32), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        return history_observation(state.history)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.asarray(False)

    @property
    def name(self) -> str:
        return ENV_ID

    @property
    def num_actions(self) -> int:
        return 3

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(3)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (9 * self.history_length,), jnp.float32)

    def state_space(self, params: EnvParams) -> spaces.Dict:
        return spaces.Dict({
            "history": spaces.Box(0, EMPTY, (self.history_length,), jnp.int32),
            "freqs": spaces.Box(0.0, 1.0, (self.num_contexts, 3), jnp.float32),
            "time": spaces.Discrete(params.max_steps_in_episode)})


# ----------------------------------------------------------------------------------------------
# Renderer: one row per remembered round (agent | opponent), then the opponent's current estimate
# of the agent's rock/paper/scissors frequencies in this context as three bars.

_COLOURS = np.array([[120, 90, 60], [235, 235, 235], [60, 110, 210]], np.uint8)  # rock, paper, scissors


def render(state, env_params) -> np.ndarray:
    """``[max(16k, 48), 88, 3]`` uint8 frame of one environment's ``EnvState`` (NumPy leaves)."""
    history = np.asarray(state.history)
    k, size = history.shape[0], 16
    height = max(size * k, 48)
    frame = np.full((height, 2 * size + 8 + 3 * size, 3), 40, np.uint8)
    for i, play in enumerate(history):
        if play == EMPTY:
            continue
        for j, action in enumerate(divmod(int(play), 3)):
            frame[i * size + 1:(i + 1) * size - 1, j * size + 1:(j + 1) * size - 1] = _COLOURS[action]
    context = int(np.sum(history * 10 ** np.arange(k)))
    freqs = np.asarray(state.freqs)[context]
    for a in range(3):
        bar = int(round(float(freqs[a]) * (height - 2)))
        left = 2 * size + 8 + a * size
        frame[height - 1 - bar:height - 1, left + 2:left + size - 2] = _COLOURS[a]
    return frame


register(ENV_ID, IteratedRPS)
register_renderer(ENV_ID, render)
