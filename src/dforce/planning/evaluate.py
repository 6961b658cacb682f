"""`dforce eval planning`: Maze2D episodes with a trained planner; D4RL normalized score (paper Table 1).

Episodes run in batches of ``--batch`` environments stepped in a loop, the planner
batched over them. Episode ``e`` resets its environment with seed ``--seed + e``, so the
starts (and, with ``--multi``, the goals) do not depend on the batch size or the
method. Score per episode = D4RL normalized score of its return; reported as mean ±
standard error (std with ddof=1 over sqrt(episodes)).

Writes ``<out>/<env>[-multi]-<method>.json`` (``--out``, default ``outputs/planning``; ``--record``:
the shipped ``results/planning``), a PNG of up to four
episodes (executed path + every plan) and a GIF of model-predictive control in episode 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import flags
from ..results import add_destination, destination
from .episodes import episode_stats, summary
from .planner import METHODS, PD_GAINS


DEFAULT_OUT = Path("outputs/planning")
RECORD_DIR = Path("results/planning")   # the shipped records: only --record writes there

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval planning`."""
    parser.add_argument("--env", required=True, help="maze2d-umaze, maze2d-medium or maze2d-large (-v1 optional)")
    parser.add_argument("--multi", action="store_true", help="Multi2D: a random goal per episode")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="planner model directory (dforce train configs/maze2d_*.yaml)")
    parser.add_argument("--method", default="df", help=f"one of {', '.join(METHODS)} (default df)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="episode e resets with seed + e; sampling seed")
    parser.add_argument("--batch", type=int, default=50, help="environments stepped together (default 50)")
    parser.add_argument("--replan-every", type=int, default=None, help="env steps executed per plan (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="goal guidance scale (default: the model's)")
    parser.add_argument("--guidance-weighting", choices=("variance", "constant"), default=None,
                        help="guidance push per noise level (default: the model's)")
    parser.add_argument("--guidance-form", choices=("x0", "ddim"), default=None,
                        help="push the x0 estimate (x0) or the next DDIM sample with the paper's per-step constant "
                             "(ddim) (default: the model's)")
    parser.add_argument("--goal-cost", choices=("distance", "squared"), default=None,
                        help="per-frame guidance cost: distance to the goal or its square (default: the model's)")
    parser.add_argument("--rest-weight", type=float, default=None,
                        help="weight of the arrive-at-rest term of the goal cost (planned speed near the goal; "
                             "default: the model's)")
    parser.add_argument("--guidance-clip", type=float, default=None,
                        help="clip each token's guidance gradient to this norm (0: off; default: the model's)")
    parser.add_argument("--mcg-samples", type=int, default=None, help="Monte Carlo Guidance samples (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per token (default: the model's)")
    parser.add_argument("--slope", type=float, default=None, help="pyramid slope (default: the model's)")
    parser.add_argument("--horizon", type=int, default=None, help="maximum plan tokens (default: the training window)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode length (default D4RL's 300/600/800)")
    flags.add_device(parser)
    add_destination(parser, DEFAULT_OUT, RECORD_DIR)   # <out>/<env>[-multi]-<method>.json
    parser.add_argument("--no-pictures", action="store_true", help="skip the PNG and the GIF")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_args(args: argparse.Namespace) -> tuple[str, bool]:
    """(maze, multi) or a ValueError naming the first bad option; needs no checkpoint."""
    from ..envs.maze2d import parse_name

    maze, multi_from_name = parse_name(args.env)
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    for name in ("episodes", "batch", "replan_every", "mcg_samples", "steps", "horizon", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("guidance_scale", "slope", "rest_weight", "guidance_clip"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    return maze, args.multi or multi_from_name


def mean_stderr(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (ddof=1; 0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    err = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), err


def run_episodes(planner, env_name: str, multi: bool, episodes: int, batch: int, seed: int, length: int,
                 progress: bool = True, record: int = 4) -> dict:
    """Run ``episodes`` episodes of ``length`` steps; returns returns (E,), rewards (E, length) and the first
    ``record`` episodes.

    Recorded episodes hold ``trajectory`` (length + 1, 2), ``plans`` [(t, (N, 2))] and ``goal`` (2,).
    """
    from tqdm.auto import tqdm

    from ..envs.maze2d import make

    envs = [make(env_name, multi=multi, max_episode_steps=length, render_mode=None) for _ in range(min(batch, episodes))]
    rewards, recorded = np.zeros((episodes, length)), []
    bar = tqdm(total=math.ceil(episodes / len(envs)) * length, desc=f"{env_name} {planner.method}", unit="step",
               dynamic_ncols=True, disable=not progress or not sys.stderr.isatty())
    try:
        for first in range(0, episodes, len(envs)):
            ids = list(range(first, min(episodes, first + len(envs))))
            live = envs[:len(ids)]
            resets = [env.reset(seed=seed + e) for env, e in zip(live, ids)]
            obs = np.stack([o for o, _ in resets])                                   # (b, 4)
            goal = np.stack([info["goal"] for _, info in resets])                     # (b, 2)
            keep = [i for i, e in enumerate(ids) if e < record]
            planner.keep_history = bool(keep)
            planner.reset()
            path = [obs[:, :2].copy()]
            for t in range(length):
                action = planner.act(obs, goal)
                steps = [env.step(a) for env, a in zip(live, action)]
                obs = np.stack([s[0] for s in steps])
                rewards[ids, t] = [s[1] for s in steps]
                path.append(obs[:, :2].copy())
                bar.update(1)
            path = np.stack(path, 1)                                                   # (b, length + 1, 2)
            for i in keep:
                recorded.append({"episode": ids[i], "trajectory": path[i], "goal": goal[i],
                                 "plans": [(p.t, p.observations[i, :, :2]) for p in planner.history]})
    finally:
        bar.close()
        for env in envs:
            env.close()
    return {"returns": rewards.sum(1), "rewards": rewards, "recorded": recorded}


def run(args: argparse.Namespace) -> list[Path]:
    """Evaluate one method; write the results JSON (and PNG + GIF); returns their paths."""
    from ..envs.maze2d import EPISODE_LENGTH, normalized_score, wall_squares
    from ..pipeline import DiffusionForcingModel
    from ..results import write_result
    from .planner import Planner

    maze, multi = check_args(args)
    env_name = f"maze2d-{maze}"
    model = DiffusionForcingModel.from_pretrained(args.checkpoint, device=args.device)
    trained = model.extra.get("planning", {}).get("maze")
    if trained is not None and trained != maze:
        raise ValueError(f"--checkpoint {str(args.checkpoint)!r} was trained on maze2d-{trained}, not --env {args.env!r}")
    length = EPISODE_LENGTH[maze] if args.max_steps is None else args.max_steps
    planner = Planner(model, args.method, episode_length=length, guidance_scale=args.guidance_scale,
                      guidance_weighting=args.guidance_weighting, guidance_form=args.guidance_form,
                      goal_cost=args.goal_cost, rest_weight=args.rest_weight, guidance_clip=args.guidance_clip,
                      mcg_samples=args.mcg_samples, replan_every=args.replan_every, horizon=args.horizon,
                      steps=args.steps, slope=args.slope, pd_gains=PD_GAINS, seed=args.seed)
    tic = time.time()
    out = run_episodes(planner, env_name, multi, args.episodes, args.batch, args.seed, length,
                       progress=not args.no_progress, record=0 if args.no_pictures else 4)
    wall = time.time() - tic
    scores = normalized_score(env_name, out["returns"])
    score, score_err = mean_stderr(scores)
    stats = episode_stats(out["rewards"])
    stay, stay_err = mean_stderr(normalized_score(env_name, stats["if_stay_return"]))
    ret, ret_err = mean_stderr(out["returns"])
    tag = f"{env_name}{'-multi' if multi else ''}-{args.method}"
    path = destination(args) / f"{tag}.json"
    files: list[Path] = []
    if not args.no_pictures and out["recorded"]:
        files += pictures(out["recorded"], wall_squares(maze), path, tag)
    metrics = {"score_mean": score, "score_stderr": score_err, "return_mean": ret, "return_stderr": ret_err,
               **summary(stats), "if_stay_score_mean": stay, "if_stay_score_stderr": stay_err, "episodes": args.episodes,
               "scores": [round(float(s), 3) for s in scores], "returns": [float(r) for r in out["returns"]]}
    protocol = {"env": env_name, "multi": multi, "checkpoint": str(args.checkpoint), "episode_length": length,
                "full_length_episodes": length == EPISODE_LENGTH[maze], "batch": args.batch,
                "score": "D4RL normalized score 100 (R - ref_min) / (ref_max - ref_min); mean ± stderr (ddof=1)",
                "if_stay_score": "the same score with every step from the first arrival on counted as inside the goal",
                **planner.describe()}
    print(f"{tag}: normalized score {score:.1f} ± {score_err:.1f} over {args.episodes} episodes "
          f"(return {ret:.1f} ± {ret_err:.1f}); reached {metrics['reached_goal_fraction']:.0%}, first arrival "
          f"{metrics['first_arrival_mean']:.0f}, in goal after arrival {metrics['time_in_goal_after_arrival']:.0%}, "
          f"if-stay score {stay:.1f}")
    result = write_result(path, metrics, wall_time_s=wall, command=args.command_line,
                          seeds={"episodes": args.seed, "sampling": args.seed}, protocol=protocol,
                          pictures=[str(f) for f in files])
    return [result, *files]


def pictures(recorded: list[dict], walls: np.ndarray, json_path: Path, tag: str) -> list[Path]:
    """The PNG of recorded episodes and the MPC GIF of the first one, next to ``json_path``."""
    from ..plotting import maze_mpc_frames, plot_maze_episodes

    panels = [{"trajectory": r["trajectory"], "goal": r["goal"], "plans": [p for _, p in r["plans"]],
               "title": f"episode {r['episode']}"} for r in recorded]
    png = plot_maze_episodes(walls, panels, json_path.with_suffix(".png"), title=f"{tag}: executed path and plans")
    files = [png]
    first = recorded[0]
    if first["plans"]:
        import imageio.v2 as imageio

        frames = maze_mpc_frames(walls, first["trajectory"], first["plans"], first["goal"], title=tag)
        gif = json_path.with_name(json_path.stem + "-mpc.gif")
        imageio.mimsave(gif, frames, duration=0.25, loop=0)
        files.append(gif)
    return files
