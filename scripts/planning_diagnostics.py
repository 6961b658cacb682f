"""Why a Maze2D planner scores what it scores: plan consistency and behaviour at the goal.

    python scripts/planning_diagnostics.py --checkpoint checkpoints/maze2d_umaze --env maze2d-umaze

Two measurements on held-apart episode seeds (default 1000+, never the test seeds 0-99),
written to ``results/planning/<env>-diagnostics.json``:

* **open-loop consistency**: from each reset, one plan (no replanning); its first 30
  diffused actions are executed open loop and the executed positions compared with the
  planned ones after 10, 20 and 30 steps (maze units), without and with guidance;
* **goal behaviour** under MPC, per method: the step the ball first comes within the
  0.5 reward radius, the fraction of the remaining steps it spends inside it, and its
  mean distance to the goal over those steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dforce.envs.maze2d import EPISODE_LENGTH, GOAL_RADIUS, make, parse_name
from dforce.results import write_result
from dforce.planning import Planner


def reset_all(env_name: str, episodes: int, seed: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Environments reset with seeds seed..seed+E-1: (envs, observations (E, 4), goals (E, 2))."""
    envs = [make(env_name, render_mode=None) for _ in range(episodes)]
    resets = [env.reset(seed=seed + e) for e, env in enumerate(envs)]
    return envs, np.stack([o for o, _ in resets]), np.stack([i["goal"] for _, i in resets])


def open_loop(checkpoint: Path, env_name: str, episodes: int, seed: int, guidance_scale: float) -> dict:
    """Executed-vs-planned position error (mean over episodes) after 10, 20, 30 open-loop steps."""
    envs, obs, goals = reset_all(env_name, episodes, seed)
    planner = Planner.from_pretrained(checkpoint, "df_no_mcg", guidance_scale=guidance_scale, seed=seed)
    plan = planner.plan(obs, goals)
    executed = []
    for j in range(30):
        executed.append(np.stack([env.step(np.clip(plan.actions[i, j], -1, 1))[0][:2] for i, env in enumerate(envs)]))
    error = np.linalg.norm(np.stack(executed, 1) - plan.observations[:, :30, :2], axis=-1)   # (E, 30)
    return {f"error_after_{n}": round(float(error[:, n - 1].mean()), 3) for n in (10, 20, 30)}


def goal_behaviour(checkpoint: Path, env_name: str, method: str, episodes: int, seed: int) -> dict:
    """First arrival, time inside the reward radius after it, and distance after it, under MPC."""
    maze, _ = parse_name(env_name)
    envs, obs, goals = reset_all(env_name, episodes, seed)
    planner = Planner.from_pretrained(checkpoint, method, seed=seed)
    dist = []
    for _ in range(EPISODE_LENGTH[maze]):
        action = planner.act(obs, goals)
        obs = np.stack([env.step(a)[0] for env, a in zip(envs, action)])
        dist.append(np.linalg.norm(obs[:, :2] - goals, axis=-1))
    dist = np.stack(dist, 1)                                                    # (E, T)
    inside = dist < GOAL_RADIUS
    arrived = inside.any(1)
    first = np.where(arrived, inside.argmax(1), -1)
    after = [(inside[e, first[e]:].mean(), dist[e, first[e]:].mean()) for e in range(episodes) if arrived[e]]
    return {"arrived_fraction": float(arrived.mean()),
            "first_arrival_step_mean": float(first[arrived].mean()) if arrived.any() else None,
            "time_inside_after_arrival": float(np.mean([a for a, _ in after])) if after else None,
            "distance_after_arrival": float(np.mean([d for _, d in after])) if after else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--env", default="maze2d-umaze")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--methods", default="df,df_no_mcg,diffuser_pd")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tic = time.time()
    scale = Planner.from_pretrained(args.checkpoint).guidance_scale
    metrics = {"open_loop": {"unguided": open_loop(args.checkpoint, args.env, args.episodes, args.seed, 0.0),
                             "guided": open_loop(args.checkpoint, args.env, args.episodes, args.seed, scale)},
               "goal": {m: goal_behaviour(args.checkpoint, args.env, m, args.episodes, args.seed)
                        for m in args.methods.split(",")}}
    out = args.out or Path("results/planning") / f"{args.env}-diagnostics.json"
    print(write_result(out, metrics, wall_time_s=time.time() - tic, seeds={"episodes": args.seed, "sampling": args.seed},
                       command=["python", "scripts/planning_diagnostics.py", *sys.argv[1:]],
                       checkpoint=str(args.checkpoint), episodes=args.episodes, guidance_scale=scale))
    print(metrics)


if __name__ == "__main__":
    main()
