"""GluonTS interface: ``DiffusionForcingEstimator`` trains, ``DiffusionForcingPredictor`` forecasts.

They behave like GluonTS's own estimators and predictors::

    from dforce.forecasting.gluonts_api import DiffusionForcingEstimator
    from gluonts.evaluation import make_evaluation_predictions

    estimator = DiffusionForcingEstimator(freq="B", prediction_length=30)
    predictor = estimator.train(train_ds, validation_data=val_ds)
    forecasts, series = make_evaluation_predictions(test_ds, predictor, num_samples=100)
    predictor.serialize(Path("exchange-df"))
    same = Predictor.deserialize(Path("exchange-df"))

Data as GluonTS gives it:

* N univariate entries (``"target"`` of shape (T,)) sharing one start and length are
  modelled jointly, one token per step holding all N series, and forecast one
  ``SampleForecast`` per entry; or one grouped entry (``MultivariateGrouper``) with a
  ``"target"`` of shape (N, T), forecast as one multivariate ``SampleForecast``;
* NaN targets are missing values (not trained on, flagged as unknown to the model);
* ``"feat_dynamic_real"`` (K, T) covariates known in advance are conditioned on at every
  step; at prediction time they must cover the forecast range too (K, T + P), as in GluonTS.
  With N univariate entries the covariates of all entries are stacked.

``validation_data`` (entries extending the training ones by a multiple of
``prediction_length``) selects the checkpoint; without it, the last ``val_windows``
windows of the training data are held out for that. Training happens in a temporary
directory removed afterwards unless ``run_dir`` is given.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from gluonts.model.estimator import Estimator
from gluonts.model.forecast import SampleForecast
from gluonts.model.predictor import Predictor

from ..config import RunConfig, load_config
from .metrics import period_index
from .model import Forecaster, protocol_for, train_forecaster
from .series import MultivariateSeries, as_timestamp


def _targets(entries: list[dict]) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(target (N, T), covariates (K, T') or None, grouped) of a list of GluonTS entries."""
    if not entries:
        raise ValueError("the dataset is empty")
    if len(entries) == 1 and np.ndim(entries[0]["target"]) == 2:
        entry = entries[0]
        cov = entry.get("feat_dynamic_real")
        return (np.asarray(entry["target"], np.float32), None if cov is None else np.asarray(cov, np.float32), True)
    if any(np.ndim(e["target"]) != 1 for e in entries):
        raise ValueError("give either N univariate entries or one grouped (N, T) entry (MultivariateGrouper)")
    lengths, starts = {len(e["target"]) for e in entries}, {str(as_timestamp(e["start"])) for e in entries}
    if len(lengths) != 1 or len(starts) != 1:
        raise ValueError("univariate entries must share one start and one length to be modelled jointly; got "
                         f"{len(starts)} starts and lengths {sorted(lengths)[:5]}")
    covs = [e.get("feat_dynamic_real") for e in entries]
    if any(c is None for c in covs) and not all(c is None for c in covs):
        raise ValueError("feat_dynamic_real must be given for every entry or for none")
    cov = None if covs[0] is None else np.concatenate([np.atleast_2d(np.asarray(c, np.float32)) for c in covs])
    return np.stack([np.asarray(e["target"], np.float32) for e in entries]), cov, False


def _validation_histories(validation: list[dict], train_length: int, prediction_length: int
                          ) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    """Rolling validation histories from entries that extend the training data by k * prediction_length."""
    target, cov, _ = _targets(validation)
    extra = target.shape[1] - train_length
    if extra < prediction_length or extra % prediction_length:
        raise ValueError(f"validation_data must extend the training series by a multiple of prediction_length="
                         f"{prediction_length}; it extends them by {extra} steps")
    ends = range(train_length + prediction_length, target.shape[1] + 1, prediction_length)
    return tuple(target[:, :end] for end in ends), cov


class DiffusionForcingPredictor(Predictor):
    """Forecasts with a trained :class:`Forecaster`; one batched rollout per ``predict`` call."""

    def __init__(self, forecaster: Forecaster, num_samples: int = 100, seed: int = 0):
        super().__init__(prediction_length=forecaster.prediction_length)
        self.forecaster, self.num_samples, self.seed = forecaster, num_samples, seed

    def predict(self, dataset: Iterable[dict], num_samples: int | None = None, **kwargs: Any) -> Iterator[Any]:
        entries = list(dataset)
        if not entries:
            return
        grouped = np.ndim(entries[0]["target"]) == 2
        groups = [[e] for e in entries] if grouped else _joint_groups(entries, self.forecaster.n_series)
        for group in groups:
            yield from self._forecast(group, num_samples or self.num_samples, grouped)

    def _forecast(self, group: list[dict], num_samples: int, grouped: bool) -> Iterator[Any]:
        target, cov, _ = _targets(group)
        start = as_timestamp(group[0]["start"])
        paths = self.forecaster.sample([target], start, num_samples, seed=self.seed,
                                       covariates=None if cov is None else [cov])[0]      # (S, P, N)
        first = period_index(start, self.forecaster.freq, target.shape[1] + 1)[-1]
        if grouped:
            yield SampleForecast(samples=paths, start_date=first, item_id=group[0].get("item_id"))
            return
        for n, entry in enumerate(group):
            yield SampleForecast(samples=paths[..., n], start_date=first, item_id=entry.get("item_id"))

    def serialize(self, path: Path) -> None:
        """GluonTS's type record, the model directory (config.json + model.safetensors) and the sampling settings."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        super().serialize(path)
        self.forecaster.model.save_pretrained(path / "model")
        (path / "predictor.json").write_text(json.dumps({"num_samples": self.num_samples, "seed": self.seed}) + "\n")

    @classmethod
    def deserialize(cls, path: Path, device: str = "cpu", **kwargs: Any) -> "DiffusionForcingPredictor":
        path = Path(path)
        settings = json.loads((path / "predictor.json").read_text())
        return cls(Forecaster.from_pretrained(path / "model", device), **settings)


def _joint_groups(entries: list[dict], n_series: int) -> list[list[dict]]:
    """Univariate entries in consecutive groups of the model's N series (GluonTS test sets repeat them per window)."""
    if len(entries) % n_series:
        raise ValueError(f"the model forecasts {n_series} series jointly; got {len(entries)} univariate entries "
                         "(not a multiple)")
    return [entries[i:i + n_series] for i in range(0, len(entries), n_series)]


class DiffusionForcingEstimator(Estimator):
    """Trains a Diffusion Forcing forecaster; hyperparameters are constructor arguments.

    Defaults are the project's forecasting choices: increment tokens, a 2-layer GRU of width
    128, 1000 steps of batch 64, autoregressive sampling with 20 DDIM steps per token and
    stabilization at level 20 of 1000. ``config`` (a full ``RunConfig``) overrides them all.
    """

    def __init__(self, freq: str, prediction_length: int, context_length: int | None = None, *,
                 tokens: str = "increments", level_feature: bool = False, max_lag: int = 0, width: int = 128,
                 depth: int = 2, train_steps: int = 1000, batch_size: int = 64, lr: float = 1e-3,
                 sampling_steps: int = 20, stabilization: int = 20, val_windows: int = 5, val_samples: int = 20,
                 eval_every: int = 100, num_samples: int = 100, seed: int = 0, device: str = "auto",
                 run_dir: str | Path | None = None, progress: bool = False, config: RunConfig | None = None):
        super().__init__()
        self.freq, self.prediction_length = freq, prediction_length
        self.run_dir, self.num_samples, self.progress, self.seed = run_dir, num_samples, progress, seed
        self.config = config if config is not None else load_config(None, [
            "data.name=timeseries", "forecast.dataset=gluonts", f"forecast.tokens={tokens}",
            f"forecast.level_feature={str(level_feature).lower()}", f"forecast.max_lag={max_lag}",
            f"forecast.context_length={context_length if context_length is not None else 'null'}",
            f"forecast.val_windows={val_windows}", f"forecast.val_samples={val_samples}",
            f"model.width={width}", f"model.depth={depth}", f"train.steps={train_steps}",
            f"train.batch_size={batch_size}", f"train.lr={lr}", f"train.eval_every={eval_every}",
            f"train.seed={seed}", f"train.device={device}", "train.tensorboard=false",
            "sampling.scheduling=autoregressive", "sampling.chunk=1", f"sampling.steps={sampling_steps}",
            f"sampling.stabilization={stabilization}"])

    def train(self, training_data: Iterable[dict], validation_data: Iterable[dict] | None = None,
              **kwargs: Any) -> DiffusionForcingPredictor:
        """Fit on ``training_data``; ``validation_data`` (or the held-out end of the training data) picks the
        checkpoint. Returns a predictor holding the model in memory."""
        entries = list(training_data)
        target, cov, _ = _targets(entries)
        forecast = replace(self.config.forecast, prediction_length=self.prediction_length)
        validation = None
        if validation_data is not None:
            validation, val_cov = _validation_histories(list(validation_data), target.shape[1], self.prediction_length)
            cov = val_cov if val_cov is not None else cov
            forecast = replace(forecast, val_windows=0)
        series = MultivariateSeries("gluonts", target, (), self.freq, as_timestamp(entries[0]["start"]),
                                    self.prediction_length, cov)
        fd = protocol_for(series, forecast)
        if validation is not None:
            fd = replace(fd, validation=validation, val_windows=len(validation))
        cfg = replace(self.config, forecast=forecast)
        if not fd.val_histories():                    # nothing to select on: the final EMA model
            cfg = replace(cfg, train=replace(cfg.train, eval_every=0))
        if self.run_dir is not None:
            return self._fit(cfg, Path(self.run_dir), fd)
        with tempfile.TemporaryDirectory(prefix="dforce-") as tmp:
            return self._fit(cfg, Path(tmp), fd)

    def _fit(self, cfg: RunConfig, run_dir: Path, fd: Any) -> DiffusionForcingPredictor:
        chosen = train_forecaster(cfg, run_dir, progress=self.progress, fd=fd)
        # loaded into memory (on the training device) before run_dir may go
        forecaster = Forecaster.from_pretrained(chosen, cfg.train.device)
        return DiffusionForcingPredictor(forecaster, self.num_samples, self.seed)
