"""`dforce eval imitation`: success rate of an imitation policy on the cued Maze2D memory task.

Episodes, cues and corruption draws: :mod:`.episodes`. Success = within 0.5 of the cued
goal before within 0.5 of the other one, within ``--limit`` steps (default
:data:`~dforce.imitation.maze.EPISODE_LIMIT`); reported with its 95% Wilson interval.

The policy is told which observations are corrupted (flagged) unless ``--unflagged``; what
each method does with the flags: :mod:`.policy`. ``--matrix`` runs every corruption kind x
rate x flagged/unflagged x method instead (:mod:`.matrix`).

Writes ``outputs/imitation/<tag>.json`` (``--out``; ``--record`` writes the project's
``results/imitation/`` instead) and a PNG of a few trajectories beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .. import flags
from .corruption import KINDS, Corruption
from .policy import METHODS

DEFAULT_OUT = Path("outputs/imitation")
RECORD_DIR = Path("results/imitation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval imitation`."""
    from .matrix import add_matrix_arguments

    parser.add_argument("--method", help=f"one of {', '.join(METHODS)} (not with --matrix)")
    parser.add_argument("--checkpoint", help="model directory or zoo name (dforce train configs/imitation_<method>.yaml)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes, half per cue (default 200; 500 with --matrix)")
    parser.add_argument("--corrupt", type=float, default=0.0,
                        help="probability that an observation after the first is corrupted (default 0)")
    parser.add_argument("--corrupt-mode", choices=KINDS, default=None,
                        help="gaussian (default): add N(0, std^2) to position and velocity; zeros: occlude them; "
                             "hold: repeat the last value seen; outlier: values outside the maze")
    parser.add_argument("--corrupt-std", type=float, default=None, help="gaussian corruption std in maze units (default 1)")
    parser.add_argument("--unflagged", action="store_true", help="do not tell the policy which observations are corrupted")
    parser.add_argument("--corrupt-level", type=int, default=None,
                        help="df: level of committed tokens with a flagged step (default 0 with unknown-step inputs, "
                             "else 150)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per token (default: the model's)")
    parser.add_argument("--limit", type=int, default=None, help="episode limit in steps (default 435)")
    parser.add_argument("--seed", type=int, default=None,
                        help="episode e uses default_rng([seed, e]); sampling seed (default 0; 40000 with --matrix)")
    parser.add_argument("--batch", type=int, default=200, help="episodes run together (default 200)")
    flags.add_device(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None,
                       help=f"results JSON (default {DEFAULT_OUT}/<tag>.json; a directory with --matrix)")
    where.add_argument("--record", action="store_true", help=f"write the project's records in {RECORD_DIR}/")
    parser.add_argument("--no-plot", action="store_true", help="skip the picture")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_matrix_arguments(parser)


def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the first bad option; needs no checkpoint."""
    for name in ("episodes", "batch", "steps", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if args.corrupt_level is not None and args.corrupt_level < 0:
        raise ValueError(f"--corrupt-level must be >= 0, got {args.corrupt_level}")
    if args.matrix:
        single = [f"--{n.replace('_', '-')}" for n in ("corrupt_mode", "corrupt_std") if getattr(args, n) is not None]
        single += ["--corrupt"] * (args.corrupt != 0) + ["--unflagged"] * args.unflagged
        if single:
            raise ValueError(f"{', '.join(single)} set one cell; --matrix runs every kind and rate (--kinds, --rates)")
        return
    args.corrupt_mode = args.corrupt_mode or "gaussian"
    args.corrupt_std = 1.0 if args.corrupt_std is None else args.corrupt_std
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    if not args.checkpoint:
        raise ValueError("--checkpoint is required (a model directory or zoo name), or use --matrix")
    if not 0 <= args.corrupt <= 1:
        raise ValueError(f"--corrupt must lie in [0, 1], got {args.corrupt}")
    if args.corrupt_level is not None and args.method != "df":
        raise ValueError(f"--corrupt-level applies to --method df only (the baselines hold the last good "
                         f"observation), got --method {args.method}")
    Corruption(args.corrupt, args.corrupt_mode, args.corrupt_std)        # validates the std


def tag_of(args: argparse.Namespace, corruption: Corruption) -> str:
    """``<method>[-<kind><p>[-unflagged]][-kc<level>]``."""
    tag = args.method
    if corruption.p > 0:
        tag += f"-{corruption.label}-p{corruption.p:g}" + ("-unflagged" if args.unflagged else "")
    return tag + (f"-kc{args.corrupt_level}" if args.corrupt_level is not None else "")


def load_model(checkpoint: str | Path, device: Any) -> Any:
    """A :class:`~dforce.pipeline.DiffusionForcingModel` from a model directory or zoo name, on ``device``."""
    from ..pipeline import DiffusionForcingModel

    return DiffusionForcingModel.from_pretrained(checkpoint, device=device)


def load_policy(checkpoint: str | Path, method: str, device: Any, *, corrupt_level: int | None = None,
                steps: int | None = None, seed: int = 0) -> Any:
    """An :class:`~.policy.ImitationPolicy` from a model directory or zoo name."""
    from .policy import ImitationPolicy

    return ImitationPolicy(load_model(checkpoint, device), method, corrupt_level=corrupt_level, steps=steps, seed=seed)


def protocol(limit: int, batch: int) -> dict[str, Any]:
    """The task's fixed protocol, as recorded."""
    from .maze import GOAL_CELLS, JUNCTION_CELL, MAZE, START_CELL

    return {"maze": f"maze2d-{MAZE}", "start_cell": list(START_CELL),
            "goal_cells": {str(c): list(g) for c, g in GOAL_CELLS.items()}, "junction_cell": list(JUNCTION_CELL),
            "episode_limit": limit, "success": "within 0.5 of the cued goal before within 0.5 of the other, within the limit",
            "cues": "episode e: +1 if e even else -1", "episode_stream": "default_rng([seed, e])", "batch": batch,
            "interval": "95% Wilson score interval"}


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate one method (or, with ``--matrix``, the matrix); write the results JSON and the picture."""
    from ..results import write_result
    from .episodes import run_episodes
    from .figure import plot_trajectories
    from .maze import EPISODE_LIMIT

    check_args(args)
    if args.matrix:
        from .matrix import run_matrix

        return run_matrix(args)
    args.seed = 0 if args.seed is None else args.seed
    args.episodes = 200 if args.episodes is None else args.episodes
    corruption = Corruption(args.corrupt, args.corrupt_mode, args.corrupt_std)
    policy = load_policy(args.checkpoint, args.method, args.device, corrupt_level=args.corrupt_level,
                         steps=args.steps, seed=args.seed)
    limit = EPISODE_LIMIT if args.limit is None else args.limit
    tic = time.time()
    out = run_episodes(policy, args.episodes, args.batch, args.seed, corruption, limit, flagged=not args.unflagged,
                       progress=not args.no_progress, record=0 if args.no_plot else 8)
    wall = time.time() - tic
    summary = out.summary()
    tag = tag_of(args, corruption)
    path = RECORD_DIR / f"{tag}.json" if args.record else args.out or DEFAULT_OUT / f"{tag}.json"
    files: list[Path] = []
    if out.recorded:
        lo, hi = summary["ci95"]
        files.append(plot_trajectories(out.recorded, path.with_suffix(".png"),
                                       f"{tag}: success {summary['success']:.2f} [{lo:.2f}, {hi:.2f}] (N={args.episodes})"))
    setting = {"checkpoint": str(args.checkpoint), **protocol(limit, args.batch),
               "corruption": {"p": args.corrupt, "kind": args.corrupt_mode, "std": args.corrupt_std,
                              "flagged": not args.unflagged, "which": "each observation o_t, t >= 1, independently"},
               **policy.describe()}
    print(f"{tag}: success {summary['success']:.3f} [{summary['ci95'][0]:.3f}, {summary['ci95'][1]:.3f}] over "
          f"{args.episodes} episodes (wrong goal {summary['wrong_goal_rate']:.3f}, timeout {summary['timeout_rate']:.3f})")
    result = write_result(path, {**summary, "outcomes": out.outcomes}, wall_time_s=wall, command=args.command_line,
                          seeds={"episodes": args.seed, "sampling": args.seed}, protocol=setting,
                          pictures=[str(f) for f in files])
    return [result, *files]
