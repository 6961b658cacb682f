"""Training tokens of the cued-maze demos (:mod:`.demos`).

Tokens (the planner's layout, :mod:`dforce.data.maze2d_tokens`): a frame is
``[o_{t+1} (4), a_t (2)]`` and a token stacks ``k`` frames (``D = 6 k``). Conditioning
``[normalized o (4), cue, 1]`` (the trailing 1 flags "observation present"), followed, for
a policy trained with ``imitation.unknown_steps``, by ``k`` flags saying which of the
token's observations are unknown (:mod:`.masking`):

* ``memory`` sequences: one per demo, from ``t = 0``; the first token's conditioning
  holds ``o_0`` and the cue, later tokens get zeros. Tokens past the demo's end are
  padding (``mask`` False; they repeat the last real frame so the normalizer sees real
  values).
* ``memoryless`` windows: one one-token sequence per demo step ``t`` with ``t + k <= L``,
  conditioned on ``o_t`` and the cue at ``t`` (the cue only for ``t = 0``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from ..data.maze2d_tokens import OBS_DIM, observation_stats, stack_frames
from ..data.normalizer import Normalizer
from ..data.sequences import Sequences

log = logging.getLogger(__name__)

BASE_COND_DIM = OBS_DIM + 2     # normalized observation, cue, presence flag
MODES = ("memory", "memoryless")


def cond_dim(frame_stack: int, unknown_steps: bool) -> int:
    """Conditioning width: the base 6, plus one unknown-step flag per frame when ``unknown_steps``."""
    return BASE_COND_DIM + (frame_stack if unknown_steps else 0)


def condition(obs_normalized: Tensor, cue: Tensor) -> Tensor:
    """Conditioning ``(B, 6)`` = ``[normalized o (4), cue, 1]`` from ``(B, 4)`` and cues ``(B,)``."""
    return torch.cat([obs_normalized, cue.to(obs_normalized)[:, None], torch.ones_like(obs_normalized[:, :1])], -1)


def _standardize_cond(x: Tensor, obs: Tensor, cue: Tensor) -> Tensor:
    """Conditioning ``(B, 6)`` with the observation standardized by the statistics a normalizer fits on ``x``."""
    mean, std = observation_stats(Normalizer((x.shape[-1],)).fit(x))
    return condition((obs - mean) / std, cue)


def memory_sequences(demos: dict[str, np.ndarray], frame_stack: int, length: int,
                     unknown_steps: bool = False) -> Sequences:
    """Whole-demo sequences: x ``(n, length, 6 k)``, cond ``(n, length, C)`` (first token only; the
    unknown-step flags, if any, all 0), mask ``(n, length)``.

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
    cond = torch.zeros(len(obs), length, cond_dim(frame_stack, unknown_steps))
    cond[:, 0, :BASE_COND_DIM] = _standardize_cond(x, obs[:, 0], torch.as_tensor(demos["cues"]).float())
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
    """Training sequences for ``mode`` in ``MODES`` (module docstring), without unknown-step flags."""
    if mode not in MODES:
        raise ValueError(f"imitation.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "memory":
        return memory_sequences(demos, frame_stack, length)
    return memoryless_windows(demos, frame_stack)
