"""The main job on the embedded default: train on noisy oscillators, roll out 10x past training.

Writes to ``out``: the scheduling matrices used, a rollout ten times longer than
the training sequences next to real continuations (with and without
stabilization), the loss curve, and ``summary.json`` with the numbers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from ..config import load_config
from ..plotting import plot_loss, plot_rollout, plot_schedules
from ..results import write_result
from .synthetic import held_out, rollout_stats, train_run

CONTEXT = 8
ROLLOUT_MULTIPLE = 10
SEED = 0


def run_demo(out: Path, steps: int | None = None, progress: bool = True, results: Path | None = None,
             command: list[str] | None = None) -> list[Path]:
    """Train the embedded default config and write the demo pictures; returns the files written.

    ``results``: a second path for the summary JSON (to keep it with the project's results).
    """
    out = Path(out)
    cfg = load_config(None, [f"train.steps={steps}"] if steps else [])
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts from scratch
    tic = time.time()
    model = train_run(cfg, run_dir, progress=progress)
    train_s = time.time() - tic

    named = {
        f"pyramid, slope {cfg.sampling.slope:g} (used)": model.scheduling_matrix(),
        "full_sequence": model.scheduling_matrix("full_sequence"),
        "autoregressive": model.scheduling_matrix("autoregressive"),
    }
    files = [plot_schedules(named, out / "schedules.png")]

    length = ROLLOUT_MULTIPLE * cfg.data.length
    real = held_out(cfg.data, 8, CONTEXT + length)
    stats, tic = {}, time.time()
    for name, level in (("stabilized", cfg.sampling.stabilization), ("no_stabilization", 0)):
        generated = model.rollout(length, real[:, :CONTEXT], stabilization=level,
                                  generator=torch.Generator().manual_seed(SEED))
        stats[name] = rollout_stats(generated, real[:, CONTEXT:], cfg.data.length)
        files.append(plot_rollout(torch.cat([real[:, :CONTEXT], generated], 1), real, out / f"rollout_{name}.png",
                                  context=CONTEXT, train_length=cfg.data.length,
                                  title=f"{length} tokens = {ROLLOUT_MULTIPLE}x training length ({name.replace('_', ' ')})"))
    sample_s = time.time() - tic

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    files.append(plot_loss([r["step"] for r in rows], [r["loss"] for r in rows], out / "loss.png"))
    for path in [out / "summary.json"] + ([results] if results else []):
        files.append(write_result(
            path, {"rollout": stats, "final_loss": rows[-1]["loss"]},
            wall_time_s=train_s + sample_s, seeds={"data": cfg.data.seed, "train": cfg.train.seed, "sample": SEED},
            train_time_s=round(train_s, 1), sample_time_s=round(sample_s, 1), train_steps=cfg.train.steps,
            rollout_length=length, training_length=cfg.data.length, context=CONTEXT, command=command,
        ))
    return [Path(f) for f in files]
