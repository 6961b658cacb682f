"""How fast the cross models' trajectories move after the replan at the centre: the mean step
length at every token, in data steps, of `dforce eval compositional` trajectories sampled with a
one-token context on validation seeds (a decomposition of the class fractions).

An exact model moves one data step per token everywhere. The first token after the centre is
the hardest (four directions meet there); what follows shows whether a model recovers from a
short step of its own or keeps it.

    python scripts/cross_step_lengths.py df=checkpoints/cross_df tf=checkpoints/cross_tf \
        --out results/compositional/diagnostics/step-lengths.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from dforce.results import write_result
from dforce.synthetic.compositional import SPLITS, Sampler, load, mpc, sampling_seed, start_corners
from dforce.synthetic.likelihood import parse_checkpoints


def step_lengths(traj: torch.Tensor) -> list[float]:
    """Mean step length per token of trajectories (N, T, 2), in data steps (2 sqrt(2) / (T - 1)): (T - 1,)."""
    unit = 2 * math.sqrt(2) / (traj.shape[1] - 1)
    return [round(float(v), 4) for v in ((traj[:, 1:] - traj[:, :-1]).norm(dim=-1) / unit).mean(0)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="[NAME=]DIR")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--context", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("outputs/compositional/step-lengths.json"))
    args = parser.parse_args(argv)
    tic, metrics, seeds = time.time(), {}, {}
    for i, (name, path) in enumerate(parse_checkpoints(args.checkpoints).items()):
        model, data = load(name, path)
        length, execute = data.length, (data.length - 1) // 2
        start_seed, start = start_corners(data, args.samples, length, SPLITS["val"])
        sampler = Sampler.of(model, None)
        seed = sampling_seed(SPLITS["val"], i, 0)         # as `eval compositional --split val` samples mode 0
        traj = mpc(sampler, start, length, None, execute, args.context, torch.Generator().manual_seed(seed))
        steps = step_lengths(traj)
        metrics[name] = {"scheduling": sampler.scheduling, "step_length_by_token": steps,
                         "after_centre": steps[execute:], "replan_token": execute}
        seeds[name] = {"start_corners": start_seed, "sampling": seed}
    print(write_result(args.out, metrics, wall_time_s=time.time() - tic, seeds=seeds,
                       command=["python", "scripts/cross_step_lengths.py", *argv],
                       protocol={"checkpoints": args.checkpoints, "context": args.context, "split": "val",
                                 "samples": args.samples, "step_unit": "one data step, 2 sqrt(2) / (T - 1)"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
