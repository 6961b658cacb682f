"""Scheduling matrices: which sampling-grid level every token has after each step.

A matrix ``levels`` of shape (M, H) holds grid levels in [0, steps]: row 0 is all
``steps`` (pure noise), the last row all 0 (clean), and no column ever increases.
Grid levels map to noise levels of the schedule by :func:`grid_to_levels`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

Scheduling = Literal["full_sequence", "autoregressive", "pyramid", "trapezoid"]


def _check(horizon: int, steps: int, slope: float) -> None:
    if horizon < 1 or steps < 1 or slope < 0:
        raise ValueError(f"need horizon>=1, steps>=1, slope>=0; got {horizon}, {steps}, {slope}")


def _from_lag(lag: Tensor, steps: int) -> Tensor:
    """Matrix where token t starts denoising ``lag[t]`` rows late and takes ``steps`` rows."""
    row = torch.arange(steps + int(lag.max()) + 1)                           # (M,)
    return (steps + lag[None, :] - row[:, None]).clamp(0, steps)


def pyramid(horizon: int, steps: int, slope: float = 1.0) -> Tensor:
    """Token t lags token t-1 by ``slope`` sampling steps (near future more certain than far).

    slope=0 is full-sequence diffusion; slope=steps is autoregressive.
    Returns (M, horizon) int64 grid levels in [0, steps].
    """
    _check(horizon, steps, slope)
    return _from_lag((torch.arange(horizon) * slope).long(), steps)


def full_sequence(horizon: int, steps: int) -> Tensor:
    """Every token shares one level: (steps + 1, horizon)."""
    return pyramid(horizon, steps, 0)


def autoregressive(horizon: int, steps: int) -> Tensor:
    """Token t starts only once token t-1 is clean: (horizon * steps + 1, horizon)."""
    return pyramid(horizon, steps, steps)


def trapezoid(horizon: int, steps: int, slope: float = 1.0) -> Tensor:
    """Both ends lead and the middle lags: token t lags by ``slope * min(t, H-1-t)`` steps.

    Symmetric for even and odd horizons (a start and a goal known, the middle filled last).
    """
    _check(horizon, steps, slope)
    t = torch.arange(horizon)
    return _from_lag((torch.minimum(t, horizon - 1 - t) * slope).long(), steps)


def by_name(name: str, horizon: int, steps: int, slope: float = 1.0) -> Tensor:
    """Build a named scheduling matrix; ``slope`` is used by pyramid and trapezoid."""
    match name:
        case "full_sequence":
            return full_sequence(horizon, steps)
        case "autoregressive":
            return autoregressive(horizon, steps)
        case "pyramid":
            return pyramid(horizon, steps, slope)
        case "trapezoid":
            return trapezoid(horizon, steps, slope)
        case _:
            raise ValueError(f"scheduling must be one of {get_args(Scheduling)}, got {name!r}")


def validate(levels: Tensor, steps: int | None = None) -> Tensor:
    """Check a user scheduling matrix and return it as int64; raise ValueError naming the fault."""
    levels = torch.as_tensor(levels)
    if levels.ndim != 2 or levels.shape[0] < 2 or levels.shape[1] < 1:
        raise ValueError(f"scheduling matrix must be 2-D (M>=2 rows, H>=1 tokens), got shape {tuple(levels.shape)}")
    if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
        raise ValueError(f"scheduling matrix must hold integers, got {levels.dtype}")
    levels = levels.long()
    top = int(levels[0, 0]) if steps is None else steps
    if top < 1:
        raise ValueError(f"the first row must be the top grid level >= 1, got {top}")
    if (levels[0] != top).any():
        raise ValueError(f"row 0 must be all {top} (pure noise), got {levels[0].tolist()}")
    if (levels[-1] != 0).any():
        raise ValueError(f"the last row must be all 0 (clean), got {levels[-1].tolist()}")
    if levels.min() < 0 or levels.max() > top:
        raise ValueError(f"levels must lie in [0, {top}], got [{int(levels.min())}, {int(levels.max())}]")
    rises = (levels[1:] > levels[:-1]).nonzero()
    if len(rises):
        m, t = rises[0].tolist()
        raise ValueError(f"column {t} rises from {int(levels[m, t])} to {int(levels[m + 1, t])} at row {m + 1}")
    return levels


def drop_idle_rows(levels: Tensor) -> Tensor:
    """Remove rows identical to the row before (they would cost a model call and change nothing)."""
    keep = torch.ones(len(levels), dtype=torch.bool)
    keep[1:] = (levels[1:] != levels[:-1]).any(1)
    return levels[keep]


def grid_to_levels(grid: Tensor, levels: int, steps: int) -> Tensor:
    """Map grid levels in [0, steps] to noise levels in [0, K], evenly spaced, int64."""
    return torch.div(grid.long() * levels + steps // 2, steps, rounding_mode="floor")
