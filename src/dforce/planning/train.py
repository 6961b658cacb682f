"""Training the Maze2D planner: windows of the regenerated D4RL walk -> a Diffusion Forcing model."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import RunConfig
from ..pipeline import DiffusionForcingModel

log = logging.getLogger(__name__)


def train_planner(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> DiffusionForcingModel:
    """Train the Maze2D planner of ``cfg.planning.maze``; returns the EMA model (saved in ``run_dir/model``).

    Data: the regenerated D4RL walk (cached), ``data.sequences`` windows of ``data.length``
    tokens of ``planning.frame_stack`` env steps each (:func:`planning_sequences`).
    """
    from ..data.maze2d import load_or_generate
    from ..data.maze2d_tokens import planning_sequences
    from ..train import train

    p = cfg.planning
    if cfg.data.window is not None:
        raise ValueError(f"data.window={cfg.data.window} is not used by maze2d (data.length is the plan horizon); leave it unset")
    data = load_or_generate(p.maze, steps=p.dataset_steps, seed=p.dataset_seed, progress=progress)
    seqs = planning_sequences(data, p.frame_stack, cfg.data.length, cfg.data.sequences, cfg.data.seed)
    log.info("maze2d-%s: %d windows of %d tokens x %d steps (token dim %d), %.1f%% padding", p.maze, len(seqs),
             cfg.data.length, p.frame_stack, seqs.token_shape[0], 100 * (1 - float(seqs.mask.float().mean())))
    torch.manual_seed(cfg.train.seed)
    model = DiffusionForcingModel(seqs.token_shape, seqs.cond_dim, cfg.model, cfg.diffusion, cfg.sampling,
                                  extra={"data": asdict(cfg.data), "train": asdict(cfg.train),
                                         "planning": asdict(p),
                                         "tokens": {"layout": "k frames of [o_{t+1} (4), a_t (2)], frame-major",
                                                    "cond": "first token: [normalized o_t (4), 1]; others 0"}})
    return train(model, seqs, cfg.train, run_dir, resume=resume, progress=progress)
