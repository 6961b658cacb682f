"""Maze2D dataset dict -> Diffusion Forcing training tokens (frame-stacked observation + action).

Layout (as the paper's planner, which pairs each action with the observation it leads to):

* a *frame* is ``[o_{t+1} (4), a_t (2)]``: the action taken at step ``t`` and the
  observation that follows it, 6 numbers;
* a *token* stacks ``k`` consecutive frames, flattened frame-major:
  ``token[6 j : 6 j + 4] = o_{t+j+1}``, ``token[6 j + 4 : 6 j + 6] = a_{t+j}``, so
  ``D = 6 k`` (k = 10 gives 60-dimensional tokens covering 10 env steps);
* the observation the plan starts from, ``o_t``, is not part of any planned token. It
  is given as per-token conditioning on the *first* token only:
  ``cond[:, 0] = [normalized o_t (4), 1]`` and ``cond[:, 1:] = 0`` (the trailing 1 flags
  "start state present"), the role of the paper's initial-state encoder.

Windows never cross an episode boundary: the long D4RL walk is split at ``timeouts``
(every 300 / 600 / 800 steps, the evaluation episode length; the walk itself runs on
across them, and the original DF code slides windows across them, but a plan never
needs to reach past the end of its episode), a window starts at a
uniformly drawn step of an episode and holds ``horizon`` tokens; tokens that would run
past the episode's end are *padding* (``mask`` False: the loss ignores them and they are
fed as pure noise), so the model sees every remaining-horizon length it meets during
MPC (flexible horizon). Padding repeats the last real frame, which keeps the fitted
normalizer statistics those of real data.

Pure numpy + torch; no environment needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .normalizer import Normalizer
from .sequences import Sequences

OBS_DIM = 4
ACTION_DIM = 2
FRAME_DIM = OBS_DIM + ACTION_DIM
COND_DIM = OBS_DIM + 1


def split_episodes(timeouts: np.ndarray, terminals: np.ndarray | None = None) -> np.ndarray:
    """Episode bounds ``(E, 2)`` int64 ``[start, end)`` of a flat dataset, split after every timeout/terminal.

    A trailing run of steps after the last timeout is an episode too.
    """
    done = np.asarray(timeouts, dtype=bool).copy()
    if terminals is not None:
        done |= np.asarray(terminals, dtype=bool)
    if done.ndim != 1:
        raise ValueError(f"timeouts must be 1-D (T,), got shape {done.shape}")
    ends = np.flatnonzero(done) + 1
    if len(ends) == 0 or ends[-1] != len(done):
        ends = np.append(ends, len(done))
    starts = np.concatenate([[0], ends[:-1]])
    bounds = np.stack([starts, ends], 1).astype(np.int64)
    return bounds[bounds[:, 1] > bounds[:, 0]]


def stack_frames(next_observations: Tensor, actions: Tensor, frame_stack: int) -> Tensor:
    """Tokens ``(..., N, 6 k)`` from observations ``(..., N k, 4)`` (each after its action) and actions ``(..., N k, 2)``."""
    if next_observations.shape[:-1] != actions.shape[:-1]:
        raise ValueError(f"observations {tuple(next_observations.shape)} and actions {tuple(actions.shape)} "
                         "must share their leading dims")
    steps = next_observations.shape[-2]
    if frame_stack < 1 or steps % frame_stack:
        raise ValueError(f"frame_stack={frame_stack} must be >= 1 and divide the {steps} steps")
    frames = torch.cat([next_observations, actions], -1)                        # (..., N k, 6)
    return frames.reshape(*frames.shape[:-2], steps // frame_stack, frame_stack * frames.shape[-1])


def unstack_frames(tokens: Tensor, frame_stack: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`stack_frames`: tokens ``(..., N, 6 k)`` -> observations ``(..., N k, 4)``, actions ``(..., N k, 2)``."""
    if frame_stack < 1 or tokens.shape[-1] != frame_stack * FRAME_DIM:
        raise ValueError(f"tokens of size {tokens.shape[-1]} do not hold frame_stack={frame_stack} frames "
                         f"of {FRAME_DIM} (need {frame_stack * FRAME_DIM})")
    frames = tokens.reshape(*tokens.shape[:-2], tokens.shape[-2] * frame_stack, FRAME_DIM)
    return frames[..., :OBS_DIM], frames[..., OBS_DIM:]


def window_starts(episodes: np.ndarray, frame_stack: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` window starts drawn uniformly over every step that leaves at least one whole token in its episode.

    A window starting at step ``s`` of episode ``[a, b)`` has frames ``t = s, s+1, ...`` while
    ``o_{t+1}`` stays inside the episode (``t <= b - 2``), so ``s <= b - 1 - k``.
    Returns ``(starts (n,), ends (n,))`` int64: the start step and its episode's end.
    """
    if n < 1:
        raise ValueError(f"number of windows must be >= 1, got {n}")
    counts = np.maximum(episodes[:, 1] - episodes[:, 0] - frame_stack, 0)       # valid starts per episode
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"no episode is longer than frame_stack + 1 = {frame_stack + 1} steps")
    draw = np.random.default_rng(seed).integers(0, total, size=n)
    cum = np.cumsum(counts)
    ep = np.searchsorted(cum, draw, side="right")
    offset = draw - (cum[ep] - counts[ep])
    return episodes[ep, 0] + offset, episodes[ep, 1]


@dataclass(frozen=True)
class Windows:
    """x: (n, H, 6 k) tokens; start: (n, 4) observation each window starts from; mask: (n, H) bool."""

    x: Tensor
    start: Tensor
    mask: Tensor


def make_windows(observations: np.ndarray, actions: np.ndarray, episodes: np.ndarray, frame_stack: int,
                 horizon: int, n: int, seed: int = 0) -> Windows:
    """``n`` random windows of ``horizon`` tokens that never cross an episode boundary (module docstring)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    starts, ends = window_starts(episodes, frame_stack, n, seed)
    real_tokens = np.minimum(horizon, (ends - 1 - starts) // frame_stack)         # (n,) >= 1
    last = starts + real_tokens * frame_stack - 1                                 # last real frame's t
    t = np.minimum(starts[:, None] + np.arange(horizon * frame_stack)[None, :], last[:, None])   # (n, H k)
    obs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
    act = torch.as_tensor(np.asarray(actions, dtype=np.float32))
    t = torch.as_tensor(t)
    x = stack_frames(obs[t + 1], act[t], frame_stack)                             # (n, H, 6 k)
    mask = torch.arange(horizon)[None, :] < torch.as_tensor(real_tokens)[:, None]
    return Windows(x, obs[torch.as_tensor(starts)], mask)


def start_condition(start_normalized: Tensor, horizon: int) -> Tensor:
    """Conditioning ``(B, H, 5)``: ``[start (4), 1]`` on the first token, zeros elsewhere; start: (B, 4) normalized."""
    cond = start_normalized.new_zeros(start_normalized.shape[0], horizon, COND_DIM)
    cond[:, 0, :OBS_DIM] = start_normalized
    cond[:, 0, OBS_DIM] = 1.0
    return cond


def observation_stats(normalizer: Normalizer) -> tuple[Tensor, Tensor]:
    """Mean and std ``(4,)`` of the first frame's observation inside a fitted token normalizer."""
    return normalizer.mean.reshape(-1)[:OBS_DIM], normalizer.std.reshape(-1)[:OBS_DIM]


def planning_sequences(data: dict[str, np.ndarray], frame_stack: int, horizon: int, n: int,
                       seed: int = 0) -> Sequences:
    """Training :class:`Sequences` (x (n, H, 6k), cond (n, H, 5), mask (n, H)) from a D4RL-style dataset dict.

    The start observation in ``cond`` is standardized with the statistics a model's
    :class:`Normalizer` will fit on ``x`` (its first frame's observation features), so the
    planner can normalize a live observation with the checkpoint's own buffers.
    """
    episodes = split_episodes(data["timeouts"], data.get("terminals"))
    w = make_windows(data["observations"], data["actions"], episodes, frame_stack, horizon, n, seed)
    mean, std = observation_stats(Normalizer((w.x.shape[-1],)).fit(w.x))
    cond = start_condition(((w.start - mean) / std).float(), horizon)
    return Sequences(w.x, cond, w.mask)
