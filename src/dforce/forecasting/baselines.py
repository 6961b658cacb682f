"""Forecasting baselines on the same windows: last value, three random walks, seasonal naive.

Each returns sample paths (W, S, P, N) for the P steps after each observed history (N, T_w),
exactly like :meth:`Forecaster.sample`, so one evaluator scores them all (DeepAR lives in :mod:`.deepar`). The random walks
differ only in their increments, all estimated on the last ``lookback`` steps of each history:

* ``random_walk``: independent Gaussian steps per series (std of the recent changes);
* ``random_walk_correlated``: Gaussian step vectors with the recent changes' covariance
  (currencies move together, and CRPS-sum scores the sum of the series);
* ``random_walk_bootstrap``: whole recent step vectors resampled with replacement (the
  empirical joint distribution, fat tails included).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .windows import fill_missing

SEASONS = {"B": 5, "D": 7, "h": 24, "H": 24, "W": 52, "MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4}


def season(freq: str) -> int:
    """Seasonal-naive period of a pandas frequency ("W-MON" counts as "W"; 1 when unknown)."""
    return SEASONS.get(freq.split("-")[0], 1)


def random_walk(histories: Sequence[np.ndarray], prediction_length: int, lookback: int, num_samples: int,
                seed: int = 0) -> np.ndarray:
    """Gaussian random walk from the last value; per-series step std from the last ``lookback`` changes."""
    rng = np.random.default_rng(seed)
    out = []
    for hist in map(fill_missing, histories):
        sigma = np.diff(hist[:, -(lookback + 1):], axis=1).std(axis=1)             # (N,)
        steps = rng.normal(size=(num_samples, prediction_length, hist.shape[0])) * sigma
        out.append(hist[:, -1] + steps.cumsum(axis=1))
    return np.stack(out).astype(np.float32)


def _recent_steps(hist: np.ndarray, lookback: int) -> np.ndarray:
    """(L, N) one-step changes over the last ``lookback`` steps of a history (N, T); NaN-free rows only."""
    steps = np.diff(hist[:, -(lookback + 1):], axis=1).T
    steps = steps[np.isfinite(steps).all(axis=1)]
    if len(steps) < 2:
        raise ValueError(f"a random walk needs at least 2 observed changes in the last {lookback} steps")
    return steps


def random_walk_correlated(histories: Sequence[np.ndarray], prediction_length: int, lookback: int,
                           num_samples: int, seed: int = 0) -> np.ndarray:
    """Gaussian random walk from the last value with step vectors ~ N(0, covariance of recent changes)."""
    rng = np.random.default_rng(seed)
    out = []
    for hist in map(fill_missing, histories):
        cov = np.atleast_2d(np.cov(_recent_steps(hist, lookback), rowvar=False, bias=False))
        steps = rng.multivariate_normal(np.zeros(len(cov)), cov, size=(num_samples, prediction_length),
                                        method="eigh")
        out.append(hist[:, -1] + steps.cumsum(axis=1))
    return np.stack(out).astype(np.float32)


def random_walk_bootstrap(histories: Sequence[np.ndarray], prediction_length: int, lookback: int,
                          num_samples: int, seed: int = 0) -> np.ndarray:
    """Random walk from the last value whose step vectors are recent ones drawn with replacement."""
    rng = np.random.default_rng(seed)
    out = []
    for hist in map(fill_missing, histories):
        recent = _recent_steps(hist, lookback)                                      # (L, N)
        steps = recent[rng.integers(len(recent), size=(num_samples, prediction_length))]
        out.append(hist[:, -1] + steps.cumsum(axis=1))
    return np.stack(out).astype(np.float32)


def last_value(histories: Sequence[np.ndarray], prediction_length: int) -> np.ndarray:
    """Point forecast: the last observed value repeated (one sample path)."""
    return np.stack([np.repeat(hist[:, -1][None, None], prediction_length, axis=1) for hist in map(fill_missing, histories)]
                    ).astype(np.float32)


def seasonal_naive(histories: Sequence[np.ndarray], prediction_length: int, freq: str) -> np.ndarray:
    """Point forecast y[t - season] (one sample path), the season taken from the frequency."""
    period = season(freq)
    out = []
    for hist in map(fill_missing, histories):
        last = hist[:, -period:]
        reps = -(-prediction_length // period)
        out.append(np.tile(last, reps)[:, :prediction_length].T[None])              # (1, P, N)
    return np.stack(out).astype(np.float32)
