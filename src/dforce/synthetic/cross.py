"""The cross experiment's measures: trajectory classes, binomial intervals and the predicted ideal.

The cross data (:func:`dforce.synthetic.data.cross`) are straight constant-speed paths from a
corner c of [-1, 1]^2 to the opposite corner -c, along both diagonals in both directions.
A generated trajectory x (T, 2) that starts at corner c = sign(x_0) is

* ``diagonal``: it ends within ``end_tol`` of -c and every point lies within ``path_tol``
  of the diagonal through c and -c (a training path);
* ``stitched``: it ends within ``end_tol`` of an adjacent corner (c_0, -c_1) or (-c_0, c_1)
  and every point lies within ``path_tol`` of one of the two diagonals (a piece of one
  training path followed by a piece of another: a shape never seen in training);
* ``other``: anything else: back at its start, short of every corner, or off the cross.

Both ``diagonal`` and ``stitched`` also need every step between consecutive tokens to be at
most ``path_tol`` long (a data step is 2 sqrt(2) / (T - 1), 0.09 for T = 33), so a path that
jumps along the cross, for example real points shuffled in time, is ``other``.

The *ideal* sampler of this data draws each plan from the data's own conditional
distribution given the context it is shown. Shown the last token only, a point on a
diagonal could be on either of the two paths through it (one per direction), and the
centre on any of the four; shown two or more tokens, the direction is known. So the
class fractions an exact model must produce follow from the replanning protocol alone
(:func:`ideal`): with one replan at the centre and one-token context, 1/4 diagonal,
1/2 stitched and 1/4 back to the start.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from ..stats import wilson

CLASSES = ("diagonal", "stitched", "other")
END_TOL = 0.3
PATH_TOL = 0.3


def classify(traj: Tensor, end_tol: float = END_TOL, path_tol: float = PATH_TOL) -> Tensor:
    """Label trajectories (N, T, 2) as indices into ``CLASSES`` (N,) int64; see the module docstring."""
    if traj.ndim != 3 or traj.shape[-1] != 2 or traj.shape[1] < 2:
        raise ValueError(f"traj must be (N, T>=2, 2), got shape {tuple(traj.shape)}")
    if not (end_tol > 0 and path_tol > 0):
        raise ValueError(f"end_tol and path_tol must be > 0, got {end_tol}, {path_tol}")
    corner = torch.where(traj[:, 0] >= 0, 1.0, -1.0)                               # (N, 2)
    end = traj[:, -1]
    near = lambda target: (end - target).norm(dim=-1) <= end_tol                    # noqa: E731
    # distance of every point to the start diagonal (through c, -c) and to the other one
    own = (traj[..., 0] * corner[:, None, 1] - traj[..., 1] * corner[:, None, 0]).abs() / math.sqrt(2)  # (N, T)
    other = (traj[..., 0] * corner[:, None, 1] + traj[..., 1] * corner[:, None, 0]).abs() / math.sqrt(2)
    steady = (traj[:, 1:] - traj[:, :-1]).norm(dim=-1).amax(1) <= path_tol     # no jumps
    diagonal = near(-corner) & (own.amax(1) <= path_tol) & steady
    on_cross = (torch.minimum(own, other).amax(1) <= path_tol) & steady
    flip = torch.tensor([[1.0, -1.0]])
    stitched = (near(corner * flip) | near(-corner * flip)) & on_cross
    labels = torch.full((traj.shape[0],), CLASSES.index("other"), dtype=torch.long)
    labels[stitched] = CLASSES.index("stitched")
    labels[diagonal] = CLASSES.index("diagonal")
    return labels


def fractions(labels: Tensor) -> dict[str, dict]:
    """Per class of labels (N,): fraction, 95% Wilson interval ``ci95``, binomial standard error, count."""
    n = labels.numel()
    out = {}
    for i, name in enumerate(CLASSES):
        count = int((labels == i).sum())
        p = count / n
        lo, hi = wilson(count, n)
        out[name] = {"fraction": p, "ci95": [lo, hi], "stderr": math.sqrt(p * (1 - p) / n), "count": count}
    return out


def end_corners(traj: Tensor, path_tol: float = PATH_TOL) -> dict[str, float]:
    """Diagnostics of trajectories (N, T, 2): the share whose end point is nearest to the opposite,
    an adjacent or the start corner, the median distance to that corner, and the steps: the median
    of each trajectory's longest step, the share with a step longer than ``path_tol`` (a jump) and
    the median token index at which those jump first."""
    corner = torch.where(traj[:, 0] >= 0, 1.0, -1.0)                               # (N, 2)
    candidates = torch.stack([-corner, corner * torch.tensor([1.0, -1.0]), corner * torch.tensor([-1.0, 1.0]),
                              corner], 1)                                        # (N, 4, 2)
    dist = (traj[:, -1:, :] - candidates).norm(dim=-1)                           # (N, 4)
    nearest, which = dist.min(1)
    kind = torch.tensor([0, 1, 1, 2])[which]
    step = (traj[:, 1:] - traj[:, :-1]).norm(dim=-1)                              # (N, T-1)
    jumps = step > path_tol
    jumped = jumps.any(1)
    first = jumps.float().argmax(1)[jumped] + 1                                   # token index after the jump
    return {"end_nearest_opposite": float((kind == 0).float().mean()),
            "end_nearest_adjacent": float((kind == 1).float().mean()),
            "end_nearest_start": float((kind == 2).float().mean()),
            "end_distance_to_nearest_corner_median": float(nearest.median()),
            "longest_step_median": float(step.amax(1).median()),
            "jump_fraction": float(jumped.float().mean()),
            "first_jump_token_median": float(first.median()) if jumped.any() else None}


def distance_to_ideal(measured: dict[str, dict], expected: dict[str, float] | None) -> float | None:
    """Total variation distance between measured class fractions (as :func:`fractions` returns) and
    the ideal's, 0 (identical) to 1 (disjoint); None without an ideal."""
    if expected is None:
        return None
    return 0.5 * sum(abs(measured[name]["fraction"] - expected[name]) for name in CLASSES)


# ---- the ideal sampler ------------------------------------------------------------------------

Point = tuple[int, int]
DIRECTIONS: tuple[Point, ...] = ((1, 1), (1, -1), (-1, 1), (-1, -1))


def _consistent(q: Point, half: int) -> list[Point]:
    """Directions u of the data paths through lattice point q (q = s u, -half <= s < half)."""
    out = []
    for u in DIRECTIONS:
        s = q[0] * u[0]
        if q == (s * u[0], s * u[1]) and -half <= s < half:
            out.append(u)
    return out


def ideal(length: int, execute: int, context: int | None) -> dict[str, float] | None:
    """Class fractions of the exact sampler under the replanning protocol, or None where undefined.

    Paths of ``length`` tokens (odd: token (length-1)/2 is the centre) live on the lattice
    q / half with half = (length-1)/2; a trajectory starts at a corner, and every plan
    executes ``execute`` tokens (fewer at the end) given the last ``context`` tokens
    (None: the whole past). With one token the plan's direction is uniform over the
    data paths through that point; with two or more it is the direction they show.
    None when ``length`` is even (no token on the centre) or some plan would have to run
    past a corner, where the data have no continuation.
    """
    if length < 3 or length % 2 == 0 or execute < 1 or (context is not None and context < 1):
        return None
    half = (length - 1) // 2
    # by symmetry one start corner is enough. Every branch replans after the same number of
    # tokens, so the states (previous point, point) after each plan merge like a Markov chain.
    states: dict[tuple[Point | None, Point], Fraction] = {(None, (half, half)): Fraction(1)}
    tokens = 1
    while tokens < length:
        steps = min(execute, length - tokens)
        after: dict[tuple[Point | None, Point], Fraction] = {}
        for (prev, q), p in states.items():
            known = prev is not None and (context is None or context >= 2)
            options = [(q[0] - prev[0], q[1] - prev[1])] if known else _consistent(q, half)
            for u in options:
                end = (q[0] + steps * u[0], q[1] + steps * u[1])
                if max(abs(end[0]), abs(end[1])) > half:
                    return None
                key = ((end[0] - u[0], end[1] - u[1]), end)
                after[key] = after.get(key, Fraction(0)) + p / len(options)
        states, tokens = after, tokens + steps
    totals = {name: Fraction(0) for name in CLASSES}
    for (_, q), p in states.items():
        totals[_ideal_class(q, half)] += p
    return {name: float(value) for name, value in totals.items()}


def _ideal_class(q: Point, half: int) -> str:
    """An ideal trajectory from corner (half, half) stays on the cross; its class is where it ends."""
    if q == (-half, -half):
        return "diagonal"
    return "stitched" if q in ((half, -half), (-half, half)) else "other"
