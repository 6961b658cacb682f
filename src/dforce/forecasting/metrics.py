"""Forecast scores: GluonTS's MultivariateEvaluator (reported) and a direct CRPS-sum (validation).

CRPS-sum (Salinas et al. 2019, as in TimeGrad and the paper): sum the N series, then the
mean over quantiles q = 0.05..0.95 of the weighted quantile loss
``sum_t 2 |(y_t - Q_q(t)) ((y_t <= Q_q(t)) - q)| / sum_t |y_t|``, totals taken over all
test windows. :func:`crps_sum` computes it directly in numpy (cheap, used to select
checkpoints on validation windows); :func:`gluonts_metrics` hands the same arrays to
GluonTS, whose numbers are the ones reported. A test checks the two agree.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Iterator, Sequence

import numpy as np

@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Silence GluonTS/Lightning: their progress bars on stderr and their pandas deprecation warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


QUANTILES = tuple(np.round(np.arange(1, 20) / 20, 2).tolist())  # 0.05 .. 0.95

# GluonTS metric name -> the name we report
REPORTED = {
    "m_sum_mean_wQuantileLoss": "crps_sum",
    "mean_wQuantileLoss": "crps",
    "m_sum_ND": "nd_sum",
    "m_sum_NRMSE": "nrmse_sum",
}


def crps_sum(truth: np.ndarray, samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> float:
    """CRPS-sum of samples (W, S, P, N) against truth (W, P, N), pooled over the W windows.

    Quantiles of the S summed sample paths are taken by nearest rank, as GluonTS does.
    """
    if samples.ndim != 4 or truth.shape != (samples.shape[0], *samples.shape[2:]):
        raise ValueError(f"need samples (W, S, P, N) and truth (W, P, N); got {samples.shape} and {truth.shape}")
    y = truth.sum(axis=-1)                                                    # (W, P)
    seen = np.isfinite(y)                  # a step with a missing value is not scored, as in GluonTS
    y = np.where(seen, y, 0.0)
    paths = samples.sum(axis=-1)                                              # (W, S, P)
    pred = np.quantile(paths, np.asarray(quantiles), axis=1, method="nearest")   # (Q, W, P)
    q = np.asarray(quantiles)[:, None, None]
    loss = 2 * (np.abs((y - pred) * ((y <= pred) - q)) * seen).sum(axis=(1, 2))   # (Q,)
    return float((loss / np.abs(y).sum()).mean())


def gluonts_metrics(histories: Sequence[np.ndarray], samples: np.ndarray, start: Any, freq: str) -> dict[str, float]:
    """GluonTS ``MultivariateEvaluator`` scores of forecasts for the last P steps of each history.

    histories: W arrays (N, T_w) holding each window's truth in its last P steps;
    samples: (W, S, P, N); start: timestamp of step 0 of every history; freq: pandas freq.
    Returns the metrics of ``REPORTED`` under our names (crps_sum, crps, nd_sum, nrmse_sum).
    A single series (N = 1) goes to GluonTS's univariate ``Evaluator``, where the sum is the
    series itself (GluonTS's multivariate evaluator refuses one dimension).
    """
    import pandas as pd
    from gluonts.evaluation import Evaluator, MultivariateEvaluator
    from gluonts.model.forecast import SampleForecast

    if len(histories) != samples.shape[0]:
        raise ValueError(f"{len(histories)} histories but samples for {samples.shape[0]} windows")
    P, N = samples.shape[2], samples.shape[3]
    targets, forecasts = [], []
    for hist, paths in zip(histories, samples):
        index = period_index(start, freq, hist.shape[1])
        targets.append(pd.DataFrame(hist.T, index=index))
        forecasts.append(SampleForecast(samples=paths if N > 1 else paths[..., 0], start_date=index[-P]))
    with quietly():  # a progress bar per dimension, pandas deprecation warnings
        if N > 1:
            evaluator = MultivariateEvaluator(quantiles=QUANTILES, target_agg_funcs={"sum": np.sum}, num_workers=None)
            agg, _ = evaluator(iter(targets), iter(forecasts), num_series=len(forecasts))
            return {ours: float(agg[theirs]) for theirs, ours in REPORTED.items()}
        agg, _ = Evaluator(quantiles=QUANTILES, num_workers=None)(iter(targets), iter(forecasts),
                                                                   num_series=len(forecasts))
    return {ours: float(agg[theirs.removeprefix("m_sum_")]) for theirs, ours in REPORTED.items()}


PERIOD_CODES = {"MS": "M", "ME": "M", "QS": "Q", "QE": "Q", "YS": "Y", "YE": "Y", "AS": "Y"}


def period_freq(freq: str) -> str:
    """The pandas *period* frequency of a timestamp frequency: "MS" (month starts) is the period "M"."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pd.Period("2000-01-03", freq=freq)
        return freq
    except ValueError:
        return PERIOD_CODES.get(freq.split("-")[0], freq)


def period_index(start: Any, freq: str, length: int):
    """GluonTS-style PeriodIndex of ``length`` steps from ``start`` (a timestamp or period)."""
    import pandas as pd

    from .series import as_timestamp

    pf = period_freq(freq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas deprecates business-day periods
        return pd.period_range(start=pd.Period(as_timestamp(start), freq=pf), periods=length, freq=pf)
