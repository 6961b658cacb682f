"""Why a planner leaves the goal: what its plans say after the first arrival, and what the ball does.

    python scripts/planning_after_arrival.py --checkpoint checkpoints/maze2d_medium --env maze2d-medium \\
        --guidance-form ddim --guidance-scale 8 --rest-weight 0.3 --replan-every 5 --steps 50

On held-apart episode seeds (default 1000+), with ``df_no_mcg`` and any planner overrides, for
every plan made after an episode's first arrival inside the 0.5 reward radius: does the plan
itself leave the radius over the steps it executes, does the executed ball, and how fast does
the plan move (maze units per second; the simulator clips speeds near 5). Writes
``results/planning/diagnostics/<env>-after-arrival.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dforce.envs.maze2d import EPISODE_LENGTH, GOAL_RADIUS, make, parse_name
from dforce.planning import Planner
from dforce.planning.episodes import episode_stats
from dforce.results import write_result

OVERRIDES = {"guidance_form": str, "guidance_scale": float, "rest_weight": float, "guidance_clip": float,
             "replan_every": int, "steps": int}


def run(planner: Planner, env_name: str, episodes: int, seed: int) -> tuple[np.ndarray, list]:
    """Executed positions (E, T, 2), goals (E, 2) and the plans made, from seeds seed..seed+E-1."""
    maze, _ = parse_name(env_name)
    envs = [make(env_name, render_mode=None) for _ in range(episodes)]
    resets = [env.reset(seed=seed + e) for e, env in enumerate(envs)]
    obs, goals = np.stack([o for o, _ in resets]), np.stack([i["goal"] for _, i in resets])
    planner.reset()
    positions = []
    for _ in range(EPISODE_LENGTH[maze]):
        action = planner.act(obs, goals)
        obs = np.stack([env.step(a)[0] for env, a in zip(envs, action)])
        positions.append(obs[:, :2])
    return np.stack(positions, 1), goals, planner.history


def after_arrival(positions: np.ndarray, goals: np.ndarray, plans: list, every: int) -> dict:
    """Per arrived episode, over the plans made after its first arrival: leaving fractions and planned speed."""
    dist = np.linalg.norm(positions - goals[:, None], axis=-1)                    # (E, T)
    arrival = episode_stats(dist <= GOAL_RADIUS)["first_arrival"]               # (E,) 1-based, NaN if never
    rows = []
    for e in range(len(goals)):
        if np.isnan(arrival[e]):
            continue
        first = int(arrival[e]) - 1
        later = [p for p in plans if p.t > first]
        if not later:
            continue
        plan_out = [np.linalg.norm(p.observations[e, :every, :2] - goals[e], axis=-1).max() > GOAL_RADIUS for p in later]
        ball_out = [dist[e, p.t:p.t + every].max() > GOAL_RADIUS for p in later]
        speed = [np.linalg.norm(p.observations[e, :every, 2:4], axis=-1).max() for p in later]
        rows.append({"episode": e, "first_arrival": first + 1, "plans": len(later),
                     "plan_leaves_fraction": float(np.mean(plan_out)), "ball_leaves_fraction": float(np.mean(ball_out)),
                     "planned_speed_max": float(np.max(speed)), "planned_speed_median": float(np.median(speed))})
    mean = (lambda key: float(np.mean([r[key] for r in rows])) if rows else None)  # noqa: E731
    return {"arrived": len(rows), "episodes": len(goals), "plan_leaves_fraction": mean("plan_leaves_fraction"),
            "ball_leaves_fraction": mean("ball_leaves_fraction"),
            "planned_speed_max": float(max(r["planned_speed_max"] for r in rows)) if rows else None,
            "planned_speed_median": mean("planned_speed_median"), "per_episode": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--env", default="maze2d-umaze")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000)
    for name, kind in OVERRIDES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    planner = Planner.from_pretrained(args.checkpoint, "df_no_mcg", seed=args.seed, keep_history=True, **overrides)
    tic = time.time()
    positions, goals, plans = run(planner, args.env, args.episodes, args.seed)
    metrics = after_arrival(positions, goals, plans, planner.replan_every)
    out = args.out or Path("results/planning/diagnostics") / f"{args.env}-after-arrival.json"
    print(write_result(out, metrics, wall_time_s=time.time() - tic, seeds={"episodes": args.seed, "sampling": args.seed},
                       command=["python", "scripts/planning_after_arrival.py", *sys.argv[1:]],
                       protocol=planner.describe()))
    print({k: v for k, v in metrics.items() if k != "per_episode"})


if __name__ == "__main__":
    main()
