"""Craftax's environments as gymnax environments: ``envs.make("craftax:Craftax-Classic-Symbolic-v1")``.

An optional extra (``pip install -e ".[craftax]"``); nothing here imports craftax until a
``craftax:`` id is made. Craftax (Matthews et al. 2024, "Craftax: A Lightning-Fast Benchmark for
Open-Ended Reinforcement Learning") is Crafter in JAX: Craftax-Classic (Crafter's rules, 17
actions) and the full Craftax (43 actions, 9 floors). What craftax 1.6's step says, read from its
source (``craftax_classic/game_logic.is_game_over``, ``craftax/game_logic.is_game_over``):

- ``done`` is one flag for three things: the player dies (health ≤ 0), walks into lava, (full
  game) defeats the final boss — or the step counter reaches ``max_timesteps`` (10,000 Classic,
  100,000 full). Its ``info["discount"]`` is 0 for all of them, a time limit included, so the
  suite itself does not tell truncation from termination.
- Here **terminated** is the suite's own game-over test evaluated with the time limit out of
  reach, and the time limit is gymnax's: ``EnvParams.max_steps_in_episode`` (default: the suite's
  ``max_timesteps`` for the id), reported as ``truncated``, so it bootstraps from the final
  observation. The suite's ``max_timesteps`` is used by nothing else.
- Every other field of the suite's ``EnvParams`` (``day_length``, the mobs' health and spawn
  chances, ``always_diamond``, …) is a field of ours too: ``--set env.day_length=200``.
- Rewards are the suite's (achievements unlocked, plus the change in health / 10).
- Observations: ``*-Symbolic-v1`` a float32 vector (1,345 Classic, 8,268 full: the local map
  one-hot, inventory, intrinsics, direction); ``*-Pixels-v1`` a ``[H, W, 3]`` float32 image in
  [0, 1] (63 × 63 Classic, 130 × 110 full) for ``torso=cnn``. A Pixels id builds its texture
  cache into craftax's own folder on first use (seconds to minutes, once).
- Frames for ``pgjax episodes --gif`` come from craftax's pixel renderer of the state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from .families import Family, maker
from .suites import SuiteEnv, check_suite_id, params_class, suite_params

PREFIX = "craftax:"
NAMES = ("Craftax-Classic-Pixels-v1", "Craftax-Classic-Symbolic-v1", "Craftax-Pixels-v1",
         "Craftax-Symbolic-v1")  # craftax.craftax_env.make_craftax_env_from_name's, hard-coded there
_OUT_OF_REACH = 2 ** 30
_NOT_MIRRORED = ("max_timesteps", "fractal_noise_angles")  # the time limit is ours; a world-gen detail
_FRAME_BLOCK_PIXELS = 16  # the renderer's block size for GIF frames (craftax's IMG size)


def names() -> tuple[str, ...]:
    return NAMES


def check_id(env_id: str) -> None:
    """Raise ``ValueError`` for a ``craftax:`` id that cannot be made, saying why."""
    check_suite_id(env_id, PREFIX, "craftax", "craftax", names)


class CraftaxEnv(SuiteEnv):
    """A craftax environment behind gymnax's ``Environment`` API (see the module docstring)."""

    def __init__(self, name: str):
        super().__init__()
        from craftax.craftax_env import make_craftax_env_from_name
        self.craftax_name = name
        self.classic = name.startswith("Craftax-Classic")
        self.suite_env = make_craftax_env_from_name(name, auto_reset=False)
        self.suite_default = self.suite_env.default_params
        self.params_type = params_class(self.suite_default,
                                        time_limit=int(self.suite_default.max_timesteps),
                                        drop=_NOT_MIRRORED)

    @property
    def default_params(self):
        return self.params_type()

    def _suite_params(self, params):
        return suite_params(params, self.suite_default, max_timesteps=_OUT_OF_REACH,
                            fractal_noise_angles=self.suite_default.fractal_noise_angles)

    def suite_reset(self, key, params):
        return self.suite_env.reset_env(key, self._suite_params(params))

    def suite_step(self, key, suite_state, action, params):
        suite = self._suite_params(params)
        obs, suite_state, reward, _, _ = self.suite_env.step_env(key, suite_state, action, suite)
        return obs, suite_state, reward, self.suite_env.is_terminal(suite_state, suite)

    def rgb_frame(self, state, params) -> np.ndarray:
        """``[H, W, 3] uint8``: craftax's pixel renderer of one state."""
        frame = _renderer(self.classic)(state.suite)
        return np.clip(np.asarray(frame), 0, 255).astype(np.uint8)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.craftax_name}"

    @property
    def num_actions(self) -> int:
        return int(self.suite_env.num_actions)

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params):
        shape = tuple(int(d) for d in self.suite_env.observation_space(self.suite_default).shape)
        return spaces.Box(0.0, 1.0, shape, jnp.float32)


@functools.lru_cache(maxsize=2)
def _renderer(classic: bool):
    """craftax's jitted pixel renderer (``[H, W, 3]`` floats in 0..255) for GIF frames."""
    if classic:
        from craftax.craftax_classic.renderer import make_craftax_pixel_renderer
        return jax.jit(make_craftax_pixel_renderer(_FRAME_BLOCK_PIXELS))
    from craftax.craftax.renderer import make_craftax_pixel_renderer
    return jax.jit(make_craftax_pixel_renderer(_FRAME_BLOCK_PIXELS, do_night_noise=True))


# The (cached) :class:`CraftaxEnv` of a ``craftax:NAME`` id.
make = maker(check_id, lambda env_id: CraftaxEnv(env_id[len(PREFIX):]))


FAMILY = Family(PREFIX, check_id, make, "craftax:NAME for Craftax and Craftax-Classic with the "
                "[craftax] extra", package="craftax")
