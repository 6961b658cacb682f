"""`dforce eval forecasting`: Diffusion Forcing and baselines, side by side, on the same windows.

Methods (``--methods``): see :mod:`.methods` (df, tf, fs, deepar and five simple baselines).

Two protocols:

* ``--backtest N`` (the one that can tell forecasters apart): the last N windows of the
  training range, after the validation windows, are held out; every method is fitted on
  what precedes the validation windows, chosen on them, and scored on the N backtest
  windows with GluonTS's evaluator. ``<dataset>-backtest.json`` holds each method's
  CRPS-sum with a bootstrap interval over windows and seeds, the paired difference of
  ``--reference`` (df) to every other method, and the same models' scores on the
  dataset's standard test windows (for comparison with the literature).
* without it: one record per method, ``<dataset>-<method>.json``, on the standard test
  windows only (mean ± std over seeds), with a fan chart.

Records go to ``--out`` (default ``outputs/forecasting``); ``--record`` writes the
project's ``results/forecasting``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic, flags
from ..config import load_config, to_dict
from ..results import add_destination, destination, write_result
from . import backtest
from .methods import DETERMINISTIC, LEARNED, METHODS, TRAINED, Methods, parse_methods
from .metrics import gluonts_metrics
from .model import ForecastData, Forecaster, prepare

CONFIGS = {"exchange_rate_nips": "configs/exchange.yaml", "etth1": "configs/etth1.yaml", "etth2": "configs/etth2.yaml",
           "vic_elec_daily": "configs/vic_elec_daily.yaml", "us_gasoline": "configs/us_gasoline.yaml",
           "us_employment": "configs/us_employment.yaml"}
DEFAULT_OUT = Path("outputs/forecasting")
RECORD_DIR = Path("results/forecasting")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval forecasting`."""
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(CONFIGS)} (picks its config)")
    parser.add_argument("--config", type=Path, help="YAML config of the DF model (default: the dataset's preset)")
    parser.add_argument("--data", help="dataset location overriding forecast.dataset (name, archive, dir or CSV)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--backtest", type=int, default=None, metavar="N",
                        help="score N held-out windows before the test windows (N >= 2; 36 or more to separate "
                             "forecasters)")
    parser.add_argument("--on", choices=("backtest", "validation"), default="backtest",
                        help="with --backtest: score the backtest windows (default) or the validation windows, "
                             "to make choices without touching held-out data")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every trained method (repeatable), e.g. forecast.tokens=increments")
    parser.add_argument("--protocol", choices=("honest", "paper"), default="honest",
                        help="paper: every forecast step is conditioned on the true previous value, as in the "
                             "paper's released code (one-step-ahead forecasts; not a 30-step forecast), on the "
                             "test windows")
    parser.add_argument("--reference", default="df", help="the method compared with every other one (default df)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--runs", type=Path, default=Path("runs/forecasting"), help="where trained runs live")
    flags.add_device(parser, train=True, default=None)
    add_destination(parser, DEFAULT_OUT, RECORD_DIR)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate every requested method over the seeds; returns the files written."""
    methods = parse_methods(args.methods)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.backtest is not None and args.backtest < 2:
        raise ValueError(f"--backtest must be >= 2 windows, got {args.backtest}")
    if args.on == "validation" and args.backtest is None:
        raise ValueError("--on validation needs --backtest N (it scores the validation windows of that protocol)")
    base = _base_overrides(args)
    cfg = load_config(_config_path(args), base)
    fd = prepare(cfg.forecast)
    runs = Methods(_config_path(args), base, fd, args.runs / args.dataset, progress=not args.no_progress,
                   ensemble=args.seeds, device=args.device)
    if args.protocol == "paper":
        return _paper(args, methods, runs)
    if args.backtest is not None:
        return _backtest(args, methods, runs)
    return _standard(args, methods, runs)


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
    if args.steps is not None:
        out.append(f"train.steps={args.steps}")
    if args.backtest is not None:
        out.append(f"forecast.backtest_windows={args.backtest}")
    return out + list(args.set)


def _method_config(runs: Methods, method: str) -> dict[str, Any] | None:
    return to_dict(runs.config_of(method)) if method in TRAINED else None


# ------------------------------------------------------------------------- standard windows


def _standard(args: argparse.Namespace, methods: list[str], runs: Methods) -> list[Path]:
    """One record per method on the dataset's test windows: mean ± std over seeds, and a fan chart."""
    fd, out = runs.fd, destination(args)
    P, S = fd.spec.prediction_length, runs.config_of("df").forecast.samples
    histories = [h[:, :-P] for h in fd.series.test]
    files, rows = [], {}
    for method in methods:
        tic = time.time()
        per_seed, fan = [], None
        for seed in range(args.seeds):
            samples = runs.sample(method, seed, histories, S)
            per_seed.append(gluonts_metrics(list(fd.series.test), samples, fd.series.start, fd.series.freq))
            fan = samples if seed == 0 else fan
        rows[method] = _summarize(per_seed)
        stem = out / f"{args.dataset}-{method}"
        files.append(_fan_chart(fd, fan, stem.with_name(stem.name + "-fan.png"), method))
        files.append(write_result(
            stem.with_suffix(".json"), rows[method], wall_time_s=time.time() - tic, seeds=list(range(args.seeds)),
            command=args.command_line, dataset=args.dataset, method=method, config=_method_config(runs, method),
            protocol=fd.protocol(), per_seed=per_seed, train_time_s=runs.train_seconds(method, range(args.seeds))))
    print(_table(args.dataset, rows))
    return files


def _summarize(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """{metric: {"mean", "std"}}, std over seeds (ddof 0, as the paper's ± is not specified)."""
    return {key: {"mean": float(np.mean([r[key] for r in per_seed])), "std": float(np.std([r[key] for r in per_seed]))}
            for key in per_seed[0]}


# --------------------------------------------------------------------------- paper protocol


def one_step_histories(histories: list[np.ndarray], prediction_length: int) -> list[np.ndarray]:
    """For each window (N, T_w) and each predicted step j, the true history before step j: W * P histories."""
    P = prediction_length
    return [h[:, : h.shape[1] - P + j] for h in histories for j in range(P)]


def stitch_one_step(samples: np.ndarray, windows: int, prediction_length: int) -> np.ndarray:
    """(W * P, S, P', N) forecasts from :func:`one_step_histories` -> (W, S, P, N): step j of window w is the
    first forecast step from the true history before it."""
    first = samples[:, :, 0]                                                     # (W * P, S, N)
    return first.reshape(windows, prediction_length, *first.shape[1:]).transpose(0, 2, 1, 3)


def _paper(args: argparse.Namespace, methods: list[str], runs: Methods) -> list[Path]:
    """The paper's test protocol on the test windows: step j of a window is forecast from the true steps before it.

    Every 30-step "forecast" is then 30 one-step forecasts, which is why a random walk from
    the true previous value scores about 0.0014 on Exchange, against 0.0047 for an honest one.
    """
    fd, out = runs.fd, destination(args)
    P, S = fd.spec.prediction_length, runs.config_of("df").forecast.samples
    test = list(fd.series.test)
    histories = one_step_histories(test, P)
    files = []
    for method in methods:
        tic = time.time()
        per_seed = [gluonts_metrics(test, stitch_one_step(runs.sample(method, seed, histories, S), len(test), P),
                                    fd.series.start, fd.series.freq) for seed in range(args.seeds)]
        summary = _summarize(per_seed)
        summary["crps_sum_mean"] = summary["crps_sum"]["mean"]
        files.append(write_result(
            out / f"{args.dataset}-{method}-paper-protocol.json", summary, wall_time_s=time.time() - tic,
            seeds=list(range(args.seeds)), command=args.command_line, dataset=args.dataset, method=method,
            protocol_note="every forecast step conditioned on the true previous value (the paper's released code); "
                          "one-step-ahead forecasts, not an honest multi-step forecast",
            config=_method_config(runs, method), protocol=fd.protocol(), per_seed=per_seed))
        print(f"{args.dataset} {method} (paper protocol): CRPS-sum {summary['crps_sum_mean']:.5f} "
              f"± {summary['crps_sum']['std']:.5f}")
    return files


# ------------------------------------------------------------------------------- backtest


def _backtest(args: argparse.Namespace, methods: list[str], runs: Methods) -> list[Path]:
    """Every method on the backtest windows (and the test windows), paired against ``--reference``."""
    if args.reference not in methods:
        raise ValueError(f"--reference {args.reference} is not among --methods {','.join(methods)}")
    fd, out, tic = runs.fd, destination(args), time.time()
    P, S = fd.spec.prediction_length, runs.config_of("df").forecast.samples
    held_out = fd.backtest_histories() if args.on == "backtest" else fd.val_histories()
    test = list(fd.series.test) if args.on == "backtest" else []
    histories = [h[:, :-P] for h in held_out + test]
    seeds = list(range(args.seeds))
    scores: dict[str, list[backtest.WindowScores]] = {}
    on_test: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        scores[method], on_test[method] = [], []
        for seed in seeds:
            if method in DETERMINISTIC and seed > 0:
                scores[method].append(scores[method][0])
                on_test[method].append(on_test[method][0])
                continue
            samples = runs.sample(method, seed, histories, S)
            scores[method].append(backtest.window_scores(held_out, samples[: len(held_out)], fd.series.start,
                                                         fd.series.freq))
            if test:
                on_test[method].append(gluonts_metrics(test, samples[len(held_out):], fd.series.start,
                                                       fd.series.freq))
    metrics = _backtest_metrics(scores, on_test, args.reference, fd)
    stem = out / f"{args.dataset}-{args.on}"
    figure = _backtest_figure(metrics, args.reference, stem.with_suffix(".png"), f"{args.dataset} ({args.on})")
    record = write_result(
        stem.with_suffix(".json"), metrics, wall_time_s=time.time() - tic, seeds=seeds,
        command=args.command_line, dataset=args.dataset, reference=args.reference, scored=args.on, overrides=args.set,
        windows=_window_dates(fd), protocol=fd.protocol(),
        configs={m: _method_config(runs, m) for m in methods if m in TRAINED},
        deepar=runs.deepar_setting() if "deepar" in methods else None,
        per_window=_per_window(scores, held_out, P),
        train_time_s={m: runs.train_seconds(m, seeds) for m in methods if m in TRAINED})
    print(_backtest_table(f"{args.dataset} ({args.on})", metrics, args.reference))
    return [figure, record]


def _backtest_metrics(scores: dict[str, list[backtest.WindowScores]], on_test: dict[str, list[dict[str, float]]],
                      reference: str, fd: ForecastData) -> dict[str, Any]:
    """The record's metrics: windows, seeds, crps_sum per method, paired differences, test-window scores."""
    target = next(iter(scores.values()))[0].target
    return {
        "windows": int(len(target)),
        "seeds": len(scores[reference]),
        "crps_sum": {m: backtest.pooled_interval(np.stack([s.loss for s in per_seed]), target)
                     for m, per_seed in scores.items()},
        "paired": {m: backtest.paired(scores[reference], per_seed) for m, per_seed in scores.items() if m != reference},
        # every other learned method against every simple baseline and DeepAR, the same way
        "paired_other": {f: {m: backtest.paired(scores[f], per_seed) for m, per_seed in scores.items()
                             if m not in (f, reference, *LEARNED)}
                         for f in scores if f in LEARNED and f != reference},
        "test_windows": {m: _summarize(per_seed) for m, per_seed in on_test.items() if per_seed},
        "test_window_count": len(fd.series.test),
    }


def _per_window(scores: dict[str, list[backtest.WindowScores]], held_out: list[np.ndarray], P: int) -> dict[str, Any]:
    """What a per-window decomposition needs: each window's |summed truth|, its realized volatility (mean
    absolute step of the summed series over the window), and every method's seed-mean quantile loss."""
    target = next(iter(scores.values()))[0].target
    summed = [h.sum(axis=0)[-(P + 1):] for h in held_out]
    return {"target": target.tolist(), "volatility": [float(np.nanmean(np.abs(np.diff(s)))) for s in summed],
            "loss": {m: np.mean([s.loss for s in per_seed], axis=0).tolist() for m, per_seed in scores.items()}}


def _window_dates(fd: ForecastData) -> dict[str, Any]:
    """Where the fit range, validation and backtest windows lie (first forecast dates), for the record."""
    P, V, B = fd.spec.prediction_length, fd.val_windows, fd.backtest_windows
    index = fd.series.index(fd.series.train.shape[1] + 1)
    return {"fit_length": fd.fit_length, "prediction_length": P, "validation": V, "backtest": B,
            "first_validation": str(index[fd.fit_length]), "first_backtest": str(index[fd.fit_length + V * P]),
            "training_end": str(index[fd.series.train.shape[1]])}


def _backtest_table(dataset: str, metrics: dict[str, Any], reference: str) -> str:
    lines = [f"# {dataset}: {metrics['windows']} windows x {metrics['seeds']} seeds",
             f"| method | CRPS-sum [95%] | {reference} - method [95%] | windows {reference} wins |", "|---|---|---|---|"]
    for method, score in metrics["crps_sum"].items():
        pair = metrics["paired"].get(method)
        diff = f"{pair['mean']:+.5f} [{pair['ci95'][0]:+.5f}, {pair['ci95'][1]:+.5f}]" if pair else "-"
        won = f"{pair['windows_won']:.2f}" if pair else "-"
        lines.append(f"| {method} | {score['mean']:.5f} [{score['ci95'][0]:.5f}, {score['ci95'][1]:.5f}] | {diff} | "
                     f"{won} |")
    return "\n".join(lines)


def _backtest_figure(metrics: dict[str, Any], reference: str, path: Path, dataset: str) -> Path:
    from .figure import plot_backtest

    return plot_backtest(metrics, reference, path, f"{dataset}: {metrics['windows']} windows x "
                                                   f"{metrics['seeds']} seeds, 95% bootstrap intervals")


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
                 plot: bool, command: list[str] | None = None, device: Any = "cpu") -> list[Path]:
    """`dforce forecast`: sample every test window of a dataset with a trained forecaster on ``device``.

    ``dataset`` defaults to the one the checkpoint was trained on. Writes ``samples.npz``
    (samples (W, S, P, N), truth (W, P, N)), ``metrics.json`` (GluonTS scores) and, with
    ``plot``, one fan chart per test window.
    """
    from dataclasses import replace

    from ..config import ForecastConfig, section
    from .model import load_series

    forecaster = Forecaster.from_pretrained(checkpoint, device)
    trained_on = section(ForecastConfig, forecaster.model.extra.get("forecast", {}),
                         f"{checkpoint}/config.json extra.forecast")
    series = load_series(replace(trained_on, dataset=dataset or _stored_dataset(trained_on.dataset)))
    P = forecaster.prediction_length
    if series.prediction_length != P or series.n_series != forecaster.n_series:
        raise ValueError(f"{series.name} has {series.n_series} series and {series.prediction_length}-step windows; "
                         f"the model forecasts {forecaster.n_series} series {P} steps ahead")
    tic = time.time()
    paths = forecaster.sample([h[:, :-P] for h in series.test], series.start, samples or trained_on.samples, seed=seed)
    truth = np.stack([h[:, -P:].T for h in series.test])
    metrics = gluonts_metrics(list(series.test), paths, series.start, series.freq)  # fails before anything is written
    buffer = io.BytesIO()
    np.savez_compressed(buffer, samples=paths, truth=truth)
    atomic.write_bytes(out / "samples.npz", buffer.getvalue())
    files = [out / "samples.npz", write_result(out / "metrics.json", metrics, wall_time_s=time.time() - tic,
                                               seeds=[seed], command=command, checkpoint=str(checkpoint),
                                               dataset=series.name)]
    if plot:
        from ..plotting import plot_fan

        for w, hist in enumerate(series.test):
            files.append(plot_fan(hist[:, :-P], truth[w], paths[w], out / f"fan_window{w}.png",
                                  title=f"{series.name}: test window {w}"))
    return files


def _stored_dataset(stored: str | None) -> str | None:
    """A checkpoint's dataset path: relative paths were relative to the repository root where it was trained,
    so they are tried there when they do not resolve from the working directory."""
    from ..records import ROOT

    if stored and not Path(stored).is_absolute() and not Path(stored).exists() and (ROOT / stored).exists():
        return str(ROOT / stored)
    return stored
