"""`dforce eval likelihood`: ELBO of trained models vs the exact log-likelihood.

Models trained on the linear-Gaussian AR(1) process (``data.name=linear_gaussian``,
presets ``configs/likelihood_{df,tf,fs}.yaml``) are scored on held-out sequences drawn
from the same process with a seed the training set never uses
(:func:`dforce.synthetic.train.held_out`). For each model and each length L:

* ``elbo``: the Monte Carlo ELBO of the first L tokens on their own: the sum of the
  per-token bounds of :func:`dforce.diffusion.likelihood.elbo`, which start from a fresh
  state, over the first L tokens;
* ``exact``: the exact log p(x_1..x_L), the sum of the exact per-token conditionals;
* ``gap`` = exact - elbo (>= 0 up to Monte Carlo error) with its standard error over
  sequences (which includes the Monte Carlo noise of each sequence's estimate);

and per token t the bound on log p(x_t | x_<t) with the clean past as context next to
the exact conditional. Everything is in nats per dimension in DATA units: the model
sees z = (x - mean) / std, so log p(x) = log p(z) - sum_dims log std per token.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import devices, flags
from ..config import DataConfig
from .linear_gaussian import LinearGaussian
from ..diffusion.likelihood import elbo
from ..pipeline import DiffusionForcingModel
from ..results import add_destination, destination, write_result
from .train import HELD_OUT_SEED_OFFSET, held_out

DEFAULT_OUT = Path("outputs/likelihood")
RECORD_DIR = Path("results/likelihood")   # the shipped record: only --record writes there
DATASET = "linear_gaussian"
BATCH = 64            # held-out sequences per ELBO call (rows = BATCH * draws)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval likelihood`."""
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="[NAME=]DIR",
                        help="model directories (config.json + model.safetensors); named by the directory's "
                             "basename (its parent's when it is called 'model') unless given as name=path")
    parser.add_argument("--sequences", type=int, default=256, help="held-out sequences (default 256)")
    parser.add_argument("--lengths", default="1,2,4,8,16",
                        help="comma list of subsequence lengths L (first L tokens), default 1,2,4,8,16")
    parser.add_argument("--draws", type=int, default=64, help="Monte Carlo (level, noise) draws per token (default 64)")
    parser.add_argument("--proposal", default="snr", choices=("snr", "uniform"),
                        help="how the KL level is drawn (dforce.diffusion.likelihood; default snr)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws")
    flags.add_device(parser)
    add_destination(parser, DEFAULT_OUT, RECORD_DIR)   # <out>/linear_gaussian.json and .png
    parser.add_argument("--plot", type=Path, default=None, help="PNG (default: the JSON's path with .png)")


# ---- inputs ---------------------------------------------------------------------------------


def parse_lengths(text: str, max_length: int) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; each in [1, max_length], no duplicates, sorted."""
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--lengths must be a comma list of integers, got {text!r}") from None
    if not lengths:
        raise ValueError(f"--lengths is empty: {text!r}")
    bad = [n for n in lengths if not 1 <= n <= max_length]
    if bad:
        raise ValueError(f"--lengths {bad} out of range: each must lie in [1, {max_length}] "
                         f"(the models' training sequence length)")
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"--lengths has duplicates: {text!r}")
    return sorted(lengths)


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    """['df=runs/a/model', 'runs/b'] -> {'df': Path(...), 'b': Path(...)}; names must be unique."""
    named: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        directory = Path(path if sep else item)
        if not sep:
            name = directory.parent.name if directory.name == "model" else directory.name
        if not name:
            raise ValueError(f"--checkpoints entry {item!r} has an empty name")
        if name in named:
            raise ValueError(f"--checkpoints names must be unique; {name!r} appears twice (use name=path)")
        named[name] = directory
    return named


def load_model(directory: Path, device: str | torch.device = "cpu") -> DiffusionForcingModel:
    """A model from ``directory`` or its ``model/`` subfolder (a run directory) on ``device``; ValueError if neither."""
    for candidate in (directory, directory / "model"):
        if (candidate / "config.json").is_file():
            return DiffusionForcingModel.from_pretrained(candidate, device)
    raise ValueError(f"checkpoint {str(directory)!r} not found: need a model directory with config.json "
                     "and model.safetensors (or a run directory holding model/)")


def data_config(name: str, model: DiffusionForcingModel) -> DataConfig:
    """The model's training DataConfig; ValueError unless it was trained on linear_gaussian."""
    data = model.extra.get("data")
    if not data:
        raise ValueError(f"model {name!r} records no training data config (extra.data)")
    cfg = DataConfig(**data)
    if cfg.name != DATASET:
        raise ValueError(f"model {name!r} was trained on data.name={cfg.name!r}; the exact likelihood is "
                         f"known only for {DATASET!r}")
    if model.token_shape != (LinearGaussian.default().dim,) or model.cond_dim:
        raise ValueError(f"model {name!r} has token shape {model.token_shape} / cond_dim {model.cond_dim}; "
                         f"expected ({LinearGaussian.default().dim},) and no conditioning")
    return cfg


def shared_data_config(configs: dict[str, DataConfig]) -> DataConfig:
    """The one DataConfig the held-out set is drawn from; ValueError if models disagree on seed or length."""
    first = next(iter(configs.values()))
    for name, cfg in configs.items():
        if (cfg.seed, cfg.length) != (first.seed, first.length):
            raise ValueError(f"models disagree on training data (seed, length): {name!r} has "
                             f"({cfg.seed}, {cfg.length}), another ({first.seed}, {first.length})")
    return first


# ---- bounds ---------------------------------------------------------------------------------


def log_jacobian(model: DiffusionForcingModel) -> float:
    """sum_dims log std of the model's normalizer: log p_data(x) = log p_norm(z) - this, per token."""
    return float(model.normalizer.std.double().log().sum())


@torch.no_grad()
def token_bounds(model: DiffusionForcingModel, x: Tensor, draws: int, proposal: str,
                 generator: torch.Generator) -> Tensor:
    """(n, T) float64 bounds on log p(x_t | x_<t) with the clean past as context, nats in data units (on the CPU)."""
    z = model.normalizer.normalize(x.to(model.device))
    parts = [elbo(model.backbone, model.schedule, z[i : i + BATCH], target=model.diffusion_cfg.target,
                  draws=draws, proposal=proposal, generator=generator)
             for i in range(0, len(z), BATCH)]
    return torch.cat(parts).cpu() - log_jacobian(model)


def mean_se(values: Tensor, dims: int) -> tuple[float, float]:
    """Mean and standard error over sequences of (n,) nats, divided by ``dims`` (nats/dim)."""
    v = values.double() / dims
    se = v.std(correction=1).item() / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return v.mean().item(), se


def score(bounds: Tensor, exact: Tensor, dims: int) -> dict[str, float]:
    """ELBO, exact and gap (exact - ELBO), each mean +- s.e. over sequences, in nats/dim."""
    e, e_se = mean_se(bounds, dims)
    x, x_se = mean_se(exact, dims)
    g, g_se = mean_se(exact - bounds, dims)
    return {"elbo": e, "elbo_se": e_se, "exact": x, "exact_se": x_se, "gap": g, "gap_se": g_se}


def provenance(path: Path, model: DiffusionForcingModel) -> dict[str, Any]:
    """What the model is: its directory, training forcing/steps/schedule, network size."""
    d, m = model.diffusion_cfg, model.model_cfg
    train = model.extra.get("train", {})
    return {
        "path": str(path), "forcing": d.forcing, "beta_schedule": d.beta_schedule, "levels": d.levels,
        "target": d.target, "weighting": d.weighting, "backbone": m.backbone, "width": m.width, "depth": m.depth,
        "parameters": sum(p.numel() for p in model.backbone.parameters()),
        "train_steps": train.get("steps"), "train_batch_size": train.get("batch_size"), "train_seed": train.get("seed"),
        "data": model.extra.get("data"),
    }


def evaluate(models: dict[str, DiffusionForcingModel], x: Tensor, lengths: list[int], draws: int, proposal: str,
             seed: int) -> dict[str, Any]:
    """Metrics for raw held-out sequences x (n, T, D): per model, per length and per token (see module doc)."""
    D = x.shape[-1]
    exact_tokens = LinearGaussian.default().exact_log_likelihood(x)          # (n, T)
    exact = {L: exact_tokens[:, :L].sum(1) for L in lengths}
    metrics: dict[str, Any] = {
        "units": "nats per dimension, data units (mean over held-out sequences; se = standard error)",
        "lengths": lengths,
        "sequences": len(x),
        "exact_by_length": [mean_se(exact[L], L * D)[0] for L in lengths],
        "exact_per_token": [mean_se(exact_tokens[:, t], D)[0] for t in range(x.shape[1])],
        "models": {},
    }
    for i, (name, model) in enumerate(models.items()):
        g = devices.generator(seed * 1_000 + i, model.device)
        tokens = token_bounds(model, x, draws, proposal, g)           # (n, T); prefixes sum it
        metrics["models"][name] = {
            "by_length": [{"length": L, **score(tokens[:, :L].sum(1), exact[L], L * D)} for L in lengths],
            "per_token": [{"token": t + 1, **score(tokens[:, t], exact_tokens[:, t], D)} for t in range(x.shape[1])],
            "whole_sequence_given_past": score(tokens.sum(1), exact_tokens.sum(1), x.shape[1] * D),
        }
    return metrics


def plot(metrics: dict[str, Any], path: Path) -> Path:
    """The PNG of :func:`dforce.plotting.plot_likelihood` from ``metrics``."""
    from ..plotting import plot_likelihood

    def series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
        return [r[key] for r in rows], [r[f"{key}_se"] for r in rows]

    models = metrics["models"]
    return plot_likelihood(
        metrics["lengths"], metrics["exact_by_length"],
        {n: series(m["by_length"], "elbo") for n, m in models.items()},
        {n: series(m["by_length"], "gap") for n, m in models.items()},
        {n: series(m["per_token"], "gap") for n, m in models.items()},
        path, title=f"ELBO vs exact log-likelihood, linear-Gaussian AR(1), {metrics['sequences']} held-out sequences",
    )


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate every checkpoint; write the results JSON and the PNG; return their paths."""
    start = time.perf_counter()
    if args.sequences < 2:
        raise ValueError(f"--sequences must be >= 2 (standard errors need two), got {args.sequences}")
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    paths = parse_checkpoints(args.checkpoints)
    models = {name: load_model(path, args.device) for name, path in paths.items()}
    data = shared_data_config({name: data_config(name, m) for name, m in models.items()})
    lengths = parse_lengths(args.lengths, data.length)
    x = held_out(data, args.sequences, data.length)
    metrics = evaluate(models, x, lengths, args.draws, args.proposal, args.seed)
    out = destination(args) / f"{DATASET}.json"
    png = plot(metrics, args.plot or out.with_suffix(".png"))
    held_out_seed = data.seed + HELD_OUT_SEED_OFFSET
    json_path = write_result(
        out, metrics, wall_time_s=time.perf_counter() - start,
        seeds={"monte_carlo": args.seed, "held_out_data": held_out_seed, "training_data": data.seed},
        command=getattr(args, "command_line", None),
        settings={"sequences": args.sequences, "sequence_length": data.length, "draws": args.draws,
                  "proposal": args.proposal,
                  "held_out": {**asdict(data), "sequences": args.sequences, "seed": held_out_seed}},
        models={name: provenance(paths[name], m) for name, m in models.items()},
        plot=str(png),
    )
    return [json_path, png]
