"""`dforce eval imitation`: success rate of an imitation policy on the cued Maze2D memory task.

Episode ``e`` (``e = 0 .. episodes-1``) has cue ``+1`` for even ``e`` and ``-1`` for odd
``e`` (balanced) and its own random stream ``default_rng([seed, e])``: start noise, then
the corruption flags and noise of every step, drawn before the episode runs, so every
method meets the same starts and the same corrupted steps whatever the batch size.
Success = within 0.5 of the cued goal before within 0.5 of the other one, within
``--limit`` steps (default :data:`~dforce.envs.cued_maze.EPISODE_LIMIT`); reported as
success rate ± binomial standard error ``sqrt(p (1 - p) / N)``.

Writes ``results/imitation/<method>[-corrupt<p>][-kc<level>].json`` (``--out``) and a
PNG of a few trajectories beside it (``-kc`` only when ``--corrupt-level`` is given).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .imitation import CORRUPTIONS, DEFAULT_CORRUPT_LEVEL, METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval imitation`."""
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="model directory (dforce train configs/imitation_<method>.yaml)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes (default 200, half per cue)")
    parser.add_argument("--corrupt", type=float, default=0.0,
                        help="probability that an observation after the first is corrupted (default 0)")
    parser.add_argument("--corrupt-mode", choices=CORRUPTIONS, default="gaussian",
                        help="gaussian: add N(0, std^2) to position and velocity; zeros: occlude them")
    parser.add_argument("--corrupt-std", type=float, default=1.0, help="gaussian corruption std in maze units (default 1)")
    parser.add_argument("--corrupt-level", type=int, default=None,
                        help=f"df: noise level of committed tokens with a corrupted step (default {DEFAULT_CORRUPT_LEVEL}; "
                             "0 = told nothing)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per token (default: the model's)")
    parser.add_argument("--limit", type=int, default=None, help="episode limit in steps (default 435)")
    parser.add_argument("--seed", type=int, default=0, help="episode e uses default_rng([seed, e]); sampling seed")
    parser.add_argument("--batch", type=int, default=200, help="episodes run together (default 200)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default results/imitation/<tag>.json)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the first bad option; needs no checkpoint."""
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    for name in ("episodes", "batch", "steps", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if not 0 <= args.corrupt <= 1:
        raise ValueError(f"--corrupt must lie in [0, 1], got {args.corrupt}")
    if args.corrupt_std < 0:
        raise ValueError(f"--corrupt-std must be >= 0, got {args.corrupt_std}")
    if args.corrupt_level is not None and args.corrupt_level < 0:
        raise ValueError(f"--corrupt-level must be >= 0, got {args.corrupt_level}")
    if args.corrupt_level is not None and args.method != "df":
        raise ValueError(f"--corrupt-level applies to --method df only (the baselines take corrupted "
                         f"observations as clean), got --method {args.method}")


def binomial(successes: np.ndarray) -> tuple[float, float]:
    """Rate and binomial standard error sqrt(p (1 - p) / N) of a (N,) bool array."""
    n = len(successes)
    p = float(np.mean(successes))
    return p, math.sqrt(p * (1 - p) / n)


def run_episodes(policy: Any, episodes: int, batch: int, seed: int, corruption: Any, limit: int,
                 progress: bool = True, record: int = 8) -> dict[str, Any]:
    """Run the episodes; returns cues (E,), outcomes [E], steps (E,), corrupted fractions (E,) and the first
    ``record`` episodes' true positions ``{"episode", "cue", "path" (T, 2), "outcome"}``."""
    from tqdm.auto import tqdm

    from ..data.imitation import cue_of
    from ..envs.cued_maze import CuedMaze, start_position

    k = policy.frame_stack
    cues = np.array([cue_of(e) for e in range(episodes)], np.int64)
    outcomes: list[str] = [""] * episodes
    steps, corrupted = np.zeros(episodes, np.int64), np.zeros(episodes)
    recorded: list[dict[str, Any]] = []
    maze = CuedMaze(min(batch, episodes), limit)
    bar = tqdm(total=episodes, desc=f"imitation {policy.method}", unit="episode", dynamic_ncols=True,
               disable=not progress or not sys.stderr.isatty())
    try:
        for first in range(0, episodes, len(maze.envs)):
            ids = np.arange(first, min(episodes, first + len(maze.envs)))
            if len(ids) < len(maze.envs):
                maze.close()
                maze = CuedMaze(len(ids), limit)
            rngs = [np.random.default_rng([seed, int(e)]) for e in ids]
            starts = np.stack([start_position(r) for r in rngs])
            draws = [corruption.draw(r, limit + k) for r in rngs]
            flags = np.stack([f for f, _ in draws])                                # (b, limit + k + 1)
            noise = np.stack([n for _, n in draws])                                # (b, limit + k + 1, 4)
            obs = maze.reset(cues[ids], starts)
            policy.reset(obs)
            path, t = [obs[:, :2].copy()], 0
            while not maze.done.all() and t < limit:
                act = policy.actions()                                              # (b, k, 2)
                seen, seen_flags = [], []
                for j in range(k):
                    t += 1
                    running = ~maze.done
                    o = maze.step(act[:, j])
                    f = flags[:, t] & running
                    seen.append(corruption.apply(o, f, noise[:, t]))
                    seen_flags.append(f)
                    path.append(maze.state[:, :2].copy())
                policy.observe(np.stack(seen, 1), act, np.stack(seen_flags, 1))
                bar.set_postfix(step=t, done=int(maze.done.sum()))
            path = np.stack(path, 1)                                                # (b, T + 1, 2)
            for i, e in enumerate(ids):
                outcomes[e] = maze.outcome[i] or "timeout"
                steps[e] = maze.steps[i]
                corrupted[e] = flags[i, 1:maze.steps[i] + 1].mean() if maze.steps[i] else 0.0
                if e < record:
                    recorded.append({"episode": int(e), "cue": int(cues[e]), "outcome": outcomes[e],
                                     "path": path[i, :maze.steps[i] + 1]})
            bar.update(len(ids))
    finally:
        bar.close()
        maze.close()
    return {"cues": cues, "outcomes": outcomes, "steps": steps, "corrupted": corrupted, "recorded": recorded}


def tag_of(args: argparse.Namespace) -> str:
    """``<method>[-corrupt<p>][-kc<level>]``."""
    tag = args.method + (f"-corrupt{args.corrupt:g}" if args.corrupt > 0 else "")
    return tag + (f"-kc{args.corrupt_level}" if args.corrupt_level is not None else "")


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate one method; write the results JSON and the PNG; returns their paths."""
    import torch

    from ..envs.cued_maze import EPISODE_LIMIT, GOAL_CELLS, JUNCTION_CELL, MAZE, START_CELL
    from ..pipeline import DiffusionForcingModel
    from ..results import write_result
    from .imitation import Corruption, ImitationPolicy

    check_args(args)
    corruption = Corruption(args.corrupt, args.corrupt_mode, args.corrupt_std)
    model = DiffusionForcingModel.from_pretrained(args.checkpoint, device=torch.device(args.device))
    level = DEFAULT_CORRUPT_LEVEL if args.corrupt_level is None else args.corrupt_level
    policy = ImitationPolicy(model, args.method, corrupt_level=level, steps=args.steps, seed=args.seed)
    limit = args.limit or EPISODE_LIMIT
    tic = time.time()
    out = run_episodes(policy, args.episodes, args.batch, args.seed, corruption, limit, not args.no_progress,
                       record=0 if args.no_plot else 8)
    wall = time.time() - tic
    outcomes = np.array(out["outcomes"])
    ok = outcomes == "success"
    rate, err = binomial(ok)
    metrics = {
        "success_rate": rate, "success_stderr": err, "episodes": args.episodes,
        "wrong_goal_rate": float((outcomes == "wrong_goal").mean()), "timeout_rate": float((outcomes == "timeout").mean()),
        "success_rate_by_cue": {str(c): float(ok[out["cues"] == c].mean()) for c in (1, -1)},
        "steps_to_success_mean": float(out["steps"][ok].mean()) if ok.any() else None,
        "corrupted_step_fraction": float(out["corrupted"].mean()),
        "outcomes": out["outcomes"],
    }
    tag = tag_of(args)
    path = args.out or Path("results/imitation") / f"{tag}.json"
    files: list[Path] = []
    if out["recorded"]:
        files.append(plot_trajectories(out["recorded"], path.with_suffix(".png"),
                                       f"{tag}: success {rate:.2f} ± {err:.2f} (N={args.episodes})"))
    protocol = {
        "checkpoint": str(args.checkpoint), "maze": f"maze2d-{MAZE}", "start_cell": list(START_CELL),
        "goal_cells": {str(c): list(g) for c, g in GOAL_CELLS.items()}, "junction_cell": list(JUNCTION_CELL),
        "episode_limit": limit, "success": "within 0.5 of the cued goal before within 0.5 of the other, within the limit",
        "cues": "episode e: +1 if e even else -1", "batch": args.batch,
        "corruption": {"p": args.corrupt, "mode": args.corrupt_mode, "std": args.corrupt_std,
                       "which": "each observation o_t, t >= 1, independently"},
        **policy.describe(),
    }
    print(f"{tag}: success {rate:.3f} ± {err:.3f} over {args.episodes} episodes "
          f"(wrong goal {metrics['wrong_goal_rate']:.3f}, timeout {metrics['timeout_rate']:.3f})")
    result = write_result(path, metrics, wall_time_s=wall, command=args.command_line,
                          seeds={"episodes": args.seed, "sampling": args.seed}, protocol=protocol,
                          pictures=[str(f) for f in files])
    return [result, *files]


def plot_trajectories(recorded: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Maze walls, start, both goals (A: cue +1, B: cue -1) and the recorded paths coloured by cue;
    failed episodes dashed."""
    from ..envs.cued_maze import GOAL_CELLS, MAZE, START_CELL
    from ..envs.maze2d import GOAL_RADIUS, wall_squares
    from ..plotting import _pyplot, _save, draw_maze

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    draw_maze(ax, wall_squares(MAZE), START_CELL, GOAL_CELLS[1])
    colors = {1: "tab:blue", -1: "tab:orange"}
    for cue, (gx, gy) in GOAL_CELLS.items():
        ax.add_patch(plt.Circle((gy, gx), GOAL_RADIUS, color=colors[cue], alpha=0.25, lw=0))
        ax.plot(gy, gx, "*", color="gold", ms=14, mec="k", zorder=5)
        ax.text(gy + 0.3, gx, "A" if cue > 0 else "B", ha="left", va="center", fontsize=9, weight="bold")
    for r in recorded:
        p = r["path"]
        ax.plot(p[:, 1], p[:, 0], color=colors[r["cue"]], lw=1.2, alpha=0.8,
                ls="-" if r["outcome"] == "success" else "--")
    ax.plot([], [], color=colors[1], label="cue +1 (goal A)")
    ax.plot([], [], color=colors[-1], label="cue -1 (goal B)")
    ax.plot([], [], color="0.3", ls="--", label="failed")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)
