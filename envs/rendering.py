"""Host-side renderers: one RGB frame per environment state, and GIFs of whole episodes.

A renderer is ``fn(state, env_params) -> np.ndarray [H, W, 3] uint8`` where ``state`` is the
*base* environment's ``EnvState`` for one environment at one step, with NumPy leaves. Our own
environments register theirs next to their definition with :func:`register_renderer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Renderer = Callable[[Any, Any], np.ndarray]
_RENDERERS: dict[str, Renderer] = {}


def register_renderer(env_id: str, fn: Renderer) -> None:
    """Make ``render_frame(env_id, ...)`` use ``fn``."""
    _RENDERERS[env_id] = fn


def can_render(env_id: str) -> bool:
    return env_id in _RENDERERS


def render_frame(env_id: str, state: Any, env_params: Any) -> np.ndarray:
    """One ``[H, W, 3] uint8`` frame of ``state``; ``ValueError`` naming the envs that can draw."""
    if env_id not in _RENDERERS:
        raise ValueError(f"no renderer for {env_id!r}; environments that can draw themselves: "
                         f"{', '.join(sorted(_RENDERERS))}")
    frame = np.asarray(_RENDERERS[env_id](state, env_params))
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"renderer for {env_id!r} returned {frame.dtype} {frame.shape}, "
                         "expected uint8 [H, W, 3]")
    return frame
