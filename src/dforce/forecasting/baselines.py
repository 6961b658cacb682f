"""Forecasting baselines on the same windows: random walk, seasonal naive, GluonTS DeepAR.

Each returns sample paths (W, S, P, N) for the P steps after each observed history (N, T_w),
exactly like :meth:`Forecaster.sample`, so one evaluator scores them all.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from .metrics import quietly

SEASONS = {"B": 5, "D": 7, "h": 24, "H": 24}  # seasonal-naive period per pandas frequency


def random_walk(histories: Sequence[np.ndarray], prediction_length: int, lookback: int, num_samples: int,
                seed: int = 0) -> np.ndarray:
    """Gaussian random walk from the last value; per-series step std from the last ``lookback`` changes."""
    rng = np.random.default_rng(seed)
    out = []
    for hist in histories:
        sigma = np.diff(hist[:, -(lookback + 1):], axis=1).std(axis=1)             # (N,)
        steps = rng.normal(size=(num_samples, prediction_length, hist.shape[0])) * sigma
        out.append(hist[:, -1] + steps.cumsum(axis=1))
    return np.stack(out).astype(np.float32)


def seasonal_naive(histories: Sequence[np.ndarray], prediction_length: int, freq: str) -> np.ndarray:
    """Point forecast y[t - season] (one sample path), the season taken from the frequency."""
    season = SEASONS.get(freq, 1)
    out = []
    for hist in histories:
        last = hist[:, -season:]
        reps = -(-prediction_length // season)
        out.append(np.tile(last, reps)[:, :prediction_length].T[None])              # (1, P, N)
    return np.stack(out).astype(np.float32)


def deepar(train: np.ndarray, start: Any, freq: str, histories: Sequence[np.ndarray], prediction_length: int,
           context_length: int, num_samples: int, seed: int, epochs: int = 30, batches_per_epoch: int = 50,
           run_dir: str | None = None) -> np.ndarray:
    """GluonTS's torch DeepAR (one model over the N univariate series), trained on ``train`` (N, T).

    Histories are forecast series by series; the N forecasts are stacked into (W, S, P, N)
    paths (DeepAR draws the series independently).
    """
    import lightning
    import torch
    from gluonts.dataset.common import ListDataset
    from gluonts.torch import DeepAREstimator

    lightning.seed_everything(seed, verbose=False)
    torch.manual_seed(seed)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    estimator = DeepAREstimator(
        freq=freq, prediction_length=prediction_length, context_length=context_length,
        num_batches_per_epoch=batches_per_epoch,
        trainer_kwargs={"max_epochs": epochs, "accelerator": "cpu", "enable_progress_bar": False,
                        "enable_model_summary": False, "logger": False,
                        "default_root_dir": run_dir},
    )
    with quietly():
        data = ListDataset([{"start": start, "target": row} for row in train], freq=freq)
        predictor = estimator.train(data)
        out = []
        for hist in histories:
            entries = ListDataset([{"start": start, "target": row} for row in hist], freq=freq)
            forecasts = list(predictor.predict(entries, num_samples=num_samples))
            out.append(np.stack([f.samples for f in forecasts], axis=-1))            # (S, P, N)
    return np.stack(out).astype(np.float32)
