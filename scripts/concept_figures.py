"""The pictures of docs/concepts.md, drawn from the project's own code and shipped models.

    python scripts/concept_figures.py                       # docs/figures/*.png
    python scripts/concept_figures.py --video checkpoints/video_mnist32

* noise_levels.png: one training sequence noised three ways (Diffusion Forcing's
  independent levels, full-sequence diffusion, teacher forcing);
* scheduling.png: the named scheduling matrices;
* guidance.png: plans of the shipped U-Maze planner from one start, unguided, with cost
  guidance, and with Monte Carlo Guidance (needs the planning extra);
* stabilization.png and video_rollout.gif (with ``--video``): rollouts of a video model
  50x past its training length, generated frames committed at the stabilization level vs
  clean; the GIF is the README's lead picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dforce.data import generate
from dforce.diffusion import NoiseSchedule, autoregressive, full_sequence, pyramid, training_levels, trapezoid
from dforce.plotting import plot_schedules

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
FORCINGS = {"Diffusion Forcing: independent level per token": "independent",
            "full-sequence diffusion: one level for all": "full_sequence",
            "teacher forcing: clean past, one noisy token": "teacher_forcing"}


def noise_levels(out: Path, length: int = 24, seed: int = 0) -> Path:
    """One oscillator sequence (first coordinate) noised by each forcing: tokens coloured by level."""
    plt = _pyplot()
    x0 = generate("oscillators", n=1, length=length, seed=seed)                 # (1, T, 2)
    schedule = NoiseSchedule.make(1000, "sigmoid")
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(len(FORCINGS), 1, figsize=(7, 6.5), sharex=True)
    for ax, (title, forcing) in zip(axes, FORCINGS.items()):
        k = training_levels(1, length, schedule.levels, forcing, generator=g)   # (1, T)
        xk = schedule.add_noise(x0, k, torch.randn(x0.shape, generator=g))
        t = np.arange(length)
        ax.plot(t, x0[0, :, 0], color="0.6", lw=1, label="clean sequence")
        sc = ax.scatter(t, xk[0, :, 0], c=k[0], cmap="viridis", vmin=0, vmax=schedule.levels, s=28, zorder=3,
                        label="noisy tokens x_k")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-4, 4)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("token index t")
    fig.colorbar(sc, ax=axes, label="noise level k_t (0 = clean, 1000 = pure noise)")
    return _save(fig, out / "noise_levels.png")


def scheduling(out: Path, horizon: int = 8, steps: int = 10) -> Path:
    """The four named scheduling matrices at one size."""
    return plot_schedules({"full_sequence": full_sequence(horizon, steps),
                           "autoregressive": autoregressive(horizon, steps),
                           "pyramid (slope 2)": pyramid(horizon, steps, slope=2),
                           "trapezoid (slope 2)": trapezoid(horizon, steps, slope=2)}, out / "scheduling.png")


def guidance(out: Path, checkpoint: str = "maze2d-umaze", plans: int = 8, seed: int = 0) -> Path:
    """Plans from one start towards the goal: no guidance, cost guidance, Monte Carlo Guidance."""
    from dforce.envs.maze2d import goal_cell, wall_squares
    from dforce.plotting import draw_maze
    from dforce.planning import Planner

    plt = _pyplot()
    start = np.array([3.0, 1.0, 0.0, 0.0], dtype=np.float32)         # bottom-left arm of the U, at rest
    goal = goal_cell("maze2d-umaze").astype(np.float32)
    variants = {"no guidance": ("df_no_mcg", 0.0), "cost guidance (1 sample)": ("df_no_mcg", None),
                "Monte Carlo Guidance (8 samples)": ("df", None)}
    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.8))
    for ax, (title, (method, scale)) in zip(axes, variants.items()):
        planner = Planner.from_pretrained(checkpoint, method, guidance_scale=scale, seed=seed)
        plan = planner.plan(np.repeat(start[None], plans, 0), np.repeat(goal[None], plans, 0))
        draw_maze(ax, wall_squares("maze2d-umaze"), start[:2], goal)
        for p in plan.observations[:, :, :2]:
            ax.plot(p[:, 1], p[:, 0], lw=1, alpha=0.8)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{plans} plans of the shipped U-Maze planner from one start (green) to the goal (star)", fontsize=9)
    return _save(fig, out / "guidance.png")


def stabilization(out: Path, checkpoint: str, multiple: int = 50, shown: int = 8, seed: int = 0) -> list[Path]:
    """Held-out contexts rolled out ``multiple`` training lengths, with and without stabilization.

    Writes stabilization.png (frames of the first video at log-spaced indices, both ways)
    and video_rollout.gif (the stabilized rollouts of three videos, every 4th frame).
    """
    from dforce import DiffusionForcingModel
    from dforce.config import DataConfig, VideoConfig
    from dforce.tasks.video import VideoRollout, held_out, tile_frames, write_gif

    plt = _pyplot()
    model = DiffusionForcingModel.from_pretrained(checkpoint)
    data, video = DataConfig(**model.extra["data"]), VideoConfig(**model.extra.get("video", {}))
    frames, context = multiple * data.length, 4
    real, cond = held_out(data, video, 3, context + frames, seed)
    level = model.sampling_cfg.stabilization
    rows = {f"stabilization {level}": level, "no stabilization (clean)": 0}
    idx = np.unique(np.geomspace(1, frames, shown).astype(int)) - 1
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.3 * len(idx), 1.6 * len(rows)), squeeze=False)
    rollouts = {}
    for r, (name, lvl) in enumerate(rows.items()):
        gen = VideoRollout(model, lvl)(real[:, :context], frames, cond, generator=torch.Generator().manual_seed(seed))
        rollouts[lvl] = gen
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(gen[0, i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {i + 1}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(f"trained on {data.length} frames, rolled out {frames} ({multiple}x)", fontsize=8)
    png = _save(fig, out / "stabilization.png")
    every4 = rollouts[level][:, ::4]                                           # (3, frames / 4, 1, S, S)
    gif = write_gif(out / "video_rollout.gif", tile_frames([every4[i:i + 1] for i in range(len(every4))], scale=3))
    return [png, gif]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--planner", default="maze2d-umaze", help="a Maze2D U-Maze planner (zoo name or directory)")
    parser.add_argument("--video", default=None, help="a video model for the stabilization figure")
    parser.add_argument("--multiple", type=int, default=50, help="video rollout length in training lengths")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = [noise_levels(args.out), scheduling(args.out), guidance(args.out, args.planner)]
    if args.video:
        files += stabilization(args.out, args.video, args.multiple)
    print("\n".join(str(f) for f in files))


if __name__ == "__main__":
    main()
