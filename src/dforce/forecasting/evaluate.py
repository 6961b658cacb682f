"""`dforce eval forecasting`: Diffusion Forcing and baselines, side by side, on the same test windows.

Methods (``--methods``, comma separated):

* ``df``: the configured model (Diffusion Forcing: independent per-token levels,
  autoregressive sampling with stabilization);
* ``tf``: the same network trained with teacher forcing (a clean past, one noisy token:
  TimeGrad-like next-step diffusion), sampled autoregressively without stabilization;
* ``fs``: the full-sequence ablation (every token of a window at one level), sampling
  all P predicted tokens together after the clean context;
* ``deepar``: GluonTS's torch DeepAR on the same training range;
* ``random_walk``: Gaussian random walk, step std from the context's changes;
* ``seasonal_naive``: the last season repeated (a point forecast).

Each trained method is trained once per seed (``train.seed``) into
``RUNS/<dataset>/<method>/seed<s>`` (reused, or resumed when interrupted), then samples
``forecast.samples`` paths per test window; GluonTS's ``MultivariateEvaluator`` scores
them (CRPS-sum, CRPS, ND-sum, NRMSE-sum). ``results/forecasting/<dataset>-<method>.json``
gets mean ± std over seeds and every seed's numbers; a fan chart of seed 0 goes beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig, load_config, to_dict
from ..results import write_result
from .metrics import gluonts_metrics
from .model import ForecastData, Forecaster, prepare, train_forecaster

log = logging.getLogger(__name__)

METHODS = ("df", "tf", "fs", "deepar", "random_walk", "seasonal_naive")
TRAINED = ("df", "tf", "fs")
CONFIGS = {"exchange_rate_nips": "configs/exchange.yaml", "etth1": "configs/etth1.yaml", "etth2": "configs/etth2.yaml"}


def method_overrides(method: str, prediction_length: int) -> list[str]:
    """Config overrides turning the configured (DF) model into each trained method."""
    return {
        "df": [],
        "tf": ["diffusion.forcing=teacher_forcing", "sampling.scheduling=autoregressive", "sampling.chunk=1",
               "sampling.stabilization=0"],
        "fs": ["diffusion.forcing=full_sequence", "sampling.scheduling=full_sequence",
               f"sampling.chunk={prediction_length}", "sampling.stabilization=0"],
    }[method]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval forecasting`."""
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(CONFIGS)} (picks its config)")
    parser.add_argument("--config", type=Path, help="YAML config of the DF model (default: the dataset's preset)")
    parser.add_argument("--data", help="dataset location overriding forecast.dataset (name, archive, dir or CSV)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--steps", type=int, help="training steps (default: the config's)")
    parser.add_argument("--deepar-epochs", type=int, default=30, help="DeepAR epochs of 50 batches (default 30)")
    parser.add_argument("--runs", type=Path, default=Path("runs/forecasting"), help="where trained runs live")
    parser.add_argument("--out", type=Path, default=Path("results/forecasting"))
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate every requested method over the seeds; returns the files written."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    base = _base_overrides(args)
    cfg = load_config(_config_path(args), base)
    fd = prepare(cfg.forecast)
    files = []
    rows = {}
    for method in methods:
        tic = time.time()
        per_seed, fan = [], None
        for seed in range(args.seeds):
            samples = _samples(method, seed, args, base, fd, cfg.forecast.samples)
            per_seed.append(_score(fd, samples))
            fan = samples if seed == 0 else fan
            log.info("%s %s seed %d: %s", fd.series.name, method, seed, per_seed[-1])
        summary = _summarize(per_seed)
        rows[method] = summary
        stem = args.out / f"{args.dataset}-{method}"
        files.append(_fan_chart(fd, fan, stem.with_name(stem.name + "-fan.png"), method))
        files.append(write_result(
            stem.with_suffix(".json"), summary, wall_time_s=time.time() - tic, seeds=list(range(args.seeds)),
            command=args.command_line, dataset=args.dataset, method=method,
            config=to_dict(load_config(_config_path(args), base + method_overrides(method, fd.spec.prediction_length)))
            if method in TRAINED else None,
            protocol=fd.protocol(), per_seed=per_seed,
            train_time_s=[_train_seconds(args.runs / args.dataset / method / f"seed{s}") for s in range(args.seeds)]
            if method in TRAINED else None))
    print(_table(args.dataset, rows))
    return files


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return args.config
    if args.dataset not in CONFIGS:
        raise ValueError(f"--dataset {args.dataset!r} has no preset; give --config (presets: {', '.join(CONFIGS)})")
    return Path(CONFIGS[args.dataset])


def _base_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.data:
        out.append(f"forecast.dataset={args.data}")
    if args.steps:
        out.append(f"train.steps={args.steps}")
    return out


def _samples(method: str, seed: int, args: argparse.Namespace, base: list[str], fd: ForecastData,
             S: int) -> np.ndarray:
    """(W, S, P, N) sample paths of ``method`` for the test windows."""
    from . import baselines

    P, C = fd.spec.prediction_length, fd.spec.context_length
    histories = [h[:, :-P] for h in fd.series.test]
    if method == "random_walk":
        return baselines.random_walk(histories, P, C, S, seed)
    if method == "seasonal_naive":
        return baselines.seasonal_naive(histories, P, fd.series.freq)
    if method == "deepar":
        return _deepar(fd, histories, S, seed, args)
    cfg = load_config(_config_path(args), base + method_overrides(method, P) + [f"train.seed={seed}"])
    forecaster = Forecaster.from_pretrained(_trained(cfg, args.runs / args.dataset / method / f"seed{seed}", args))
    forecaster.model.sampling_cfg = cfg.sampling  # sampling is not trained: the config in force decides it
    return forecaster.sample(histories, fd.series.start, S, seed=seed)


def _deepar(fd: ForecastData, histories: list[np.ndarray], samples: int, seed: int,
            args: argparse.Namespace) -> np.ndarray:
    """DeepAR's test samples, kept in its run directory so that a rerun with the same settings only scores."""
    from .. import atomic
    from . import baselines

    run_dir = args.runs / args.dataset / "deepar" / f"seed{seed}"
    kept = run_dir / f"samples-epochs{args.deepar_epochs}-fit{fd.fit_length}-n{samples}.npy"
    if kept.is_file():
        return np.load(kept)
    log.info("training DeepAR (seed %d, %d epochs)", seed, args.deepar_epochs)
    paths = baselines.deepar(fd.series.train[:, : fd.fit_length], fd.series.start, fd.series.freq, histories,
                             fd.spec.prediction_length, fd.spec.context_length, samples, seed,
                             epochs=args.deepar_epochs, run_dir=str(run_dir))
    buffer = io.BytesIO()
    np.save(buffer, paths)
    atomic.write_bytes(kept, buffer.getvalue())
    return paths


def _trained(cfg: RunConfig, run_dir: Path, args: argparse.Namespace) -> Path:
    """The selected model of a run: reused when finished, resumed when interrupted, else trained."""
    if (run_dir / "model").is_dir():
        return run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "model"
    resume = (run_dir / "checkpoints").is_dir()
    log.info("training %s (%s)", run_dir, "resuming" if resume else "new")
    return train_forecaster(cfg, run_dir, resume=resume, progress=not args.no_progress)


def _train_seconds(run_dir: Path) -> float | None:
    """Training wall time of a run, from the last ``elapsed_s`` it logged (None if unknown)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if '"elapsed_s"' in line]
    return round(rows[-1]["elapsed_s"], 1) if rows else None


def _score(fd: ForecastData, samples: np.ndarray) -> dict[str, float]:
    return gluonts_metrics(list(fd.series.test), samples, fd.series.start, fd.series.freq)


def _summarize(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """{metric: {"mean", "std"}}, std over seeds (ddof 0, as the paper's ± is not specified)."""
    return {key: {"mean": float(np.mean([r[key] for r in per_seed])), "std": float(np.std([r[key] for r in per_seed]))}
            for key in per_seed[0]}


def _fan_chart(fd: ForecastData, samples: np.ndarray, path: Path, method: str) -> Path:
    from ..plotting import plot_fan

    P = fd.spec.prediction_length
    last = fd.series.test[-1]
    return plot_fan(last[:, :-P], last[:, -P:].T, samples[-1], path,
                    title=f"{fd.series.name}: {method}, last test window (seed 0)")


def _table(dataset: str, rows: dict[str, dict[str, Any]]) -> str:
    metrics = list(next(iter(rows.values())))
    lines = [f"# {dataset}: mean ± std over seeds", "| method | " + " | ".join(metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for method, summary in rows.items():
        cells = [f"{summary[m]['mean']:.4f} ± {summary[m]['std']:.4f}" for m in metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def forecast_run(checkpoint: Path, dataset: str | None, out: Path, samples: int | None, seed: int,
                 plot: bool, command: list[str] | None = None) -> list[Path]:
    """`dforce forecast`: sample every test window of a dataset with a trained forecaster.

    ``dataset`` defaults to the one the checkpoint was trained on. Writes ``samples.npz``
    (samples (W, S, P, N), truth (W, P, N)), ``metrics.json`` (GluonTS scores) and, with
    ``plot``, one fan chart per test window.
    """
    from dataclasses import replace

    from ..config import ForecastConfig
    from .model import load_series

    forecaster = Forecaster.from_pretrained(checkpoint)
    trained_on = ForecastConfig(**forecaster.model.extra["forecast"])
    series = load_series(replace(trained_on, dataset=dataset or trained_on.dataset))
    P = forecaster.prediction_length
    if series.prediction_length != P or series.n_series != forecaster.n_series:
        raise ValueError(f"{series.name} has {series.n_series} series and {series.prediction_length}-step windows; "
                         f"the model forecasts {forecaster.n_series} series {P} steps ahead")
    tic = time.time()
    paths = forecaster.sample([h[:, :-P] for h in series.test], series.start, samples or trained_on.samples, seed=seed)
    truth = np.stack([h[:, -P:].T for h in series.test])
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples.npz", samples=paths, truth=truth)
    metrics = gluonts_metrics(list(series.test), paths, series.start, series.freq)
    files = [out / "samples.npz", write_result(out / "metrics.json", metrics, wall_time_s=time.time() - tic,
                                               seeds=[seed], command=command, checkpoint=str(checkpoint),
                                               dataset=series.name)]
    if plot:
        from ..plotting import plot_fan

        for w, hist in enumerate(series.test):
            files.append(plot_fan(hist[:, :-P], truth[w], paths[w], out / f"fan_window{w}.png",
                                  title=f"{series.name}: test window {w}"))
    return files
