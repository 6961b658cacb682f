"""Demonstrations of the cued Maze2D memory task (:mod:`dforce.envs.cued_maze`) and their training tokens.

Expert: D4RL's :class:`~dforce.data.maze2d.WaypointController` (shortest grid path to the
cued goal's cell, PD control toward jittered waypoints) plus Gaussian action noise
(std ``ACTION_NOISE`` = 0.5, D4RL's), clipped to [-1, 1]; a demo ends at the first step
that brings the ball within 0.5 of the cued goal (the task's success). Demo ``i`` has
cue ``+1`` for even ``i`` and ``-1`` for odd ``i`` (balanced) and its own random stream
``SeedSequence(seed).spawn(n)[i]`` (start noise, waypoint jitter, action noise), so a
demo does not depend on how many are generated.

Tokens (the planner's layout, :mod:`dforce.data.maze2d_tokens`): a frame is
``[o_{t+1} (4), a_t (2)]`` and a token stacks ``k`` frames (``D = 6 k``). Conditioning
``(6,)`` = ``[normalized o (4), cue, 1]`` (the trailing 1 flags "observation present"):

* ``memory`` sequences: one per demo, from ``t = 0``; the first token's conditioning
  holds ``o_0`` and the cue, later tokens get zeros. Tokens past the demo's end are
  padding (``mask`` False; they repeat the last real frame so the normalizer sees real
  values).
* ``memoryless`` windows: one one-token sequence per demo step ``t`` with ``t + k <= L``,
  conditioned on ``o_t`` and the cue at ``t`` (the cue only for ``t = 0``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .arrays import load_npz, save_npz
from .maze2d_tokens import OBS_DIM, observation_stats, stack_frames
from .normalizer import Normalizer
from .sequences import Sequences

log = logging.getLogger(__name__)

ACTION_NOISE = 0.5
COND_DIM = OBS_DIM + 2          # normalized observation, cue, presence flag
GENERATOR_VERSION = 1           # bump when generated demos would change; part of the cache file name
MAX_DEMO_STEPS = 1000           # a demo that runs this long means the expert is broken
MODES = ("memory", "memoryless")


def cue_of(index: int) -> int:
    """The cue of demo (or evaluation episode) ``index``: +1 for even, -1 for odd."""
    return 1 if index % 2 == 0 else -1


def expert_episode(cue: int, rng: np.random.Generator, noise: float = ACTION_NOISE) -> tuple[np.ndarray, np.ndarray]:
    """One noisy expert demo toward the goal of ``cue``: observations ``(L + 1, 4)`` and actions ``(L, 2)``.

    Ends at the first step within 0.5 of the cued goal. Deterministic for the state of ``rng``.
    """
    from ..envs.cued_maze import GOAL_CELLS, MAZE, goal_of, start_position
    from ..envs.maze2d import GOAL_RADIUS, make
    from .maze2d import WaypointController

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


# ---- tokens -------------------------------------------------------------------------------------

def condition(obs_normalized: Tensor, cue: Tensor) -> Tensor:
    """Conditioning ``(B, 6)`` = ``[normalized o (4), cue, 1]`` from ``(B, 4)`` and cues ``(B,)``."""
    return torch.cat([obs_normalized, cue.to(obs_normalized)[:, None], torch.ones_like(obs_normalized[:, :1])], -1)


def _standardize_cond(x: Tensor, obs: Tensor, cue: Tensor) -> Tensor:
    """Conditioning ``(B, 6)`` with the observation standardized by the statistics a normalizer fits on ``x``."""
    mean, std = observation_stats(Normalizer((x.shape[-1],)).fit(x))
    return condition((obs - mean) / std, cue)


def memory_sequences(demos: dict[str, np.ndarray], frame_stack: int, length: int) -> Sequences:
    """Whole-demo sequences: x ``(n, length, 6 k)``, cond ``(n, length, 6)`` (first token only), mask ``(n, length)``.

    Demo steps past ``length * k`` are dropped (logged), as is a final partial token.
    """
    obs, act = torch.as_tensor(demos["observations"]), torch.as_tensor(demos["actions"])
    lengths = torch.as_tensor(demos["lengths"])
    steps = length * frame_stack
    real = torch.clamp(lengths // frame_stack, max=length)                       # (n,) real tokens
    if (lengths > steps).any():
        log.warning("%d demos are longer than data.length x frame_stack = %d steps; cut", int((lengths > steps).sum()), steps)
    last = real * frame_stack - 1                                                # last real frame's t
    t = torch.minimum(torch.arange(steps)[None, :], last[:, None]).clamp(min=0)  # (n, steps)
    rows = torch.arange(len(obs))[:, None]
    x = stack_frames(obs[rows, t + 1], act[rows, t], frame_stack)               # (n, length, 6 k)
    cond = torch.zeros(len(obs), length, COND_DIM)
    cond[:, 0] = _standardize_cond(x, obs[:, 0], torch.as_tensor(demos["cues"]).float())
    mask = torch.arange(length)[None, :] < real[:, None]
    return Sequences(x, cond, mask)


def memoryless_windows(demos: dict[str, np.ndarray], frame_stack: int) -> Sequences:
    """One-token windows at every demo step ``t`` with ``t + k <= L``: x ``(N, 1, 6 k)``, cond ``(N, 1, 6)``."""
    obs, act = torch.as_tensor(demos["observations"]), torch.as_tensor(demos["actions"])
    lengths, cues = demos["lengths"], demos["cues"]
    pairs = np.array([(i, t) for i, n in enumerate(lengths) for t in range(int(n) - frame_stack + 1)], np.int64)
    if len(pairs) == 0:
        raise ValueError(f"no demo is at least frame_stack = {frame_stack} steps long")
    i, t = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    span = t[:, None] + torch.arange(frame_stack)[None, :]                     # (N, k)
    x = stack_frames(obs[i[:, None], span + 1], act[i[:, None], span], frame_stack)   # (N, 1, 6 k)
    cue = torch.where(t == 0, torch.as_tensor(cues)[i], 0).float()
    cond = _standardize_cond(x, obs[i, t], cue)[:, None]
    return Sequences(x, cond, None)


def imitation_sequences(demos: dict[str, np.ndarray], mode: str, frame_stack: int, length: int) -> Sequences:
    """Training sequences for ``mode`` in ``MODES`` (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"imitation.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "memory":
        return memory_sequences(demos, frame_stack, length)
    return memoryless_windows(demos, frame_stack)
