"""The main job on the embedded default: train on noisy oscillators, roll out 10x past training.

Writes to ``out``: the scheduling matrices used, a rollout ten times longer than
the training sequences next to real continuations (with and without
stabilization), the loss curve, and ``summary.json`` with the numbers. Then, with
the shipped Exchange checkpoint, a probabilistic forecast of every test window with
fan charts (``out/forecast``), when the Exchange data can be found; and, with the
shipped Maze2D planner (U-Maze, else Medium), one guided MPC episode with its D4RL
score, a PNG of the path and plans and a GIF of the re-planning (``out/planning``), when
MuJoCo is installed (the ``planning`` extra); and, with the shipped Moving MNIST video
model, a rollout GIF ten times its training length (``out/video``) when the MNIST files
can be found. Last, ``out/index.html`` shows every picture with the numbers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from .. import atomic, devices
from ..config import load_config
from ..plotting import plot_loss, plot_rollout, plot_schedules
from ..results import write_result
from ..synthetic.train import held_out, rollout_stats, train_run
from .demo_page import write_index

CONTEXT = 8
ROLLOUT_MULTIPLE = 10
SEED = 0
EXCHANGE_CHECKPOINT = Path(__file__).resolve().parents[3] / "checkpoints" / "exchange"
MAZES = ("umaze", "medium")   # the demo plans in the first maze whose planner is shipped
VIDEO_MODEL = "video-mnist32"
VIDEO_MULTIPLE = 10           # rollout length in training lengths

log = logging.getLogger(__name__)


STEPS = ("forecast", "planning", "video")   # the steps that use shipped checkpoints (each may be skipped)


def run_demo(out: Path, steps: int | None = None, progress: bool = True, results: Path | None = None,
             command: list[str] | None = None, exchange: str | None = None, skip: tuple[str, ...] = (),
             device: str = devices.AUTO) -> list[Path]:
    """Train the embedded default config and write the demo pictures; returns the files written.

    ``results``: a second path for the summary JSON (to keep it with the project's results).
    ``exchange``: where the Exchange dataset is (default: where the checkpoint was trained from).
    ``skip``: names from ``STEPS`` not to run. ``device``: where everything trains and samples
    (a ``train.device`` value: auto, cpu or cuda).
    """
    unknown = set(skip) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown demo steps to skip: {', '.join(sorted(unknown))}; known: {', '.join(STEPS)}")
    out = Path(out)
    # not `if steps`: 0 is an error
    cfg = load_config(None, [f"train.device={device}", *([] if steps is None else [f"train.steps={steps}"])])
    where = devices.resolve(device)
    run_dir = out / "run"
    start = tic = time.time()
    model, _ = in_new_directory(run_dir, lambda tmp: (train_run(cfg, tmp, progress=progress), [tmp]))
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
                                  generator=devices.generator(SEED, model.device)).cpu()
        stats[name] = rollout_stats(generated, real[:, CONTEXT:], cfg.data.length)
        files.append(plot_rollout(torch.cat([real[:, :CONTEXT], generated], 1), real, out / f"rollout_{name}.png",
                                  context=CONTEXT, train_length=cfg.data.length,
                                  title=f"{length} tokens = {ROLLOUT_MULTIPLE}x training length ({name.replace('_', ' ')})"))
    sample_s = time.time() - tic

    none: tuple[None, list[Path]] = (None, [])
    # a skipped step leaves its previous outputs alone; a step that runs replaces them only when it succeeds
    forecast, forecast_files = none if "forecast" in skip else in_new_directory(
        out / "forecast", lambda tmp: forecast_step(tmp, exchange, command, where))
    plan, plan_files = none if "planning" in skip else in_new_directory(
        out / "planning", lambda tmp: planning_step(tmp, command, where))
    video, video_files = none if "video" in skip else in_new_directory(
        out / "video", lambda tmp: video_step(tmp, where))
    files += forecast_files + plan_files + video_files

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    files.append(plot_loss([r["step"] for r in rows], [r["loss"] for r in rows], out / "loss.png"))
    for path in [out / "summary.json"] + ([results] if results else []):
        files.append(write_result(
            path, {"rollout": stats, "final_loss": rows[-1]["loss"], "forecast_exchange": forecast,
                   "planning": plan, "video": video},
            wall_time_s=time.time() - start, seeds={"data": cfg.data.seed, "train": cfg.train.seed, "sample": SEED},
            train_time_s=round(train_s, 1), sample_time_s=round(sample_s, 1), train_steps=cfg.train.steps,
            rollout_length=length, training_length=cfg.data.length, context=CONTEXT, command=command,
        ))
    files.append(write_index(out, out / "summary.json"))
    return [Path(f) for f in files]


class _NothingWritten(Exception):
    """A step that wrote nothing (its checkpoint or data is missing): keep the previous outputs."""


def in_new_directory(target: Path, step: Callable[[Path], tuple]) -> tuple:
    """Run ``step(tmp)`` -> (info, files) in a temporary directory that replaces ``target`` on success.

    A failing step (an exception) or one that writes no files leaves ``target`` as it was.
    The returned files are renamed from the temporary directory to ``target``.
    """
    try:
        with atomic.new_directory(target) as tmp:
            info, files = step(tmp)
            if not files:
                raise _NothingWritten
    except _NothingWritten:
        return info, []
    return info, [target / Path(f).relative_to(tmp) if Path(f).is_relative_to(tmp) else Path(f) for f in files]


def forecast_step(out: Path, exchange: str | None, command: list[str] | None,
                  device: torch.device | str = "cpu") -> tuple[dict | None, list[Path]]:
    """Forecast Exchange's test windows with the shipped checkpoint: (GluonTS metrics, files), or (None, [])."""
    from ..forecasting.evaluate import forecast_run

    if not EXCHANGE_CHECKPOINT.is_dir():
        log.warning("forecast step skipped: no shipped checkpoint at %s", EXCHANGE_CHECKPOINT)
        return None, []
    try:
        files = forecast_run(EXCHANGE_CHECKPOINT, exchange, out, samples=100, seed=SEED, plot=True, command=command,
                             device=device)
    except (FileNotFoundError, ImportError) as err:
        log.warning("forecast step skipped (%s); point --exchange-data at exchange_rate_nips.tar.gz", err)
        return None, []
    return json.loads((out / "metrics.json").read_text())["metrics"], files


def planning_step(out: Path, command: list[str] | None,
                  device: torch.device | str = "cpu") -> tuple[dict | None, list[Path]]:
    """One Maze2D episode (seed 0) with the shipped planner: (score record, files), or (None, [])."""
    import argparse

    from ..zoo import entries
    from ..planning.evaluate import add_arguments, run as eval_planning

    zoo = entries()
    shipped = [m for m in MAZES if f"maze2d-{m}" in zoo and zoo[f"maze2d-{m}"].directory.is_dir()]
    if not shipped:
        log.warning("planning step skipped: no shipped Maze2D planner (dforce models)")
        return None, []
    maze = shipped[0]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--env", f"maze2d-{maze}", "--checkpoint", f"maze2d-{maze}", "--method", "df",
                              "--episodes", "1", "--batch", "1", "--seed", str(SEED),
                              "--out", str(out), "--no-progress", "--device", str(device)])
    args.command_line = command
    try:
        files = eval_planning(args)
    except ImportError as err:
        log.warning("planning step skipped (%s); install the planning extra: pip install -e '.[planning]'", err)
        return None, []
    metrics = json.loads(files[0].read_text())["metrics"]
    return {"env": f"maze2d-{maze}", **{key: metrics[key] for key in ("score_mean", "return_mean", "reached_goal_fraction")}}, files


def video_step(out: Path, device: torch.device | str = "cpu") -> tuple[dict | None, list[Path]]:
    """Roll the shipped Moving MNIST model out 10x its training length: (timings, files), or (None, [])."""
    from ..zoo import entries
    from .video import sample_video

    entry = entries().get(VIDEO_MODEL)
    if entry is None or not entry.directory.is_dir():
        log.warning("video step skipped: no shipped %s model (dforce models)", VIDEO_MODEL)
        return None, []
    length = json.loads((entry.directory / "config.json").read_text())["extra"]["data"]["length"]
    tic = time.time()
    try:
        files = sample_video(entry.directory, out / "rollout.gif", out, frames=VIDEO_MULTIPLE * length,
                             context=4, batch=2, seed=SEED, device=device)
    except FileNotFoundError as err:
        log.warning("video step skipped (%s); set DFORCE_MNIST_DIR to a folder with the MNIST idx files", err)
        return None, []
    return {"model": VIDEO_MODEL, "frames": VIDEO_MULTIPLE * length, "training_length": length,
            "seconds": round(time.time() - tic, 1)}, [f for f in files if f.suffix == ".gif"]
