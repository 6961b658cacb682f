"""Backtest scores that can tell two forecasters apart: per-window CRPS-sum parts and paired intervals.

CRPS-sum pooled over windows is a ratio, ``sum_w L_w / sum_w |y_w|``, with ``L_w`` the mean
over quantiles of window w's quantile loss of the summed series and ``|y_w|`` its absolute
summed target. GluonTS's own ``Evaluator`` gives both per window (item metrics
``QuantileLoss[q]`` and ``abs_target_sum``), so its pooled ``mean_wQuantileLoss`` is
reassembled exactly (a test checks it against ``MultivariateEvaluator``'s
``m_sum_mean_wQuantileLoss``).

Two forecasters scored on the same windows share the denominator, so their difference is
``sum_w (L_w - L'_w) / sum_w |y_w|``: paired by window. Its interval comes from a bootstrap
that resamples windows and training seeds independently (both are sources of variation a
rerun would see); each replicate is the seed-averaged pooled difference. Windows do not
overlap, so they are close to independent; neighbouring windows of a persistent series are
not exactly so, and the interval is a little optimistic for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .metrics import QUANTILES, period_index, quietly

BOOTSTRAP_SEED = 2024
REPLICATES = 10_000


@dataclass(frozen=True)
class WindowScores:
    """loss (W,): mean quantile loss of the summed series per window; target (W,): sum of |summed truth|."""

    loss: np.ndarray
    target: np.ndarray

    @property
    def crps_sum(self) -> float:
        return float(self.loss.sum() / self.target.sum())


def window_scores(histories: Sequence[np.ndarray], samples: np.ndarray, start: Any, freq: str) -> WindowScores:
    """GluonTS ``Evaluator`` item metrics of the summed series, one item per window.

    histories: W arrays (N, T_w) whose last P steps are the truth; samples (W, S, P, N).
    """
    import pandas as pd
    from gluonts.evaluation import Evaluator
    from gluonts.model.forecast import SampleForecast

    if len(histories) != samples.shape[0]:
        raise ValueError(f"{len(histories)} histories but samples for {samples.shape[0]} windows")
    P = samples.shape[2]
    targets, forecasts = [], []
    with quietly():
        for hist, paths in zip(histories, samples):
            index = period_index(start, freq, hist.shape[1])[-P:]
            targets.append(pd.DataFrame(hist[:, -P:].sum(axis=0), index=index))
            forecasts.append(SampleForecast(samples=paths.sum(axis=-1), start_date=index[0]))
        _, items = Evaluator(quantiles=QUANTILES, num_workers=None)(iter(targets), iter(forecasts),
                                                                     num_series=len(forecasts))
    loss = items[[f"QuantileLoss[{q}]" for q in QUANTILES]].to_numpy().mean(axis=1)
    return WindowScores(loss.astype(np.float64), items["abs_target_sum"].to_numpy(dtype=np.float64))


def _replicates(n_seeds: int, n_windows: int, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap counts: seeds (B, S) and windows (B, W), each row a draw with replacement."""
    rng = np.random.default_rng(seed)
    seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=replicates)
    windows = rng.multinomial(n_windows, np.full(n_windows, 1 / n_windows), size=replicates)
    return seeds.astype(np.float64), windows.astype(np.float64)


def pooled_interval(loss: np.ndarray, target: np.ndarray, replicates: int = REPLICATES,
                    seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Seed-averaged pooled ratio ``mean_s sum_w loss[s, w] / sum_w target[w]`` with a bootstrap 95% interval.

    loss (S, W) per seed and window (a difference of two forecasters' losses for a paired
    comparison); target (W,). Returns {"mean", "ci95": [low, high], "per_seed"}.
    """
    loss = np.atleast_2d(np.asarray(loss, dtype=np.float64))
    target = np.asarray(target, dtype=np.float64)
    if loss.shape[1] != target.shape[0]:
        raise ValueError(f"loss {loss.shape} and target {target.shape} disagree on the number of windows")
    S, W = loss.shape
    seeds, windows = _replicates(S, W, replicates, seed)
    values = np.einsum("bs,sw,bw->b", seeds, loss, windows) / S / (windows @ target)
    per_seed = loss.sum(axis=1) / target.sum()
    low, high = np.percentile(values, [2.5, 97.5])
    return {"mean": float(per_seed.mean()), "ci95": [float(low), float(high)], "per_seed": per_seed.tolist()}


def paired(method: Sequence[WindowScores], baseline: Sequence[WindowScores], **kwargs: Any) -> dict[str, Any]:
    """CRPS-sum(method) - CRPS-sum(baseline) per seed, with its interval and the share of windows won.

    Both lists hold one ``WindowScores`` per seed on the same windows (a deterministic
    baseline repeats its one scoring).
    """
    target = method[0].target
    if any(not np.allclose(s.target, target) for s in (*method, *baseline)):
        raise ValueError("paired scores must come from the same windows (their targets differ)")
    diff = np.stack([m.loss - b.loss for m, b in zip(method, baseline, strict=True)])
    out = pooled_interval(diff, target, **kwargs)
    out["windows_won"] = float((diff < 0).mean())
    return out
