"""Corrupted observations: what a policy sees of the cued maze, and whether it is told.

Each observation ``o_t``, ``t >= 1``, is corrupted independently with probability ``p``
(``o_0``, which carries the cue, never is). Only the policy's view changes; the maze is
never touched. Kinds (position and velocity; the cue column is 0 after ``t = 0``):

============  ======================================================================
``gaussian``  ``o + N(0, std^2)`` per coordinate, maze units (a noisy sensor)
``zeros``     all four set to 0 (occlusion: a blank reading, far from most states)
``hold``      the previous *seen* observation repeated (a dropped reading, last value held)
``outlier``   each coordinate ``±U(10, 20)``: outside the maze (cells 0..7) and beyond any
              velocity the ball reaches (a glitch)
============  ======================================================================

The draws of an episode come from its own stream in a fixed order (flags, then the
normal and the uniform draws), so for one seed and ``p`` every kind corrupts the *same*
steps, and every method meets the same corrupted steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.maze2d_tokens import OBS_DIM

KINDS = ("gaussian", "zeros", "hold", "outlier")
OUTLIER_RANGE = (10.0, 20.0)


@dataclass(frozen=True)
class Draws:
    """One episode's corruption draws over ``steps + 1`` observations: flags (T,), normal (T, 4), uniform (T, 4)."""

    flags: np.ndarray
    normal: np.ndarray
    uniform: np.ndarray


@dataclass(frozen=True)
class Corruption:
    """Each step ``t >= 1`` corrupted with probability ``p`` by ``kind`` (``std`` for ``gaussian``)."""

    p: float = 0.0
    kind: str = "gaussian"
    std: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"corruption probability must lie in [0, 1], got {self.p}")
        if self.kind not in KINDS:
            raise ValueError(f"corruption kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not np.isfinite(self.std) or self.std < 0:
            raise ValueError(f"corruption std must be finite and >= 0, got {self.std}")

    @property
    def label(self) -> str:
        """``gaussian0.5``, ``zeros``, ...: the kind with its std where it has one."""
        return f"gaussian{self.std:g}" if self.kind == "gaussian" else self.kind

    def draw(self, rng: np.random.Generator, steps: int) -> Draws:
        """The draws for observations ``o_0 .. o_steps`` (``o_0`` never flagged)."""
        flags = rng.random(steps + 1) < self.p
        flags[0] = False
        return Draws(flags, rng.normal(0.0, 1.0, size=(steps + 1, OBS_DIM)), rng.random((steps + 1, OBS_DIM)))

    def apply(self, obs: np.ndarray, flags: np.ndarray, normal: np.ndarray, uniform: np.ndarray,
              previous: np.ndarray) -> np.ndarray:
        """Observations ``(B, 5)`` as seen: rows with ``flags`` (B,) corrupted.

        normal, uniform: ``(B, 4)`` this step's draws; previous: ``(B, 5)`` what was seen at the step before.
        """
        seen = obs.copy()
        if not flags.any():
            return seen
        true = seen[flags, :OBS_DIM]
        if self.kind == "gaussian":
            bad = true + self.std * normal[flags]
        elif self.kind == "zeros":
            bad = np.zeros_like(true)
        elif self.kind == "hold":
            bad = previous[flags, :OBS_DIM]
        else:
            low, high = OUTLIER_RANGE
            bad = np.sign(normal[flags]) * (low + (high - low) * uniform[flags])
        seen[flags, :OBS_DIM] = bad
        return seen


def parse_kind(text: str) -> Corruption:
    """``gaussian0.5`` / ``gaussian`` (std 1) / ``zeros`` / ``hold`` / ``outlier`` -> a Corruption with p = 0."""
    for kind in KINDS:
        if text == kind:
            return Corruption(0.0, kind)
    if text.startswith("gaussian"):
        try:
            std = float(text[len("gaussian"):])
        except ValueError:
            std = -1.0
        if np.isfinite(std) and std >= 0:
            return Corruption(0.0, "gaussian", std)
    raise ValueError(f"corruption kind must be one of gaussian<std> (e.g. gaussian0.5), {', '.join(KINDS[1:])}; "
                     f"got {text!r}")
