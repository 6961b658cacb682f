"""DeepAR (GluonTS, torch) as a baseline, with its settings chosen on the validation windows.

A baseline run with library defaults is a straw man, so ``tune`` trains one DeepAR per
setting of ``GRID`` (seed 0) on the fit range, scores it on the validation windows
(numpy CRPS-sum) and keeps the best; test-time samples of every seed are then drawn with
that setting. Validation scores and samples are kept in the run directory, so a rerun
with the same protocol only scores.
"""

from __future__ import annotations

import io
import json
import logging
from itertools import product
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import atomic
from .metrics import crps_sum, period_freq, quietly

log = logging.getLogger(__name__)

GRID = {"lr": (1e-3, 1e-2), "epochs": (10, 40)}   # epochs of 50 batches of 32 windows
VALIDATION_SAMPLES = 50


def settings_grid() -> list[dict[str, Any]]:
    return [dict(zip(GRID, values)) for values in product(*GRID.values())]


def tune(fd: Any, run_root: Path) -> dict[str, Any]:
    """The GRID setting with the lowest validation CRPS-sum (cached in ``run_root``).

    fd: a ``ForecastData``. Returns {"lr", "epochs", "validation": [{setting..., "crps_sum"}]}.
    """
    grid = "-".join(f"{k}{','.join(map(str, v))}" for k, v in GRID.items())
    record = run_root / f"tuning-fit{fd.fit_length}-val{fd.val_windows}-{grid}.json"
    if record.is_file():
        return json.loads(record.read_text())
    P = fd.spec.prediction_length
    val = fd.val_histories()
    truth = np.stack([h[:, -P:].T for h in val])
    scores = []
    for setting in settings_grid():
        paths = sample(fd, [h[:, :-P] for h in val], VALIDATION_SAMPLES, 0, setting, run_root, tag="val")
        scores.append({**setting, "crps_sum": crps_sum(truth, paths)})
        log.info("DeepAR %s: validation CRPS-sum %.5f", setting, scores[-1]["crps_sum"])
    best = min(scores, key=lambda s: s["crps_sum"])
    chosen = {"lr": best["lr"], "epochs": best["epochs"], "validation": scores}
    atomic.write_text(record, json.dumps(chosen, indent=2) + "\n")
    return chosen


def sample(fd: Any, histories: Sequence[np.ndarray], samples: int, seed: int, setting: dict[str, Any],
           run_root: Path, tag: str = "test") -> np.ndarray:
    """(W, S, P, N) DeepAR samples for ``histories``; trained on the fit range, kept on disk."""
    run_dir = run_root / f"seed{seed}"
    kept = run_dir / (f"samples-{tag}-lr{setting['lr']:g}-epochs{setting['epochs']}-fit{fd.fit_length}"
                      f"-w{len(histories)}-n{samples}.npy")
    if kept.is_file():
        return np.load(kept)
    log.info("training DeepAR (seed %d, %s)", seed, setting)
    paths = deepar(fd.series.train[:, : fd.fit_length], fd.series.start, fd.series.freq, histories,
                   fd.spec.prediction_length, fd.spec.context_length, samples, seed,
                   epochs=setting["epochs"], lr=setting["lr"], run_dir=str(run_dir))
    buffer = io.BytesIO()
    np.save(buffer, paths)
    atomic.write_bytes(kept, buffer.getvalue())
    return paths


def deepar(train: np.ndarray, start: Any, freq: str, histories: Sequence[np.ndarray], prediction_length: int,
           context_length: int, num_samples: int, seed: int, epochs: int = 30, batches_per_epoch: int = 50,
           run_dir: str | None = None, lr: float = 1e-3) -> np.ndarray:
    """GluonTS's torch DeepAR (one model over the N univariate series), trained on ``train`` (N, T).

    Histories are forecast series by series; the N forecasts are stacked into (W, S, P, N)
    paths (DeepAR draws the series independently).
    """
    import lightning
    import torch
    from gluonts.dataset.common import ListDataset
    from gluonts.torch import DeepAREstimator

    freq = period_freq(freq)          # GluonTS reads starts as periods: "MS" (month starts) is the period "M"
    lightning.seed_everything(seed, verbose=False)
    torch.manual_seed(seed)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    estimator = DeepAREstimator(
        freq=freq, prediction_length=prediction_length, context_length=context_length, lr=lr,
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
