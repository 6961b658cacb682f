"""The D4RL Maze2D offline datasets, regenerated (or loaded from a real D4RL hdf5 file).

D4RL made ``maze2d-*-v1`` with ``scripts/generation/generate_maze2d_datasets.py
--noisy`` and ``d4rl/pointmaze/waypoint_controller.py``, then relabelled the rewards
(``relabel_maze2d_rewards.py``, sparse). :func:`generate` follows those steps:

* one environment, never reset after the first reset: the data are one long walk;
* a target is drawn as ``MazeEnv.set_target()`` does (uniform open cell plus
  U(-0.1, 0.1) noise; stored as ``infos/goal``); the controller plans a shortest
  grid path to the target's cell (D4RL's Q-iteration, here a breadth-first search
  with the same tie-breaking) and puts a waypoint in each cell on the way, jittered
  by ``-U(0, 1) * 0.2`` per coordinate (the target cell itself is not jittered);
* PD control toward the current waypoint, ``a = 10 * (waypoint - pos) - 1 * vel``
  clipped to [-1, 1]; a waypoint is passed when the ball is within 0.1 of it and
  moved less than 0.1 since the previous step; the target is *reached* under the
  same two conditions with the target's cell centre;
* Gaussian action noise, std 0.5, then clip to [-1, 1];
* the target is re-drawn when reached or once ``max_episode_steps`` (300 / 600 /
  800) steps have passed since the last draw;
* D4RL's script keeps the *previous* observation for the step after a target
  switch (it does not assign ``s = next_s`` on that step) - a quirk reproduced
  here (``stale_on_switch=True``), so one observation in ~100 repeats;
* rewards: 1 where ``||obs[:2] - goal_cell|| <= 0.5`` for the maze's fixed goal
  cell (computed on the recorded observation, as the relabel script does);
* ``terminals`` are all False (Maze2D never terminates) and ``timeouts`` mark
  every ``max_episode_steps``-th step, splitting the walk into episodes.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..envs.maze2d import (
    DATASET_STEPS, EPISODE_LENGTH, GOAL_RADIUS, RESET_NOISE, cell_of, goal_cell, parse_name,
    shortest_path_waypoints,
)
from .arrays import load_npz, save_npz

log = logging.getLogger(__name__)

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "infos/goal")
ACTION_NOISE = 0.5
GENERATOR_VERSION = 1    # bump when the generated data would change; part of the cache file name

# Statistics of the real D4RL maze2d-*-v1 files (REFERENCE.md "Planning: D4RL Maze2D").
REFERENCE_STATS = {
    "umaze": {"obs_mean": (1.9328, 2.3745, 0.0002, -0.0010), "obs_std": (0.8997, 0.7093, 2.2129, 2.4682),
              "action_std": (0.7043, 0.7506), "reward_mean": 0.0813, "reward_std": 0.2732},
    "medium": {"obs_mean": (3.5093, 3.4766, 0.0000, 0.0000), "obs_std": (1.3371, 1.5210, 2.3408, 2.3694),
               "action_std": (0.7398, 0.7459), "reward_mean": 0.0237, "reward_std": 0.1520},
    "large": {"obs_mean": (3.7296, 5.3047, 0.0000, 0.0000), "obs_std": (1.8070, 2.5688, 2.4368, 2.6494),
              "action_std": (0.7249, 0.7395), "reward_mean": 0.0089, "reward_std": 0.0940},
}
# (kind, tolerance): abs = |value - ref| <= tol; rel = |value - ref| <= tol * |ref|
TOLERANCES = {"obs_mean": ("abs", 0.05), "obs_std": ("rel", 0.05), "action_std": ("rel", 0.05),
              "reward_mean": ("rel", 0.10)}


class WaypointController:
    """D4RL's ``WaypointController``: shortest grid path to the target cell, PD control toward the next waypoint.

    Works on Python floats (one call per environment step). ``rng`` draws the waypoint jitter.
    """

    def __init__(self, maze: str, rng: np.random.Generator | None = None, p_gain: float = 10.0,
                 d_gain: float = -1.0, solve_thresh: float = 0.1, vel_thresh: float = 0.1, jitter: float = 0.2):
        self.maze, _ = parse_name(maze)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.p_gain, self.d_gain = p_gain, d_gain
        self.solve_thresh, self.vel_thresh, self.jitter = solve_thresh, vel_thresh, jitter
        self.target: tuple[int, int] | None = None     # the target's cell
        self.waypoints: list[tuple[float, float]] = []
        self.index = 0
        self.previous = (0.0, 0.0)

    def plan(self, position: Any, target_cell: tuple[int, int]) -> None:
        """Waypoints from ``position``'s cell to ``target_cell``: each cell on the path, all but the last jittered."""
        path = shortest_path_waypoints(self.maze, cell_of(position), target_cell).astype(np.float64)   # (K, 2)
        path[:-1] -= self.rng.uniform(size=(len(path) - 1, 2)) * self.jitter
        self.waypoints = [(float(x), float(y)) for x, y in path]
        self.index = 0
        self.previous = tuple(float(v) for v in cell_of(position))   # D4RL starts the "moved" test from the cell
        self.target = target_cell

    def action(self, x: float, y: float, vx: float, vy: float, target: Any) -> tuple[float, float, bool]:
        """PD action toward the next waypoint for the ball at ``(x, y)`` moving at ``(vx, vy)``.

        Returns ``(ax, ay, reached)``; the action is clipped to [-1, 1]; ``reached`` is True when the ball
        sits (within 0.1, moving less than 0.1 per step) on the target's cell centre.
        """
        cell = cell_of(target)
        if cell != self.target:
            self.plan((x, y), cell)
        tx, ty = self.target
        moved = math.hypot(self.previous[0] - x, self.previous[1] - y)
        unsolved = math.hypot(x - tx, y - ty) >= self.solve_thresh or moved >= self.vel_thresh
        wx, wy = self.waypoints[self.index] if unsolved else (float(tx), float(ty))
        ax = self.p_gain * (wx - x) + self.d_gain * vx
        ay = self.p_gain * (wy - y) + self.d_gain * vy
        if unsolved and math.hypot(x - wx, y - wy) < self.solve_thresh and moved < self.vel_thresh:
            self.index += 1
        self.previous = (x, y)
        return min(max(ax, -1.0), 1.0), min(max(ay, -1.0), 1.0), not unsolved


def generate(maze: str, steps: int | None = None, seed: int = 0, progress: bool = True,
             noise: float = ACTION_NOISE, stale_on_switch: bool = True) -> dict[str, np.ndarray]:
    """Regenerate a D4RL Maze2D dataset: one long noisy waypoint-controller walk (module docstring).

    ``steps`` defaults to D4RL's size (1M / 2M / 4M). Deterministic for a seed.
    Returns observations ``(T, 4)`` float32, actions ``(T, 2)`` float32, rewards ``(T,)`` float32,
    terminals ``(T,)`` bool (all False), timeouts ``(T,)`` bool, ``infos/goal`` ``(T, 2)`` float32
    (the controller's target, not the reward's goal).
    """
    from tqdm.auto import tqdm

    from ..envs.maze2d import make

    maze, _ = parse_name(maze)
    steps = DATASET_STEPS[maze] if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    env_rng, noise_rng, plan_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    env = make(maze, render_mode=None)
    controller = WaypointController(maze, plan_rng)
    horizon = EPISODE_LENGTH[maze]

    target = env.random_cell_position(env_rng)                       # D4RL: env.set_target(), then env.reset()
    env.set_state(env.random_cell_position(env_rng), env_rng.normal(0.0, RESET_NOISE, size=2))
    x, y, vx, vy = (float(v) for v in env.observation())
    tx, ty = float(target[0]), float(target[1])

    obs = np.empty((steps, 4), np.float32)
    act = np.empty((steps, 2), np.float32)
    goal = np.empty((steps, 2), np.float32)
    block, since_target = 1 << 16, 0
    with tqdm(total=steps, desc=f"maze2d-{maze}", unit="step", disable=None if progress else True) as bar:
        for start in range(0, steps, block):
            n = min(block, steps - start)
            eps = (noise_rng.normal(0.0, noise, size=(n, 2)) if noise > 0 else np.zeros((n, 2))).tolist()
            rows_obs, rows_act, rows_goal = [], [], []
            for ex, ey in eps:
                ax, ay, done = controller.action(x, y, vx, vy, (tx, ty))
                ax, ay = min(max(ax + ex, -1.0), 1.0), min(max(ay + ey, -1.0), 1.0)
                done = done or since_target >= horizon
                rows_obs.append((x, y, vx, vy))
                rows_act.append((ax, ay))
                rows_goal.append((tx, ty))
                nxt = env.advance(ax, ay)
                since_target += 1
                if done:
                    tx, ty = (float(v) for v in env.random_cell_position(env_rng))
                    since_target = 0
                    if not stale_on_switch:
                        x, y, vx, vy = nxt
                else:
                    x, y, vx, vy = nxt
            obs[start:start + n], act[start:start + n], goal[start:start + n] = rows_obs, rows_act, rows_goal
            bar.update(n)
    return {
        "observations": obs,
        "actions": act,
        "rewards": sparse_rewards(obs, maze),
        "terminals": np.zeros(steps, bool),
        "timeouts": (np.arange(1, steps + 1) % horizon) == 0,
        "infos/goal": goal,
    }


def sparse_rewards(observations: np.ndarray, maze: str) -> np.ndarray:
    """D4RL's relabelled reward, ``(T,)`` float32: 1 where ``||obs[:, :2] - goal_cell|| <= 0.5``."""
    distance = np.linalg.norm(observations[:, :2] - goal_cell(maze).astype(np.float32), axis=1)
    return (distance <= GOAL_RADIUS).astype(np.float32)


# ---- files ------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dforce/maze2d`` (default ``~/.cache/dforce/maze2d``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dforce" / "maze2d"


def cache_path(maze: str, data_dir: str | Path | None = None, steps: int | None = None, seed: int = 0) -> Path:
    """Where :func:`load_or_generate` keeps a generated dataset."""
    maze, _ = parse_name(maze)
    steps = DATASET_STEPS[maze] if steps is None else int(steps)
    return Path(data_dir or cache_dir()) / f"maze2d-{maze}-steps{steps}-seed{seed}-gen{GENERATOR_VERSION}.npz"


def load_or_generate(maze: str, data_dir: str | Path | None = None, steps: int | None = None, seed: int = 0,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """The cached dataset for ``(maze, steps, seed)`` if present, else :func:`generate` it and cache it."""
    path = cache_path(maze, data_dir, steps, seed)
    if path.exists():
        log.info("loading %s", path)
        return load_npz(path)
    data = generate(maze, steps, seed, progress=progress)
    save_npz(path, data)
    log.info("wrote %s", path)
    return data


def load_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """Read a real D4RL Maze2D hdf5 file (e.g. ``maze2d-umaze-sparse-v1.hdf5``) into arrays (``KEYS`` that exist)."""
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading D4RL hdf5 files needs h5py: pip install h5py") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such hdf5 file: {path}")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("observations", "actions", "rewards") if k not in f]
        if missing:
            raise ValueError(f"{path} is not a D4RL dataset: missing {missing}; has {sorted(f.keys())}")
        data = {k: np.asarray(f[k][()]) for k in KEYS if k in f}
    data["rewards"] = data["rewards"].astype(np.float32).reshape(-1)
    return data


# ---- statistics -------------------------------------------------------------------------------

def dataset_stats(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Means and standard deviations of a dataset (float64 accumulation), as plain Python numbers."""
    obs = np.asarray(data["observations"], np.float64)
    act = np.asarray(data["actions"], np.float64)
    rew = np.asarray(data["rewards"], np.float64)
    return {
        "steps": int(len(obs)),
        "obs_mean": obs.mean(0).tolist(), "obs_std": obs.std(0).tolist(),
        "action_mean": act.mean(0).tolist(), "action_std": act.std(0).tolist(),
        "reward_mean": float(rew.mean()), "reward_std": float(rew.std()),
    }


def check(data: dict[str, np.ndarray], maze: str) -> list[dict[str, Any]]:
    """Compare a dataset's statistics with the real D4RL file's (``REFERENCE_STATS``, ``TOLERANCES``).

    Returns one row per number: ``{"stat", "value", "reference", "tolerance", "pass"}``.
    """
    maze, _ = parse_name(maze)
    stats, ref = dataset_stats(data), REFERENCE_STATS[maze]
    names = {"obs_mean": ("x", "y", "vx", "vy"), "obs_std": ("x", "y", "vx", "vy"), "action_std": ("ax", "ay")}
    rows = []
    for key, (kind, tol) in TOLERANCES.items():
        values, refs = np.atleast_1d(stats[key]), np.atleast_1d(ref[key])
        labels = names.get(key, ("",))
        for label, value, reference in zip(labels, values.tolist(), refs.tolist()):
            bound = tol if kind == "abs" else tol * abs(reference)
            rows.append({"stat": f"{key}[{label}]" if label else key, "value": value, "reference": reference,
                         "tolerance": f"{kind} {tol:g}", "pass": bool(abs(value - reference) <= bound)})
    return rows
