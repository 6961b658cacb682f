"""Every forecasting method as one function: sample paths for a list of histories.

* trained (``TRAINED``): ``df`` (the configured Diffusion Forcing model), ``tf`` (the same
  network trained with teacher forcing: a clean past and one noisy token, TimeGrad-like),
  ``fs`` (the full-sequence ablation: every token of a window at one level, the P predicted
  tokens sampled together). Each seed is trained once into
  ``RUNS/<dataset>/<method>-<key>/seed<s>``, ``key`` a hash of everything that shapes
  training (so a changed config never reuses a stale run; sampling is not part of it);
  finished runs are reused, interrupted ones resumed.
* ``df_ensemble``: the trained ``df`` models of seeds 0..E-1 (E = ``ensemble``, the number
  of seeds evaluated) sampled together, S / E paths each: an average over training seeds.
  Its runs are df's; what varies with its seed is only the sampling noise.
* ``deepar``: GluonTS DeepAR with settings chosen on the validation windows (:mod:`.deepar`).
* simple baselines (:mod:`.baselines`): ``last_value``, ``random_walk``,
  ``random_walk_correlated``, ``random_walk_bootstrap``, ``seasonal_naive``; the random
  walks estimate their steps on the last ``context_length`` changes of each history.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import devices
from ..config import RunConfig, load_config, to_dict
from . import baselines, deepar
from .model import ForecastData, Forecaster, train_forecaster

log = logging.getLogger(__name__)

TRAINED = ("df", "tf", "fs")
SIMPLE = ("last_value", "random_walk", "random_walk_correlated", "random_walk_bootstrap", "seasonal_naive")
METHODS = (*TRAINED, "df_ensemble", "deepar", *SIMPLE)
DETERMINISTIC = ("last_value", "seasonal_naive")     # the same forecast for every seed
LEARNED = (*TRAINED, "df_ensemble")                  # the project's own forecasters


def method_overrides(method: str, prediction_length: int) -> list[str]:
    """Config overrides turning the configured (DF) model into each trained method."""
    return {
        "df": [],
        "tf": ["diffusion.forcing=teacher_forcing", "sampling.scheduling=autoregressive", "sampling.chunk=1",
               "sampling.stabilization=0"],
        "fs": ["diffusion.forcing=full_sequence", "sampling.scheduling=full_sequence",
               f"sampling.chunk={prediction_length}", "sampling.stabilization=0"],
    }.get(method, [])


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    return methods


@dataclass
class Methods:
    """Samples any method for one dataset protocol.

    config: the DF config file; base: overrides applied to every method; runs: the
    dataset's run root (``RUNS/<dataset>``). device: where trained methods train and sample
    (auto, cpu or cuda; None: the config's ``train.device``). It is not part of a run's key:
    a model trained on one device is reused on another.
    """

    config: Path
    base: list[str]
    fd: ForecastData
    runs: Path
    progress: bool = False
    ensemble: int = 5
    device: str | None = None
    _deepar: dict[str, Any] | None = None

    def config_of(self, method: str, seed: int = 0) -> RunConfig:
        return load_config(self.config, [*self.base, *method_overrides(method, self.fd.spec.prediction_length),
                                         f"train.seed={seed}"])

    def run_dir(self, method: str, seed: int) -> Path:
        return self.runs / f"{method}-{training_key(self.config_of(method, seed))}" / f"seed{seed}"

    def deepar_setting(self) -> dict[str, Any]:
        if self._deepar is None:
            self._deepar = deepar.tune(self.fd, self.runs / "deepar")
        return self._deepar

    def sample(self, method: str, seed: int, histories: Sequence[np.ndarray], samples: int,
               sampling_seed: int | None = None) -> np.ndarray:
        """(W, S, P, N) sample paths of ``method`` (S = 1 for point forecasts) for each history (N, T_w).

        ``seed`` picks the trained run; the sampling noise comes from ``sampling_seed`` (default ``seed``).
        """
        P, C = self.fd.spec.prediction_length, self.fd.spec.context_length
        if method == "last_value":
            return baselines.last_value(histories, P)
        if method == "seasonal_naive":
            return baselines.seasonal_naive(histories, P, self.fd.series.freq)
        if method in ("random_walk", "random_walk_correlated", "random_walk_bootstrap"):
            return getattr(baselines, method)(histories, P, C, samples, seed)
        if method == "deepar":
            setting = {k: self.deepar_setting()[k] for k in deepar.GRID}
            return deepar.sample(self.fd, histories, samples, seed, setting, self.runs / "deepar")
        if method == "df_ensemble":
            per = -(-samples // self.ensemble)
            paths = [self.sample("df", member, histories, per, sampling_seed=seed * 1000 + member)
                     for member in range(self.ensemble)]
            return np.concatenate(paths, axis=1)[:, :samples]
        cfg = self.config_of(method, seed)
        forecaster = Forecaster.from_pretrained(self.trained(cfg, self.run_dir(method, seed)),
                                                devices.resolve(self.device or cfg.train.device))
        forecaster.model.sampling_cfg = cfg.sampling  # sampling is not trained: the config in force decides it
        return forecaster.sample(histories, self.fd.series.start, samples,
                                 seed=seed if sampling_seed is None else sampling_seed,
                                 covariates=self.fd.covariates_for(histories, P))

    def trained(self, cfg: RunConfig, run_dir: Path) -> Path:
        """The selected model of a run: reused when finished, resumed when interrupted, else trained."""
        if (run_dir / "model").is_dir():
            return run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "model"
        resume = (run_dir / "checkpoints").is_dir()
        if self.device is not None:
            cfg = replace(cfg, train=replace(cfg.train, device=self.device))
        log.info("training %s (%s)", run_dir, "resuming" if resume else "new")
        return train_forecaster(cfg, run_dir, resume=resume, progress=self.progress, fd=self.fd)

    def train_seconds(self, method: str, seeds: Sequence[int]) -> list[float | None] | None:
        """Training wall time per seed (None for untrained methods)."""
        if method not in TRAINED:
            return None
        return [_train_seconds(self.run_dir(method, s)) for s in seeds]


def training_key(cfg: RunConfig) -> str:
    """8 hex digits of a hash of what shapes a trained model: all of the config but sampling and sample counts."""
    shaped = to_dict(cfg)
    for unused in ("sampling", "planning", "video", "imitation"):
        shaped.pop(unused)
    shaped["forecast"].pop("samples")
    shaped["train"].pop("seed")                          # the seed is the run directory's name
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:8]


def _train_seconds(run_dir: Path) -> float | None:
    """Training wall time of a run, from the last ``elapsed_s`` it logged (None if unknown)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if '"elapsed_s"' in line]
    return round(rows[-1]["elapsed_s"], 1) if rows else None
