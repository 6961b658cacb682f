"""Demonstrations of the cued Maze2D memory task (:mod:`dforce.imitation.maze`), cached on disk.

Expert: D4RL's :class:`~dforce.data.maze2d.WaypointController` (shortest grid path to the
cued goal's cell, PD control toward jittered waypoints) plus Gaussian action noise
(std ``ACTION_NOISE`` = 0.5, D4RL's), clipped to [-1, 1]; a demo ends at the first step
that brings the ball within 0.5 of the cued goal (the task's success). Demo ``i`` has
cue ``+1`` for even ``i`` and ``-1`` for odd ``i`` (balanced) and its own random stream
``SeedSequence(seed).spawn(n)[i]`` (start noise, waypoint jitter, action noise), so a
demo does not depend on how many are generated. Their training tokens: :mod:`.tokens`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..data.arrays import load_npz, save_npz

log = logging.getLogger(__name__)

ACTION_NOISE = 0.5
GENERATOR_VERSION = 1           # bump when generated demos would change; part of the cache file name
MAX_DEMO_STEPS = 1000           # a demo that runs this long means the expert is broken


def cue_of(index: int) -> int:
    """The cue of demo (or evaluation episode) ``index``: +1 for even, -1 for odd."""
    return 1 if index % 2 == 0 else -1


def expert_episode(cue: int, rng: np.random.Generator, noise: float = ACTION_NOISE) -> tuple[np.ndarray, np.ndarray]:
    """One noisy expert demo toward the goal of ``cue``: observations ``(L + 1, 4)`` and actions ``(L, 2)``.

    Ends at the first step within 0.5 of the cued goal. Deterministic for the state of ``rng``.
    """
    from ..data.maze2d import WaypointController
    from ..envs.maze2d import GOAL_RADIUS, make
    from .maze import GOAL_CELLS, MAZE, goal_of, start_position

    if noise < 0:
        raise ValueError(f"action noise must be >= 0, got {noise}")
    goal = goal_of(cue)
    env = make(f"maze2d-{MAZE}", render_mode=None)
    x, y, vx, vy = (float(v) for v in env.reset(options={"start": start_position(rng)})[0])
    controller = WaypointController(MAZE, rng)
    obs, act = [(x, y, vx, vy)], []
    while np.hypot(x - goal[0], y - goal[1]) > GOAL_RADIUS:
        if len(act) >= MAX_DEMO_STEPS:
            raise RuntimeError(f"expert did not reach goal {GOAL_CELLS[cue]} in {MAX_DEMO_STEPS} steps")
        ax, ay, _ = controller.action(x, y, vx, vy, goal)
        ex, ey = rng.normal(0.0, noise, size=2) if noise > 0 else (0.0, 0.0)
        ax, ay = min(max(ax + ex, -1.0), 1.0), min(max(ay + ey, -1.0), 1.0)
        x, y, vx, vy = env.advance(ax, ay)
        act.append((ax, ay))
        obs.append((x, y, vx, vy))
    env.close()
    return np.array(obs), np.array(act)


def generate_demos(n: int, seed: int = 0, noise: float = ACTION_NOISE) -> dict[str, np.ndarray]:
    """``n`` expert demos, padded: observations ``(n, Lmax + 1, 4)`` float32, actions ``(n, Lmax, 2)`` float32,
    lengths ``(n,)`` int64 (steps L per demo), cues ``(n,)`` int64. Padding repeats the last real entry."""
    if n < 1:
        raise ValueError(f"number of demos must be >= 1, got {n}")
    episodes = [expert_episode(cue_of(i), np.random.default_rng(s), noise)
                for i, s in enumerate(np.random.SeedSequence(seed).spawn(n))]
    lengths = np.array([len(a) for _, a in episodes], np.int64)
    top = int(lengths.max())
    obs = np.stack([np.concatenate([o, np.repeat(o[-1:], top - len(a), 0)]) for o, a in episodes])
    act = np.stack([np.concatenate([a, np.repeat(a[-1:], top - len(a), 0)]) for _, a in episodes])
    return {"observations": obs.astype(np.float32), "actions": act.astype(np.float32), "lengths": lengths,
            "cues": np.array([cue_of(i) for i in range(n)], np.int64)}


def cache_path(n: int, seed: int, noise: float, data_dir: str | Path | None = None) -> Path:
    """``$XDG_CACHE_HOME/dforce/imitation/demos-n{n}-seed{seed}-noise{noise}-gen{version}.npz``."""
    root = Path(data_dir) if data_dir else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dforce" / "imitation"
    return root / f"demos-n{n}-seed{seed}-noise{noise:g}-gen{GENERATOR_VERSION}.npz"


def load_or_generate_demos(n: int, seed: int = 0, noise: float = ACTION_NOISE,
                           data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The cached demos for ``(n, seed, noise)``, else :func:`generate_demos` and cache them (atomic write)."""
    path = cache_path(n, seed, noise, data_dir)
    if path.exists():
        return load_npz(path)
    demos = generate_demos(n, seed, noise)
    save_npz(path, demos)
    log.info("wrote %d demos to %s", n, path)
    return demos
