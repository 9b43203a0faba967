"""envs.rendering: drawn geometry matches the state; GIFs round-trip through Pillow."""

import math

import numpy as np
import pytest
from gymnax.environments.classic_control import cartpole, pendulum
from PIL import Image

from pgjax.envs import rendering


def _cartpole(x=0.0, theta=0.0):
    state = cartpole.EnvState(x=np.float32(x), x_dot=np.float32(0.0), theta=np.float32(theta),
                              theta_dot=np.float32(0.0), time=np.int32(0))
    return rendering.render_frame("CartPole-v1", state, cartpole.EnvParams())


def _pixels(frame, colour):
    """``(x, y)`` of the pixels of ``colour``, y measured up from the bottom row."""
    rows, cols = np.nonzero(np.all(frame == np.asarray(colour, np.uint8), axis=-1))
    return cols.astype(float), (frame.shape[0] - 1 - rows).astype(float)


def _principal_angle_from_vertical(x, y):
    """Angle of the long axis of a pixel cloud from the +y axis (positive towards +x)."""
    coords = np.stack([x - x.mean(), y - y.mean()])
    direction = np.linalg.svd(coords, full_matrices=False)[0][:, 0]
    if direction[1] < 0:
        direction = -direction
    return math.atan2(direction[0], direction[1])


@pytest.mark.parametrize("theta", [-0.5, -0.2, 0.1, 0.35])
def test_cartpole_pole_points_along_theta(theta):
    x, y = _pixels(_cartpole(theta=theta), rendering.POLE_COLOUR)
    assert x.size > 100
    assert math.degrees(abs(_principal_angle_from_vertical(x, y) - theta)) < 2.0


def test_cartpole_cart_moves_linearly_with_x_and_carries_the_pole():
    centres = {}
    for x in (-1.5, 0.0, 1.5):
        frame = _cartpole(x=x)
        centres[x] = _pixels(frame, rendering.CART_COLOUR)[0].mean()
        pole_x = _pixels(frame, rendering.POLE_COLOUR)[0].mean()
        assert pole_x == pytest.approx(centres[x], abs=1.0)  # upright pole above the cart's centre
    width = frame.shape[1]
    assert centres[0.0] == pytest.approx(width / 2, abs=1.0)
    assert centres[1.5] - centres[0.0] > 0.2 * width
    assert centres[1.5] - centres[0.0] == pytest.approx(centres[0.0] - centres[-1.5], abs=1.0)


@pytest.mark.parametrize("theta", [0.0, 0.7, -2.0])
def test_pendulum_rod_turns_counter_clockwise_from_upright(theta):
    state = pendulum.EnvState(theta=np.float32(theta), theta_dot=np.float32(0.0),
                              last_u=np.float32(0.0), time=np.int32(0))
    frame = rendering.render_frame("Pendulum-v1", state, pendulum.EnvParams())
    x, y = _pixels(frame, rendering.ROD_COLOUR)
    centre = (frame.shape[1] / 2, frame.shape[0] / 2)
    # the rod's centroid lies half-way along it, at angle theta counter-clockwise from +y
    angle = math.atan2(-(x.mean() - centre[0]), y.mean() - centre[1])
    assert math.degrees(abs(math.remainder(angle - theta, 2 * math.pi))) < 2.0


def test_minatar_grid_colours_each_cell_by_its_first_channel():
    obs = np.zeros((10, 10, 4), bool)
    obs[9, 3, 0] = True                    # player
    obs[2, 5, 1] = obs[2, 5, 3] = True     # ball over a brick: the ball wins
    obs[1, 0, 3] = True                    # brick
    frame = rendering.minatar_grid_frame(obs, cell=4)
    assert frame.shape == (40, 40, 3)
    cell = lambda r, c: frame[4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1, 3)
    palette, background = rendering.MINATAR_PALETTE, rendering.MINATAR_BACKGROUND
    for (r, c), colour in (((9, 3), palette[0]), ((2, 5), palette[1]), ((1, 0), palette[3]),
                           ((0, 0), background)):
        assert (cell(r, c) == colour).all()
    assert (np.all(frame == background, axis=-1)).sum() == 16 * (100 - 3)


def test_minatar_renderer_draws_breakout_paddle_and_ball_where_the_state_puts_them():
    import jax

    from pgjax.envs import make
    env, params = make("Breakout-MinAtar")
    state = jax.tree.map(np.asarray, env.reset(jax.random.key(0), params)[1])
    frame = rendering.render_frame("Breakout-MinAtar", state, params)
    size = rendering.MINATAR_CELL
    cell = lambda r, c: frame[size * r:size * (r + 1), size * c:size * (c + 1)].reshape(-1, 3)
    assert (cell(9, int(state.pos)) == rendering.MINATAR_PALETTE[0]).all()
    assert (cell(int(state.ball_y), int(state.ball_x)) == rendering.MINATAR_PALETTE[1]).all()


def test_gif_round_trip_keeps_frames_size_and_pixels(tmp_path):
    frames = [_cartpole(x=0.3 * k, theta=0.1 * k) for k in range(4)]
    path = rendering.write_gif(frames, tmp_path / "sub" / "episode.gif", fps=25)
    with Image.open(path) as gif:
        assert (gif.n_frames, gif.size) == (4, (frames[0].shape[1], frames[0].shape[0]))
        assert gif.info["duration"] == 40
        for k in range(4):
            gif.seek(k)
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), frames[k])


def test_render_episode_renders_each_step_of_a_stacked_state(tmp_path):
    thetas = np.array([0.0, 0.2, -0.3], np.float32)
    states = cartpole.EnvState(x=np.zeros(3, np.float32), x_dot=np.zeros(3, np.float32),
                               theta=thetas, theta_dot=np.zeros(3, np.float32),
                               time=np.arange(3, dtype=np.int32))
    path = rendering.render_episode("CartPole-v1", states, cartpole.EnvParams(), tmp_path / "ep.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        gif.seek(2)
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), _cartpole(theta=-0.3))


def test_env_without_renderer_is_a_clear_value_error(tmp_path):
    assert rendering.can_render("Acrobot-v1") and rendering.can_render("Seaquest-MinAtar")
    assert not rendering.can_render("Catch-bsuite")
    with pytest.raises(ValueError, match=r"no renderer for 'Catch-bsuite'.*CartPole-v1"):
        rendering.render_frame("Catch-bsuite", None, None)
    with pytest.raises(ValueError, match="no renderer"):
        rendering.render_episode("Catch-bsuite", {"x": np.zeros(2)}, None, tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
    with pytest.raises(ValueError, match="at least one frame"):
        rendering.write_gif([], tmp_path / "empty.gif")
