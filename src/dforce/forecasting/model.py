"""Probabilistic forecasting with Diffusion Forcing under the TimeGrad protocol.

``prepare`` loads a dataset and fixes the protocol (train-split statistics, validation
windows cut from the end of the training range, seasonal lags); ``train_forecaster``
trains on every window of the remaining range and keeps the checkpoint with the best
validation CRPS-sum; a ``Forecaster`` turns a trained model back into raw-scale sample
paths for any history. The model, its scheduling and its stabilization come from the
run config, so Diffusion Forcing, teacher forcing and full-sequence models share all of this.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import atomic, devices
from ..config import ForecastConfig, RunConfig
from ..data.sequences import Sequences
from ..pipeline import DiffusionForcingModel
from ..train import train
from .metrics import crps_sum
from .catalog import is_catalogued, load_catalogued
from .series import MultivariateSeries, load_gluonts, load_table, normalize, series_stats, time_features
from .windows import WindowSpec, seasonal_lags, training_starts, typical_step, window_inputs, window_observed

log = logging.getLogger(__name__)

VALIDATION_SEED = 12_345  # the same noise at every validation, so checkpoints are compared fairly


def load_series(cfg: ForecastConfig) -> MultivariateSeries:
    """The dataset of ``forecast.dataset``: a ``tsdata:`` name (:mod:`.catalog`), a CSV (:func:`load_table`:
    time in the first column, one column per series), or anything ``load_gluonts`` takes."""
    if cfg.dataset is None:
        raise ValueError("forecast.dataset is not set (a GluonTS name, archive, directory, CSV or tsdata: name)")
    if is_catalogued(cfg.dataset):
        series = load_catalogued(cfg.dataset)
    elif cfg.dataset.endswith(".csv"):
        if not Path(cfg.dataset).is_file():
            raise FileNotFoundError(f"no CSV file at {cfg.dataset!r}")
        if cfg.prediction_length is None:
            raise ValueError("a CSV dataset needs forecast.prediction_length")
        return load_table(cfg.dataset, cfg.prediction_length, cfg.test_windows)
    else:
        series = load_gluonts(cfg.dataset)
    if cfg.prediction_length not in (None, series.prediction_length):
        raise ValueError(f"forecast.prediction_length={cfg.prediction_length} differs from the dataset's test "
                         f"windows ({series.prediction_length}); leave it unset for this dataset")
    return series


@dataclass(frozen=True)
class ForecastData:
    """A dataset under the protocol. mean/std (N, 1) and step (N,) from ``train[:, :fit_length]``.

    The training range is cut, in time order, into the fit range (trained on), ``val_windows``
    validation windows (model selection) and ``backtest_windows`` held-out windows (scored
    by the backtest); the dataset's own test windows follow the training range.
    """

    series: MultivariateSeries
    spec: WindowSpec
    mean: np.ndarray
    std: np.ndarray
    step: np.ndarray
    fit_length: int
    val_windows: int
    mirror: bool = False
    backtest_windows: int = 0
    covariate_mean: np.ndarray | None = None     # (K, 1) from the fit range, when the series has covariates
    covariate_std: np.ndarray | None = None
    validation: tuple[np.ndarray, ...] | None = None   # explicit validation histories (GluonTS validation_data)

    @property
    def n_series(self) -> int:
        return self.series.n_series

    def val_histories(self) -> list[np.ndarray]:
        """Raw (N, T_v) histories whose last P steps are validation targets (inside the training range,
        unless given explicitly)."""
        if self.validation is not None:
            return list(self.validation)
        return self._histories_after(self.fit_length, self.val_windows)

    def covariates_for(self, histories: Sequence[np.ndarray], ahead: int) -> list[np.ndarray] | None:
        """The series' covariates over each history plus ``ahead`` steps (None without covariates)."""
        cov = self.series.covariates
        return None if cov is None else [cov[:, : h.shape[1] + ahead] for h in histories]

    def backtest_histories(self) -> list[np.ndarray]:
        """Raw (N, T_b) histories whose last P steps are backtest targets: the windows after validation."""
        return self._histories_after(self.fit_length + self.val_windows * self.spec.prediction_length,
                                     self.backtest_windows)

    def _histories_after(self, first: int, count: int) -> list[np.ndarray]:
        P = self.spec.prediction_length
        return [self.series.train[:, : first + (w + 1) * P] for w in range(count)]

    def protocol(self) -> dict[str, Any]:
        """What a checkpoint needs to forecast again: stored in its config.json."""
        return {"context_length": self.spec.context_length, "prediction_length": self.spec.prediction_length,
                "lags": list(self.spec.lags), "level": self.spec.level, "tokens": self.spec.tokens,
                "missing": self.spec.missing, "freq": self.series.freq, "fit_length": self.fit_length,
                "series_mean": self.mean[:, 0].tolist(), "series_std": self.std[:, 0].tolist(),
                "typical_step": self.step.tolist(),
                "covariate_mean": None if self.covariate_mean is None else self.covariate_mean[:, 0].tolist(),
                "covariate_std": None if self.covariate_std is None else self.covariate_std[:, 0].tolist()}


def prepare(cfg: ForecastConfig) -> ForecastData:
    """Load ``forecast.dataset`` and fix the protocol (see :func:`protocol_for`)."""
    return protocol_for(load_series(cfg), cfg)


def protocol_for(series: MultivariateSeries, cfg: ForecastConfig) -> ForecastData:
    """Context = prediction length unless set; validation then backtest windows off the training end;
    lags beyond the window."""
    P = series.prediction_length
    C = cfg.context_length or P
    fit_length = series.train.shape[1] - (cfg.val_windows + cfg.backtest_windows) * P
    spec = WindowSpec(C, P, seasonal_lags(series.freq, C + P, cfg.max_lag), cfg.level_feature, cfg.tokens,
                      missing=bool(np.isnan(series.train).any()))
    if fit_length < spec.history + P:
        raise ValueError(f"{series.name}: {series.train.shape[1]} training steps leave too little for "
                         f"{cfg.val_windows} validation and {cfg.backtest_windows} backtest windows of {P} steps "
                         f"and lags up to {max(spec.lags, default=0)}")
    mean, std = series_stats(series.train[:, :fit_length])
    step = typical_step(normalize(series.train[:, :fit_length], mean, std))
    cov_mean, cov_std = (None, None) if series.covariates is None else series_stats(series.covariates[:, :fit_length])
    return ForecastData(series, spec, mean, std, step, fit_length, cfg.val_windows, cfg.mirror,
                        cfg.backtest_windows, cov_mean, cov_std)


def time_feature_table(start: Any, freq: str, length: int) -> np.ndarray:
    """(length, F) GluonTS time features of the steps from ``start`` (a timestamp or pandas Period)."""
    return time_features((start, freq, length))


def step_features(start: Any, freq: str, length: int, covariates: np.ndarray | None = None,
                  mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """(length, F [+ K]) per-step features: time features, then the covariates (K, >= length) standardized
    with the fit range's mean/std (K, 1). A missing covariate value counts as its mean."""
    table = time_feature_table(start, freq, length)
    if covariates is None:
        return table
    if covariates.shape[1] < length:
        raise ValueError(f"covariates cover {covariates.shape[1]} steps; {length} are needed (the history and "
                         f"the forecast range)")
    z = np.nan_to_num(normalize(covariates[:, :length], mean, std).T, nan=0.0)
    return np.concatenate([table, z], axis=1).astype(np.float32)


def training_sequences(fd: ForecastData) -> Sequences:
    """Every window (stride 1) of the fit range: tokens (M, C + P, N), cond (M, C + P, Cc).

    With ``fd.mirror`` the windows of the negated series follow (2M windows): every
    upward move is also seen as a downward one, so no drift direction is learned.
    """
    h = normalize(fd.series.train[:, : fd.fit_length], fd.mean, fd.std)
    table = step_features(fd.series.start, fd.series.freq, fd.fit_length, fd.series.covariates,
                          fd.covariate_mean, fd.covariate_std)
    starts = training_starts(fd.fit_length, fd.spec)
    signs = (1, -1) if fd.mirror else (1,)
    parts = [window_inputs(sign * h, table, starts, fd.spec, fd.step, with_future=True)[:2] for sign in signs]
    tokens, cond = (np.concatenate(arrays) for arrays in zip(*parts))
    observed = None
    if fd.spec.missing:   # missing entries are never targets; a token with none observed is padding
        observed = torch.from_numpy(np.concatenate([window_observed(h, starts, fd.spec)] * len(signs)))
    return Sequences(torch.from_numpy(tokens), torch.from_numpy(cond), observed)


def _column(values: Any) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(-1, 1)


class Forecaster:
    """A trained model with its protocol; forecasts raw-scale sample paths for any history."""

    def __init__(self, model: DiffusionForcingModel, spec: WindowSpec, mean: np.ndarray, std: np.ndarray,
                 step: np.ndarray, freq: str, covariate_mean: Any = None, covariate_std: Any = None):
        self.model, self.spec, self.freq = model.eval(), spec, freq
        self.mean, self.std = _column(mean), _column(std)
        self.step = np.asarray(step, np.float32).reshape(-1)
        self.covariate_mean = None if covariate_mean is None else _column(covariate_mean)
        self.covariate_std = None if covariate_std is None else _column(covariate_std)

    @property
    def n_covariates(self) -> int:
        return 0 if self.covariate_mean is None else self.covariate_mean.shape[0]

    @classmethod
    def from_model(cls, model: DiffusionForcingModel) -> "Forecaster":
        p = model.extra.get("protocol")
        if p is None:
            raise ValueError("this checkpoint was not trained for forecasting (no 'protocol' in its config)")
        spec = WindowSpec(p["context_length"], p["prediction_length"], tuple(p["lags"]), p.get("level", True),
                          p.get("tokens", "levels"), p.get("missing", False))
        return cls(model, spec, np.array(p["series_mean"]), np.array(p["series_std"]), np.array(p["typical_step"]),
                   p["freq"], p.get("covariate_mean"), p.get("covariate_std"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Forecaster":
        return cls.from_model(DiffusionForcingModel.from_pretrained(directory, device))

    @property
    def prediction_length(self) -> int:
        return self.spec.prediction_length

    @property
    def n_series(self) -> int:
        return self.mean.shape[0]

    def sample(self, histories: Sequence[np.ndarray], start: Any, num_samples: int = 100,
               seed: int = 0, covariates: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Sample paths (W, S, P, N) for the P steps after each observed history (N, T_w).

        ``start``: the timestamp of step 0 of every history, or a list of one per history.
        Each history must hold at least ``spec.history`` steps (NaN = missing). A model
        trained with covariates needs them for every history: (K, T_w + P) each, the
        forecast range included. The W x S paths are drawn in one batched rollout.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        starts = list(start) if isinstance(start, (list, tuple)) else [start] * len(histories)
        if len(starts) != len(histories):
            raise ValueError(f"{len(starts)} starts for {len(histories)} histories")
        if (covariates is None) != (self.n_covariates == 0):
            raise ValueError(f"this model takes {self.n_covariates} covariates; got "
                             f"{'none' if covariates is None else 'some'}")
        tokens, cond, loc, scale = self._inputs(histories, starts, covariates)
        device = self.model.device
        context = torch.from_numpy(tokens).repeat_interleave(num_samples, 0).to(device)
        c = torch.from_numpy(cond).repeat_interleave(num_samples, 0).to(device)
        out = self.model.rollout(self.prediction_length, context, cond=c,
                                 generator=devices.generator(seed, device))
        paths = out.cpu().numpy().reshape(len(histories), num_samples, self.prediction_length, self.n_series)
        h = self.spec.levels(paths, loc, scale)                                   # (W, S, P, N) normalized
        return (h * self.std[:, 0] + self.mean[:, 0]).astype(np.float32)

    def _inputs(self, histories: Sequence[np.ndarray], starts: list[Any], covariates: Sequence[np.ndarray] | None):
        parts = []
        covariates = [None] * len(histories) if covariates is None else list(covariates)
        if len(covariates) != len(histories):
            raise ValueError(f"{len(covariates)} covariate arrays for {len(histories)} histories")
        for hist, start, cov in zip(histories, starts, covariates):
            hist = np.asarray(hist, dtype=np.float32)
            if hist.ndim != 2 or hist.shape[0] != self.n_series:
                raise ValueError(f"each history must be ({self.n_series}, T), got shape {hist.shape}")
            T = hist.shape[1]
            if cov is not None and np.shape(cov)[0] != self.n_covariates:
                raise ValueError(f"covariates must be ({self.n_covariates}, T + P), got shape {np.shape(cov)}")
            table = step_features(start, self.freq, T + self.prediction_length,
                                  None if cov is None else np.asarray(cov, np.float32), self.covariate_mean,
                                  self.covariate_std)
            parts.append(window_inputs(normalize(hist, self.mean, self.std), table, np.array([T]), self.spec,
                                       self.step, with_future=False))
        return tuple(np.concatenate(arrays) for arrays in zip(*parts))


class BestOnValidation:
    """Training callback: validation CRPS-sum of the EMA model; the best one is kept in ``directory``.

    The kept directory holds the model files and ``validation.json`` ({"step", "crps_sum"}),
    written together atomically, so a resumed run knows the score to beat.
    """

    def __init__(self, fd: ForecastData, directory: Path, samples: int):
        self.fd, self.directory, self.samples = fd, Path(directory), samples
        self.histories = fd.val_histories()
        P = fd.spec.prediction_length
        self.truth = np.stack([hist[:, -P:].T for hist in self.histories])
        record = self.directory / "validation.json"
        self.best = json.loads(record.read_text())["crps_sum"] if record.is_file() else float("inf")

    def __call__(self, model: DiffusionForcingModel, step: int) -> dict[str, float]:
        forecaster = Forecaster.from_model(model)
        P = self.fd.spec.prediction_length
        contexts = [h[:, :-P] for h in self.histories]
        samples = forecaster.sample(contexts, self.fd.series.start, self.samples, seed=VALIDATION_SEED,
                                    covariates=self.fd.covariates_for(contexts, P))
        score = crps_sum(self.truth, samples)
        if score < self.best:
            self.best = score
            with atomic.new_directory(self.directory) as tmp:
                model.write_files(tmp)
                (tmp / "validation.json").write_text(json.dumps({"step": step, "crps_sum": score}) + "\n")
        model.train()
        return {"val_crps_sum": score, "best_val_crps_sum": self.best}


def train_forecaster(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
                     fd: ForecastData | None = None) -> Path:
    """Train on the configured dataset (or on ``fd``); returns the selected model directory.

    With ``train.eval_every`` > 0 that is ``run_dir/best`` (best validation CRPS-sum),
    otherwise the final EMA model ``run_dir/model``.
    """
    run_dir = Path(run_dir)
    fd = prepare(cfg.forecast) if fd is None else fd
    data = training_sequences(fd)
    log.info("%s: %d training windows of %d steps x %d series; lags %s", fd.series.name, len(data),
             fd.spec.length, fd.n_series, list(fd.spec.lags))
    torch.manual_seed(cfg.train.seed)
    model = DiffusionForcingModel((fd.n_series,), data.cond_dim, cfg.model, cfg.diffusion, cfg.sampling,
                                  extra={"forecast": asdict(cfg.forecast), "train": asdict(cfg.train),
                                         "protocol": fd.protocol()})
    select = BestOnValidation(fd, run_dir / "best", cfg.forecast.val_samples) if cfg.train.eval_every else None
    train(model, data, cfg.train, run_dir, resume=resume, evaluate=select, progress=progress)
    return run_dir / "best" if select is not None and (run_dir / "best").is_dir() else run_dir / "model"
