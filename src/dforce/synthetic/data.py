"""Seeded synthetic sequence data: noisy Van der Pol oscillators, the paper's "cross" and a
linear-Gaussian AR(1) process.

Every generator returns float32 tensors (n, length, D), is vectorized over sequences
(the only Python loop is over time steps of the integrator) and is deterministic for
a seed: all randomness comes from one ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..data.sequences import suffixes
from .linear_gaussian import linear_gaussian

MU_RANGE = (0.5, 2.0)   # Van der Pol damping, one per sequence; the model must infer it
BURN_IN = 50.0          # time units to reach the limit cycle (contraction ~exp(-mu t))
SUBSTEPS = 4            # RK4 substeps per observation step dt
V_SCALE = 0.5           # observed velocity is x'/2 so both features live in about [-2, 2]
CROSS_NOISE = 0.01      # std of the noise on every point of a cross path


def _check(n: int, length: int, noise: float) -> None:
    if n < 1 or length < 2 or noise < 0:
        raise ValueError(f"need n>=1, length>=2, noise>=0; got n={n}, length={length}, noise={noise}")


def _vdp(state: Tensor, mu: Tensor) -> Tensor:
    """Van der Pol vector field x'' = mu (1 - x^2) x' - x as a first-order system.

    state: (n, 2) holding (x, x'); mu: (n,). Returns d(state)/dt, (n, 2).
    """
    x, v = state.unbind(-1)
    return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)


def _rk4(state: Tensor, mu: Tensor, h: Tensor | float) -> Tensor:
    """One classical Runge-Kutta step of size h (scalar, or (n, 1) per sequence)."""
    k1 = _vdp(state, mu)
    k2 = _vdp(state + 0.5 * h * k1, mu)
    k3 = _vdp(state + 0.5 * h * k2, mu)
    k4 = _vdp(state + h * k3, mu)
    return state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def oscillators(n: int, length: int, seed: int = 0, noise: float = 0.02, dt: float = 0.25) -> Tensor:
    """Noisy Van der Pol oscillators started on their limit cycle.

    Each sequence has its own mu ~ U(0.5, 2.0), so a sequence model has to infer mu
    from context; the limit cycle has amplitude |x| ~ 2 for every mu, and a period
    of ~6.4 (mu=0.5) to ~7.6 (mu=2) time units, i.e. ~26 to ~31 steps at dt=0.25.
    Observations are (x, x'/2) -- the velocity is halved so both features have similar
    magnitude (|x| <= ~2, |x'/2| <= ~1.9 at mu=2) -- plus Gaussian noise of std ``noise``.

    Integration is RK4 in float64 with 4 substeps per dt. The start state is on the
    limit cycle at a random phase: from a random initial condition, each sequence is
    integrated for a burn-in of 50 + U(0, 8) time units (8 exceeds the longest period),
    done vectorized with a per-sequence step size.
    Returns (n, length, 2) float32.
    """
    _check(n, length, noise)
    if dt <= 0:
        raise ValueError(f"need dt>0; got dt={dt}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    lo, hi = MU_RANGE
    mu = lo + (hi - lo) * torch.rand(n, generator=g, dtype=f64)                     # (n,)
    state = 6 * torch.rand(n, 2, generator=g, dtype=f64) - 3                         # (n, 2)
    burn = BURN_IN + 8.0 * torch.rand(n, 1, generator=g, dtype=f64)                  # (n, 1)
    h = dt / SUBSTEPS
    burn_steps = int(BURN_IN / h) + 1
    for _ in range(burn_steps):     # per-sequence step burn/burn_steps <= ~0.072: still accurate
        state = _rk4(state, mu, burn / burn_steps)
    out = torch.empty(n, length, 2, dtype=f64)
    out[:, 0] = state
    for t in range(1, length):
        for _ in range(SUBSTEPS):
            state = _rk4(state, mu, h)
        out[:, t] = state
    out[..., 1] *= V_SCALE
    out += noise * torch.randn(n, length, 2, generator=g, dtype=f64)
    return out.float()


def cross(n: int, length: int, seed: int = 0, noise: float = CROSS_NOISE) -> Tensor:
    """The paper's 2-D "cross" data (App. E.2, Fig. 7): straight corner-to-corner paths.

    Each sequence starts at one of the 4 corners of [-1, 1]^2 (uniformly) at t=0 and
    moves at constant speed along a diagonal to the opposite corner, reached at
    t=length-1; Gaussian noise of std ``noise`` is added to every point. With an odd
    ``length`` token (length-1)/2 of every path lies exactly on the centre, where all
    four directions meet. Returns (n, length, 2) float32.
    """
    return cross_paths(n, length, torch.Generator().manual_seed(seed), noise)


def cross_paths(n: int, length: int, g: torch.Generator, noise: float = CROSS_NOISE) -> Tensor:
    """:func:`cross` drawn from a generator ``g`` instead of a seed."""
    _check(n, length, noise)
    start = 2.0 * torch.randint(0, 2, (n, 1, 2), generator=g) - 1.0                 # (n, 1, 2)
    frac = torch.linspace(0, 1, length)[None, :, None]                               # (1, T, 1)
    path = start * (1 - 2 * frac)                                                    # start -> -start
    return (path + noise * torch.randn(n, length, 2, generator=g)).float()


def cross_suffixes(n: int, length: int, generator: torch.Generator, noise: float = CROSS_NOISE,
                   whole: float = 0.0) -> tuple[Tensor, Tensor]:
    """Fresh cross paths cut into :func:`dforce.data.sequences.suffixes` (a share ``whole`` kept
    whole): ((n, length, 2), (n, length) mask)."""
    return suffixes(cross_paths(n, length, generator, noise), generator, whole)


GENERATORS: dict[str, Callable[..., Tensor]] = {
    "oscillators": oscillators, "cross": cross, "linear_gaussian": linear_gaussian,
}


def generate(name: str, n: int, length: int, seed: int = 0, noise: float | None = None) -> Tensor:
    """Generate (n, length, 2) float32 data by name; ``noise=None`` keeps the generator's default."""
    if name not in GENERATORS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(GENERATORS)}")
    kwargs = {} if noise is None else {"noise": noise}
    return GENERATORS[name](n, length, seed=seed, **kwargs)
