"""The shipped Maze2D planners on Farama's PointMaze, through the D4RL-frame adapter and without it.

    OMP_NUM_THREADS=1 python scripts/farama_pointmaze.py            # 10 episodes per env, seeds 1000+

For each env (default ``PointMaze_UMaze-v3`` and ``PointMaze_Medium-v3``) the planner of the same
maze (``checkpoints/maze2d_<maze>``, method ``df_no_mcg`` by default) runs ``--episodes``
episodes of the env's own length (300 / 600 steps), episode ``e`` reset with seed ``--seed + e``
(Farama draws the goal and start cells), all episodes stepped together with the planner batched
over them. Success: Farama's ``info["success"]`` (within 0.45 of the goal) at any step. Each env
is run twice with the same resets and sampling seed: through :class:`dforce.planning.farama.D4RLFrame`
(``adapter``) and fed Farama's raw observation, goal and action frame (``unadapted``).
Writes ``results/planning/farama-pointmaze.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dforce.planning import Planner
from dforce.planning.farama import dforce_maze, make_pointmaze
from dforce.results import write_result
from dforce.stats import wilson

FEEDS = ("adapter", "unadapted")


def reset(envs: list, seed: int, adapted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reset env ``e`` with ``seed + e``: observations (E, 4) and goals (E, 2) in the frame the planner is fed."""
    resets = [env.reset(seed=seed + e) for e, env in enumerate(envs)]
    return read(resets, adapted)


def read(outcomes: list, adapted: bool) -> tuple[np.ndarray, np.ndarray]:
    """(E, 4) observations and (E, 2) goals from ``(obs, ..., info)`` tuples: the adapter's, or Farama's dict as is."""
    if adapted:
        return np.stack([o[0] for o in outcomes]), np.stack([o[-1]["goal"] for o in outcomes])
    return (np.stack([o[0]["observation"] for o in outcomes]),
            np.stack([o[0]["desired_goal"] for o in outcomes]))


def run_feed(env_id: str, feed: str, args: argparse.Namespace) -> dict:
    """Episodes of one env fed one way: success per episode (E,) and the first successful step."""
    maze = dforce_maze(env_id)
    adapted = feed == "adapter"
    envs = [make_pointmaze(env_id, adapt=adapted) for _ in range(args.episodes)]
    length = envs[0].spec.max_episode_steps                                       # Farama's own: 300 / 600 / 800
    planner = Planner.from_pretrained(args.checkpoints / f"maze2d_{maze}", args.method, episode_length=length,
                                      seed=args.seed)
    obs, goal = reset(envs, args.seed, adapted)
    planner.reset()
    first = np.full(args.episodes, -1)
    for t in range(length):
        action = planner.act(obs, goal)                                           # (E, 2)
        outcomes = [env.step(a) for env, a in zip(envs, action)]
        obs, goal = read(outcomes, adapted)                                       # goals re-read: Farama may move them
        success = np.array([o[-1]["success"] for o in outcomes])
        first[(first < 0) & success] = t + 1
    for env in envs:
        env.close()
    reached = first > 0
    lo, hi = wilson(int(reached.sum()), len(reached))
    return {"success_fraction": float(reached.mean()), "successes": int(reached.sum()), "episodes": args.episodes,
            "success_wilson95": [round(lo, 3), round(hi, 3)],
            "first_success_step_mean": float(first[reached].mean()) if reached.any() else None,
            "success_per_episode": reached.astype(int).tolist(), "planner": planner.describe()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="PointMaze_UMaze-v3,PointMaze_Medium-v3", help="comma-separated Farama ids")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per env and feed (default 10)")
    parser.add_argument("--seed", type=int, default=1000, help="episode e resets with seed + e; sampling seed")
    parser.add_argument("--method", default="df_no_mcg", help="planner method (default df_no_mcg)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="holds maze2d_<maze>/")
    parser.add_argument("--out", type=Path, default=Path("results/planning/farama-pointmaze.json"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    env_ids = args.envs.split(",")
    for env_id in env_ids:
        dforce_maze(env_id)                                                       # fail before any episode
    tic, metrics = time.time(), {}
    for env_id in env_ids:
        metrics[env_id] = {}
        for feed in FEEDS:
            start = time.time()
            m = run_feed(env_id, feed, args)
            metrics[env_id]["planner"] = m.pop("planner")                         # the same for both feeds
            m["wall_time_s"] = round(time.time() - start, 1)
            metrics[env_id][feed] = m
            print(f"{env_id} {feed}: {m['successes']}/{m['episodes']} reached the goal ({m['wall_time_s']} s)",
                  flush=True)
    protocol = {"method": args.method, "episodes_per_env": args.episodes,
                "success": "Farama info['success'] (||achieved - desired goal|| <= 0.45) at any step after reset",
                "adapter": "dforce.planning.farama.D4RLFrame: observations, goal and actions in D4RL Maze2D's frame",
                "unadapted": "planner fed Farama's observation['observation'] and ['desired_goal'], actions as given",
                "env_kwargs": "registered defaults (sparse reward, continuing_task=True, reset_target=False)"}
    print(write_result(args.out, metrics, wall_time_s=time.time() - tic,
                       seeds={"episodes": args.seed, "sampling": args.seed},
                       command=["python", "scripts/farama_pointmaze.py", *argv], protocol=protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
