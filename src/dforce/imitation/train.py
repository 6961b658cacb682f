"""`dforce train configs/imitation_*.yaml`: train one imitation policy on the cued-maze demos."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.normalizer import Normalizer
from ..data.sequences import Sequences
from ..pipeline import DiffusionForcingModel
from .demos import load_or_generate_demos
from .masking import UnknownStepSequences
from .tokens import imitation_sequences, memory_sequences

log = logging.getLogger(__name__)


def training_sequences(cfg: RunConfig) -> Sequences:
    """The demos as training sequences for ``cfg.imitation`` (hiding random steps if ``unknown_steps``)."""
    im = cfg.imitation
    demos = load_or_generate_demos(im.demos, im.demo_seed, im.action_noise)
    if not im.unknown_steps:
        return imitation_sequences(demos, im.mode, im.frame_stack, cfg.data.length)
    seqs = memory_sequences(demos, im.frame_stack, cfg.data.length, unknown_steps=True)
    blank = Normalizer((seqs.x.shape[-1],)).fit(seqs.x).mean.flatten()          # what the model's normalizer maps to 0
    return UnknownStepSequences(seqs.x, seqs.cond, seqs.mask, frame_stack=im.frame_stack,
                                max_rate=im.unknown_max_rate, blank=blank, seed=cfg.train.seed)


def train_imitation(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> DiffusionForcingModel:
    """Train one imitation policy (``cfg.imitation.mode``); returns the EMA model (saved in ``run_dir/model``)."""
    from ..train import train

    im = cfg.imitation
    if cfg.data.window is not None:
        raise ValueError(f"data.window={cfg.data.window} is not used by imitation (data.length is the demo length in "
                         "tokens); leave it unset")
    seqs = training_sequences(cfg)
    pad = 0.0 if seqs.mask is None else 100 * (1 - float(seqs.mask.float().mean()))
    log.info("imitation (%s): %d sequences of %d tokens x %d steps (token dim %d, cond %d), %.1f%% padding", im.mode,
             len(seqs), seqs.x.shape[1], im.frame_stack, seqs.token_shape[0], seqs.cond_dim, pad)
    torch.manual_seed(cfg.train.seed)
    flags = f", then {im.frame_stack} unknown-step flags" if im.unknown_steps else ""
    model = DiffusionForcingModel(seqs.token_shape, seqs.cond_dim, cfg.model, cfg.diffusion, cfg.sampling,
                                  extra={"data": asdict(cfg.data), "train": asdict(cfg.train), "imitation": asdict(im),
                                         "tokens": {"layout": "k frames of [o_{t+1} (4), a_t (2)], frame-major",
                                                    "cond": "[normalized o (4), cue, 1]: memory: first token only (o_0); "
                                                            f"memoryless: the current observation{flags}"}})
    return train(model, seqs, cfg.train, run_dir, resume=resume, progress=progress)
