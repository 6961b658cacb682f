"""GluonTS interface: an estimator whose ``train`` returns a predictor yielding ``SampleForecast``s.

Multivariate data as GluonTS gives it (e.g. after ``MultivariateGrouper``): entries with
``"start"`` and a ``"target"`` of shape (N, T). The predictor forecasts the
``prediction_length`` steps after each entry, so it works with
``gluonts.evaluation.make_evaluation_predictions`` and ``MultivariateEvaluator``::

    estimator = DiffusionForcingEstimator(freq="B", prediction_length=30, config=load_config("configs/exchange.yaml"))
    predictor = estimator.train(grouped_train)
    forecasts, series = make_evaluation_predictions(grouped_test, predictor, num_samples=100)

gluonts is imported lazily: building the classes needs it, importing this module does not.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..config import RunConfig, load_config
from .series import MultivariateSeries, as_timestamp
from .metrics import period_index
from .model import Forecaster, protocol_for, train_forecaster


def _as_multivariate(training_data: Iterable[dict], freq: str, prediction_length: int) -> MultivariateSeries:
    """One (N, T) multivariate entry, or N univariate entries sharing start and length, as a series."""
    entries = list(training_data)
    if not entries:
        raise ValueError("training_data is empty")
    if len(entries) == 1 and np.ndim(entries[0]["target"]) == 2:
        target = np.asarray(entries[0]["target"], dtype=np.float32)
    else:
        lengths = {len(e["target"]) for e in entries}
        starts = {str(e["start"]) for e in entries}
        if len(lengths) != 1 or len(starts) != 1:
            raise ValueError("univariate training entries must share one start and one length to be modelled "
                             f"jointly; got {len(starts)} starts and lengths {sorted(lengths)[:5]}")
        target = np.stack([np.asarray(e["target"], dtype=np.float32) for e in entries])
    start = as_timestamp(entries[0]["start"])
    return MultivariateSeries("gluonts", target, (), freq, start, prediction_length)


@functools.cache
def _classes() -> tuple[type, type]:
    """Build the Estimator and Predictor subclasses on first use (gluonts imported here)."""
    from gluonts.model.estimator import Estimator
    from gluonts.model.forecast import SampleForecast
    from gluonts.model.predictor import Predictor

    class DiffusionForcingPredictor(Predictor):
        """Forecasts with a trained :class:`Forecaster`; one batched rollout per call."""

        def __init__(self, forecaster: Forecaster, num_samples: int = 100, seed: int = 0):
            super().__init__(prediction_length=forecaster.prediction_length)
            self.forecaster, self.num_samples, self.seed = forecaster, num_samples, seed

        def predict(self, dataset: Iterable[dict], num_samples: int | None = None, **kwargs: Any) -> Iterator[Any]:
            import pandas as pd

            entries = list(dataset)
            if not entries:
                return
            histories = [np.atleast_2d(np.asarray(e["target"], dtype=np.float32)) for e in entries]
            starts = [as_timestamp(e["start"]) for e in entries]
            samples = self.forecaster.sample(histories, starts, num_samples or self.num_samples, seed=self.seed)
            freq = self.forecaster.freq
            for entry, hist, paths in zip(entries, histories, samples):
                first = period_index(entry["start"], freq, hist.shape[1] + 1)[-1]
                yield SampleForecast(samples=paths if hist.shape[0] > 1 else paths[..., 0], start_date=first,
                                     item_id=entry.get("item_id"))

    class DiffusionForcingEstimator(Estimator):
        """Trains a Diffusion Forcing forecaster from a config (``configs/exchange.yaml`` style)."""

        def __init__(self, freq: str, prediction_length: int, config: RunConfig | None = None,
                     run_dir: str | Path | None = None, num_samples: int = 100, progress: bool = False):
            super().__init__()
            self.freq, self.prediction_length = freq, prediction_length
            self.config = config if config is not None else load_config(None, ["data.name=timeseries",
                                                                               "forecast.dataset=gluonts"])
            self.run_dir, self.num_samples, self.progress = run_dir, num_samples, progress

        def train(self, training_data: Iterable[dict], validation_data: Any = None, **kwargs: Any) -> Any:
            """Fit on ``training_data`` (validation windows are cut from its end); returns a predictor."""
            series = _as_multivariate(training_data, self.freq, self.prediction_length)
            cfg = self.config
            fd = protocol_for(series, replace(cfg.forecast, prediction_length=self.prediction_length))
            run_dir = Path(self.run_dir) if self.run_dir is not None else Path(tempfile.mkdtemp(prefix="dforce-"))
            chosen = train_forecaster(cfg, run_dir, progress=self.progress, fd=fd)
            return DiffusionForcingPredictor(Forecaster.from_pretrained(chosen), self.num_samples)

    return DiffusionForcingEstimator, DiffusionForcingPredictor


def __getattr__(name: str) -> type:
    if name == "DiffusionForcingEstimator":
        return _classes()[0]
    if name == "DiffusionForcingPredictor":
        return _classes()[1]
    raise AttributeError(name)
