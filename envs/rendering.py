"""Host-side renderers: one RGB frame per environment state, and GIFs of whole episodes.

A renderer is ``fn(state, env_params) -> np.ndarray [H, W, 3] uint8`` where ``state`` is the
*base* environment's ``EnvState`` for one environment at one step, with NumPy leaves. Our own
environments register theirs next to their definition with :func:`register_renderer`.

Built in (registered when this module is imported): the gymnax classic-control environments,
drawn in NumPy with the geometry of Gym's own renderers (CartPole-v1, Pendulum-v1, Acrobot-v1,
MountainCar-v0, MountainCarContinuous-v0), and the MinAtar games, drawn as their observation
grid with one colour per channel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

Renderer = Callable[[Any, Any], np.ndarray]
_RENDERERS: dict[str, Renderer] = {}


def register_renderer(env_id: str, fn: Renderer) -> None:
    """Make ``render_frame(env_id, ...)`` use ``fn``."""
    _RENDERERS[env_id] = fn


def _family_renderer(env_id: str) -> Renderer | None:
    """The ``rgb_frame(state, params)`` method of an environment family's adapter (Craftax,
    Navix, XLand-MiniGrid draw themselves; envs/families.py), or None."""
    from .families import family_of
    from .registry import FAMILIES
    family = family_of(env_id, FAMILIES)
    if family is None:
        return None
    try:
        env = family.make(env_id)
    except ValueError:
        return None
    return getattr(env, "rgb_frame", None)


def _renderer(env_id: str) -> Renderer | None:
    return _RENDERERS.get(env_id) or _family_renderer(env_id)


def can_render(env_id: str) -> bool:
    return _renderer(env_id) is not None


def _no_renderer(env_id: str) -> ValueError:
    return ValueError(f"no renderer for {env_id!r}; environments that can draw themselves: "
                      f"{', '.join(sorted(_RENDERERS))}, and the ids of the craftax:, navix: and "
                      "xminigrid: families")


def render_frame(env_id: str, state: Any, env_params: Any) -> np.ndarray:
    """One ``[H, W, 3] uint8`` frame of ``state``; ``ValueError`` naming the envs that can draw."""
    renderer = _renderer(env_id)
    if renderer is None:
        raise _no_renderer(env_id)
    frame = np.asarray(renderer(state, env_params))
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"renderer for {env_id!r} returned {frame.dtype} {frame.shape}, "
                         "expected uint8 [H, W, 3]")
    return frame


# --------------------------------------------------------------------------- episodes and GIFs

def _leaves_and_rebuild(tree: Any):
    """Flatten a state pytree (flax struct dataclass, NamedTuple, dict, ...) without pgjax."""
    import jax
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return leaves, lambda new: jax.tree_util.tree_unflatten(treedef, new)


def episode_length(states: Any) -> int:
    """The length ``L`` of the leading time axis shared by the leaves of ``states``."""
    leaves, _ = _leaves_and_rebuild(states)
    lengths = {np.shape(leaf)[0] for leaf in leaves if np.ndim(leaf) >= 1}
    if len(lengths) != 1:
        raise ValueError(f"state leaves must share one leading time axis, got lengths {lengths}")
    return lengths.pop()


def state_at(states: Any, t: int) -> Any:
    """The state at step ``t`` of a time-stacked state (leaves ``[L, ...]``), as NumPy."""
    leaves, rebuild = _leaves_and_rebuild(states)
    return rebuild([np.asarray(leaf)[t] if np.ndim(leaf) >= 1 else np.asarray(leaf)
                    for leaf in leaves])


def write_gif(frames: Iterable[np.ndarray], path, fps: float = 30) -> Path:
    """Write ``frames`` (each ``[H, W, 3] uint8``, all the same size) as a looping GIF.

    Frames with at most 256 colours in all are stored exactly, with one shared palette; more
    colours are quantised by Pillow. GIF delays are counted in hundredths of a second, so the
    frame time is ``round(100 / fps)`` centiseconds; Pillow merges identical consecutive frames
    into one longer frame (the timing is kept). Returns the path.
    """
    from PIL import Image

    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    shape = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape != shape:
            raise ValueError(f"frame {i} is {frame.dtype} {frame.shape}; expected uint8 {shape} "
                             "[H, W, 3] like frame 0")
    images = _shared_palette([Image.fromarray(frame) for frame in frames], Image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = 10 * max(1, round(100 / fps))  # milliseconds, whole centiseconds
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


def _shared_palette(images: list, image_module) -> list:
    """The RGB ``images`` as palette images sharing one exact palette when they have at most 256
    colours in all (else unchanged, for Pillow to quantise)."""
    colours: set = set()
    for image in images:
        found = image.getcolors(256)
        if found is None:
            return images
        colours.update(colour for _, colour in found)
        if len(colours) > 256:
            return images
    palette = image_module.new("P", (1, 1))
    palette.putpalette([value for colour in sorted(colours) for value in colour])
    return [image.quantize(palette=palette, dither=image_module.Dither.NONE) for image in images]


def render_episode(env_id: str, states: Any, env_params: Any, path, fps: float = 30) -> Path:
    """Render every step of a time-stacked state pytree (leaves ``[L, ...]``) to a GIF at ``path``.

    ``states`` holds the base environment's ``EnvState`` of one environment (no batch axis) at
    ``L`` consecutive steps, e.g. a recorded evaluation episode sliced to its valid steps.
    """
    if not can_render(env_id):
        raise _no_renderer(env_id)
    frames = [render_frame(env_id, state_at(states, t), env_params)
              for t in range(episode_length(states))]
    return write_gif(frames, path, fps)


# --------------------------------------------------------------------------- drawing primitives
# World coordinates are mapped by the caller to pixels: x to the right, y *up* from the bottom
# row. Masks are boolean [H, W] over pixel centres.

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x [1, W], y [H, 1])`` with y measured up from the bottom."""
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5
    y = (height - 1 - np.arange(height, dtype=np.float64))[:, None] + 0.5
    return x, y


def _canvas(height: int, width: int, colour=WHITE) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3)).copy()


def _paint(frame: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    frame[mask] = np.asarray(colour, np.uint8)
    return frame


def _segment_mask(shape, p0, p1, width: float) -> np.ndarray:
    """Pixels within ``width/2`` of the segment ``p0``-``p1`` (a bar with round ends)."""
    x, y = _pixel_grid(*shape)
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return (x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2 <= (width / 2.0) ** 2


def _disc_mask(shape, centre, radius: float) -> np.ndarray:
    x, y = _pixel_grid(*shape)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2


def _rect_mask(shape, left: float, bottom: float, right: float, top: float) -> np.ndarray:
    x, y = _pixel_grid(*shape)
    return (x >= left) & (x <= right) & (y >= bottom) & (y <= top)


def _rotated_rect_mask(shape, centre, half_length: float, half_height: float, angle: float):
    """A rectangle centred at ``centre`` whose long side is turned by ``angle`` (radians, CCW)."""
    x, y = _pixel_grid(*shape)
    c, s = math.cos(angle), math.sin(angle)
    u = (x - centre[0]) * c + (y - centre[1]) * s
    v = -(x - centre[0]) * s + (y - centre[1]) * c
    return (np.abs(u) <= half_length) & (np.abs(v) <= half_height)


def _scalar(value) -> float:
    return float(np.asarray(value).reshape(()))


# --------------------------------------------------------------------------- classic control

CARTPOLE_SIZE = (240, 360)  # (H, W)
CART_COLOUR = (40, 40, 40)
POLE_COLOUR = (202, 152, 101)
AXLE_COLOUR = (129, 132, 203)


def render_cartpole(state, params) -> np.ndarray:
    """CartPole: the cart at ``x`` on a track spanning ``±x_threshold·1.2`` and the pole at angle
    ``theta`` from vertical (positive: leaning towards +x), its drawn length ``2·length`` (gymnax
    ``length`` is the half-length), as in Gym's ``CartPoleEnv.render``."""
    height, width = CARTPOLE_SIZE
    x_threshold = _scalar(getattr(params, "x_threshold", 2.4))
    scale = width / (2.0 * x_threshold * 1.25)
    pole_length = scale * 2.0 * _scalar(getattr(params, "length", 0.5))
    cart_w, cart_h, track_y = 0.14 * width, 0.09 * width, 0.25 * height
    cart_x = width / 2.0 + _scalar(state.x) * scale
    theta = _scalar(state.theta)
    frame = _canvas(height, width)
    shape = (height, width)
    _paint(frame, _rect_mask(shape, 0, track_y - 0.5, width, track_y + 0.5), BLACK)
    _paint(frame, _rect_mask(shape, cart_x - cart_w / 2, track_y, cart_x + cart_w / 2,
                             track_y + cart_h), CART_COLOUR)
    pivot = (cart_x, track_y + 0.75 * cart_h)
    tip = (pivot[0] + pole_length * math.sin(theta), pivot[1] + pole_length * math.cos(theta))
    _paint(frame, _segment_mask(shape, pivot, tip, 0.028 * width), POLE_COLOUR)
    _paint(frame, _disc_mask(shape, pivot, 0.012 * width), AXLE_COLOUR)
    return frame


PENDULUM_SIZE = (240, 240)
ROD_COLOUR = (204, 77, 77)
TORQUE_COLOUR = (60, 110, 200)


def render_pendulum(state, params) -> np.ndarray:
    """Pendulum: the rod at ``theta`` from upright, counter-clockwise positive (Gym draws it
    turned by ``theta + pi/2`` from the x axis), and a bar under the pivot for the last torque
    ``last_u`` (its length ``last_u / max_torque`` of the rod, to the right when positive)."""
    size = PENDULUM_SIZE
    centre = (size[1] / 2.0, size[0] / 2.0)
    rod = 0.4 * size[1] * _scalar(getattr(params, "l", 1.0))
    theta = _scalar(state.theta)
    tip = (centre[0] - rod * math.sin(theta), centre[1] + rod * math.cos(theta))
    frame = _canvas(*size)
    torque = _scalar(getattr(state, "last_u", 0.0)) / _scalar(getattr(params, "max_torque", 2.0))
    if torque != 0.0:
        bar_y = centre[1] - 0.45 * size[0]
        end = (centre[0] + rod * float(np.clip(torque, -1.0, 1.0)), bar_y)
        _paint(frame, _segment_mask(size, (centre[0], bar_y), end, 6.0), TORQUE_COLOUR)
    _paint(frame, _segment_mask(size, centre, tip, 0.08 * size[1]), ROD_COLOUR)
    _paint(frame, _disc_mask(size, centre, 0.02 * size[1]), BLACK)
    return frame


ACROBOT_SIZE = (240, 240)
LINK_COLOUR = (0, 204, 204)
JOINT_COLOUR = (204, 204, 0)


def render_acrobot(state, params) -> np.ndarray:
    """Acrobot: two links hanging from a fixed pivot; angle 0 points straight down, the second
    angle is relative to the first (Gym's convention). The horizontal line is the goal height
    (the tip must rise one link length above the pivot)."""
    size = ACROBOT_SIZE
    l1 = _scalar(getattr(params, "link_length_1", 1.0))
    l2 = _scalar(getattr(params, "link_length_2", 1.0))
    scale = size[1] / (2.2 * (l1 + l2))
    pivot = (size[1] / 2.0, size[0] / 2.0)
    a1 = _scalar(state.joint_angle1)
    a2 = a1 + _scalar(state.joint_angle2)
    elbow = (pivot[0] + scale * l1 * math.sin(a1), pivot[1] - scale * l1 * math.cos(a1))
    tip = (elbow[0] + scale * l2 * math.sin(a2), elbow[1] - scale * l2 * math.cos(a2))
    frame = _canvas(*size)
    goal_y = pivot[1] + scale * l1
    _paint(frame, _rect_mask(size, 0, goal_y - 0.5, size[1], goal_y + 0.5), BLACK)
    for start, end in ((pivot, elbow), (elbow, tip)):
        _paint(frame, _segment_mask(size, start, end, 0.05 * size[1]), LINK_COLOUR)
    for joint in (pivot, elbow):
        _paint(frame, _disc_mask(size, joint, 0.025 * size[1]), JOINT_COLOUR)
    return frame


MOUNTAIN_SIZE = (260, 360)
HILL_COLOUR = (70, 70, 70)
FLAG_COLOUR = (204, 204, 0)


def _hill_height(position):
    """MountainCar's track: ``0.45·sin(3x) + 0.55`` (Gym ``_height``)."""
    return 0.45 * np.sin(3.0 * position) + 0.55


def render_mountain_car(state, params) -> np.ndarray:
    """MountainCar (both versions): the hill, the goal flag at ``goal_position`` and the car at
    ``position``, tilted with the slope ``atan(1.35·cos 3x)``; x and y share one scale."""
    height, width = MOUNTAIN_SIZE
    shape = (height, width)
    low = _scalar(getattr(params, "min_position", -1.2))
    high = _scalar(getattr(params, "max_position", 0.6))
    scale = width / (high - low)
    to_px = lambda px, py: ((px - low) * scale, py * scale + 10.0)
    x, y = _pixel_grid(height, width)
    ground = to_px(0.0, _hill_height(low + x / scale))[1]
    frame = _canvas(height, width)
    _paint(frame, np.broadcast_to(y <= ground, shape), HILL_COLOUR)
    goal = _scalar(getattr(params, "goal_position", 0.5))
    flag_base = to_px(goal, _hill_height(goal))
    _paint(frame, _segment_mask(shape, flag_base, (flag_base[0], flag_base[1] + 35), 2.0), BLACK)
    _paint(frame, _rect_mask(shape, flag_base[0], flag_base[1] + 25, flag_base[0] + 18,
                             flag_base[1] + 35), FLAG_COLOUR)
    position = _scalar(state.position)
    angle = math.atan(3.0 * 0.45 * math.cos(3.0 * position))
    normal = (-math.sin(angle), math.cos(angle))
    base = to_px(position, _hill_height(position))
    half_h = 0.03 * width
    body = (base[0] + normal[0] * (half_h + 4), base[1] + normal[1] * (half_h + 4))
    _paint(frame, _rotated_rect_mask(shape, body, 0.06 * width, half_h, angle), CART_COLOUR)
    return frame


# --------------------------------------------------------------------------- MinAtar

MINATAR_IDS = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
               "SpaceInvaders-MinAtar")
MINATAR_CELL = 16  # pixels per grid cell
# One colour per observation channel (channel 0 is the player in every MinAtar game).
MINATAR_PALETTE = np.array([
    (255, 221, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
], dtype=np.uint8)
MINATAR_BACKGROUND = (20, 20, 20)


def minatar_grid_frame(obs, cell: int = MINATAR_CELL) -> np.ndarray:
    """Colour an ``[H, W, C]`` observation grid: each cell takes the colour of its *lowest* active
    channel (MINATAR_PALETTE, cycled), so the player (channel 0) and the ball or bullets are drawn
    over trails and bricks; empty cells are background. Each cell becomes ``cell x cell`` pixels."""
    obs = np.asarray(obs) > 0
    palette = MINATAR_PALETTE[np.arange(obs.shape[-1]) % len(MINATAR_PALETTE)]
    first = np.argmax(obs, axis=-1)
    grid = np.where(obs.any(-1)[..., None], palette[first], np.asarray(MINATAR_BACKGROUND, np.uint8))
    return np.repeat(np.repeat(grid.astype(np.uint8), cell, axis=0), cell, axis=1)


@functools.lru_cache(maxsize=None)
def _minatar_obs_fn(env_id: str):
    """The env's ``get_obs``, jitted, built once per id (imports JAX and gymnax on first use)."""
    import jax

    from .registry import make
    env, _ = make(env_id)
    return jax.jit(env.get_obs)


def minatar_renderer(env_id: str) -> Renderer:
    """A renderer that draws ``env_id``'s observation of the state (see :func:`minatar_grid_frame`)."""
    def render(state, params) -> np.ndarray:
        del params
        return minatar_grid_frame(np.asarray(_minatar_obs_fn(env_id)(state)))
    return render


register_renderer("CartPole-v1", render_cartpole)
register_renderer("Pendulum-v1", render_pendulum)
register_renderer("Acrobot-v1", render_acrobot)
register_renderer("MountainCar-v0", render_mountain_car)
register_renderer("MountainCarContinuous-v0", render_mountain_car)
for _env_id in MINATAR_IDS:
    register_renderer(_env_id, minatar_renderer(_env_id))
