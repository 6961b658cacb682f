"""Train and sample on the built-in synthetic datasets (oscillators, cross, linear-Gaussian)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from .. import devices
from ..config import DataConfig, RunConfig, section
from ..data.sequences import FreshSequences, Sequences, random_windows, suffixes
from ..pipeline import DiffusionForcingModel
from ..train import train
from .data import CROSS_NOISE, cross_paths, cross_suffixes, generate

log = logging.getLogger(__name__)

HELD_OUT_SEED_OFFSET = 1_000  # held-out sequences come from a seed the training set never uses


def training_data(cfg: DataConfig) -> Sequences:
    """The configured dataset: ``data.sequences`` sequences of ``data.length`` tokens.

    ``data.window``: one seeded random crop per sequence; ``data.suffixes``: one seeded
    suffix per sequence, padded and masked; ``data.fresh`` (cross): new suffixes or whole
    paths drawn for every batch (``data.sequences`` is then only the size of an epoch).
    """
    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.fresh:
        noise = CROSS_NOISE if cfg.noise is None else cfg.noise
        if cfg.suffixes:
            draw = lambda n, gen: cross_suffixes(n, cfg.length, gen, noise, cfg.whole_paths)   # noqa: E731
        else:
            draw = lambda n, gen: (cross_paths(n, cfg.length, gen, noise), None)   # noqa: E731
        x, mask = draw(cfg.sequences, g)
        return FreshSequences(x, mask=mask, draw=draw, seed=cfg.seed)
    x = generate(cfg.name, cfg.sequences, cfg.length, cfg.seed, cfg.noise)
    if cfg.window is not None:
        return Sequences(random_windows(x, cfg.window, g))
    if cfg.suffixes:
        x, mask = suffixes(x, g, cfg.whole_paths)
        return Sequences(x, mask=mask)
    return Sequences(x)


def held_out(cfg: DataConfig, n: int, length: int) -> Tensor:
    """``n`` fresh sequences of any ``length`` from the training distribution, (n, length, D)."""
    return generate(cfg.name, n, length, cfg.seed + HELD_OUT_SEED_OFFSET, cfg.noise)


def build_model(cfg: RunConfig, data: Sequences) -> DiffusionForcingModel:
    """A fresh model for ``data``; initial weights are drawn from ``train.seed``."""
    torch.manual_seed(cfg.train.seed)
    return DiffusionForcingModel(data.token_shape, data.cond_dim, cfg.model, cfg.diffusion, cfg.sampling,
                                 extra={"data": asdict(cfg.data), "train": asdict(cfg.train)})


def train_run(cfg: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> DiffusionForcingModel:
    """Generate the configured dataset and train on it; returns the EMA model (saved in run_dir/model).

    Every ``train.eval_every`` steps the EMA model rolls out 4x the training length
    from held-out contexts and :func:`rollout_stats` is logged.
    """
    data = training_data(cfg.data)
    log.info("training on %s: %d sequences of %d tokens %s", cfg.data.name, len(data), cfg.data.length, data.token_shape)
    return train(build_model(cfg, data), data, cfg.train, run_dir, resume=resume, progress=progress,
                 evaluate=periodic_rollout(cfg.data))


def periodic_rollout(cfg: DataConfig, context: int = 4, multiple: int = 4, batch: int = 8):
    """An evaluation callback: held-out rollout statistics of a model at a training step."""
    real = held_out(cfg, batch, context + multiple * cfg.length)

    def evaluate(model: DiffusionForcingModel, step: int) -> dict[str, float]:
        generated = model.rollout(multiple * cfg.length, real[:, :context].to(model.device),
                                  generator=devices.generator(step, model.device))
        return rollout_stats(generated.cpu(), real[:, context:], cfg.length)
    return evaluate


def rollout_stats(generated: Tensor, real: Tensor, train_length: int) -> dict[str, float]:
    """Compare a long rollout with real continuations from the same contexts.

    generated, real: (B, N, D). ``mse_first_window`` scores the first training length
    of tokens against the truth (short-term accuracy); the rest compares
    distributions over the last quarter of the rollout, where the exact truth is
    no longer predictable: per-feature std and mean absolute amplitude.
    """
    n = generated.shape[1]
    tail = slice(n - max(1, n // 4), n)
    g, r = generated[:, tail], real[:, tail]
    return {
        "finite": bool(torch.isfinite(generated).all()),
        "mse_first_window": float((generated[:, :train_length] - real[:, :train_length]).pow(2).mean()),
        "tail_std_generated": float(g.std(dim=(0, 1)).mean()),
        "tail_std_real": float(r.std(dim=(0, 1)).mean()),
        "tail_peak_generated": float(g.abs().amax(1).mean()),
        "tail_peak_real": float(r.abs().amax(1).mean()),
    }


def sample_run(checkpoint: Path, out: Path, *, length: int | None = None, context: int = 4, batch: int = 8,
               scheduling: str | None = None, slope: float | None = None, steps: int | None = None,
               chunk: int | None = None, stabilization: int | None = None, seed: int = 0,
               device: str | torch.device = "cpu") -> list[Path]:
    """Roll a trained model out from held-out contexts on ``device``; writes samples.safetensors and samples.png."""
    from safetensors.torch import save

    from .. import atomic
    from ..plotting import plot_rollout

    model = DiffusionForcingModel.from_pretrained(checkpoint, device)
    data_cfg = section(DataConfig, model.extra.get("data", {}), f"{checkpoint}/config.json extra.data")
    length = 10 * data_cfg.length if length is None else length   # not `or`: an explicit 0 is an error
    if context < 1 or batch < 1 or length < 1:
        raise ValueError(f"need context, batch and length >= 1; got {context}, {batch}, {length}")
    real = held_out(data_cfg, batch, context + length)
    levels = model.scheduling_matrix(scheduling, chunk, steps, slope)
    tic = time.time()
    generated = model.rollout(length, real[:, :context], levels=levels, stabilization=stabilization,
                              generator=devices.generator(seed, model.device)).cpu()
    log.info("generated %d x %d tokens in %.1fs", batch, length, time.time() - tic)
    out.mkdir(parents=True, exist_ok=True)
    full = torch.cat([real[:, :context], generated], 1)
    # atomic, with a plain file's permissions (safetensors' own save_file makes 0600 files)
    atomic.write_bytes(out / "samples.safetensors", save({"generated": full.contiguous(), "real": real.contiguous()}))
    plot = plot_rollout(full, real, out / "samples.png", context=context, train_length=data_cfg.length,
                        title=f"{length} generated tokens ({length / data_cfg.length:.0f}x training length)")
    return [out / "samples.safetensors", Path(plot)]

