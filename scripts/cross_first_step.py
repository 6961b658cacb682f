"""Where the cross models' plans go wrong: the direction of the first generated token after a short,
clean context, for each checkpoint (a decomposition of the class fractions of
`dforce eval compositional`).

For each context below, 1000 draws of the next token (autoregressive scheduling, the model's
sampling steps); the step is measured in data steps (a path moves 1/16 per token along each
axis) and sorted into the four diagonal directions. The data's own answer is in ``expected``.

    python scripts/cross_first_step.py df=runs/cross_df/model tf=runs/cross_tf/model \
        --out results/compositional/diagnostics/first-step.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dforce.diffusion import by_name, commit, denoise_chunk
from dforce.pipeline import DiffusionForcingModel
from dforce.results import write_result
from dforce.synthetic.likelihood import parse_checkpoints

STEP = 1 / 16
DIRECTIONS = {"(+,+)": (1, 1), "(+,-)": (1, -1), "(-,+)": (-1, 1), "(-,-)": (-1, -1)}
CONTEXTS = {   # name: (tokens, the data's next-step distribution over DIRECTIONS)
    "corner (1,1)": ([[1.0, 1.0]], {"(-,-)": 1.0}),
    "corner, then one step in": ([[1.0, 1.0], [1 - STEP, 1 - STEP]], {"(-,-)": 1.0}),
    "centre": ([[0.0, 0.0]], {name: 0.25 for name in DIRECTIONS}),
    "one step before the centre, then the centre": ([[STEP, STEP], [0.0, 0.0]], {"(-,-)": 1.0}),
    "halfway (0.5, 0.5)": ([[0.5, 0.5]], {"(+,+)": 0.5, "(-,-)": 0.5}),
}


def first_steps(model: DiffusionForcingModel, tokens: list[list[float]], n: int, seed: int) -> dict:
    """Shares of the four directions and the mean step length (in data steps) of n next-token draws."""
    net, schedule = model.backbone, model.schedule
    context = torch.tensor(tokens, dtype=torch.float32)[None].expand(n, -1, -1)
    g = torch.Generator().manual_seed(seed)
    state = commit(net, schedule, model.normalizer.normalize(context), 0, None, net.init_state(n))
    levels = by_name("autoregressive", 1, model.sampling_cfg.steps, 1.0)
    x = denoise_chunk(net, schedule, levels, torch.randn(n, 1, 2, generator=g), state,
                      target=model.diffusion_cfg.target, generator=g)
    step = (model.normalizer.unnormalize(x)[:, 0] - context[:, -1]) / STEP                  # (n, 2)
    shares = {name: float(((step[:, 0] * dx > 0) & (step[:, 1] * dy > 0)).float().mean())
              for name, (dx, dy) in DIRECTIONS.items()}
    return {"shares": shares, "mean_step_length": float(step.abs().mean()), "draws": n}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="[NAME=]DIR")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/compositional/first-step.json"))
    args = parser.parse_args(argv)
    tic, metrics = time.time(), {}
    for name, path in parse_checkpoints(args.checkpoints).items():
        model = DiffusionForcingModel.from_pretrained(path)
        metrics[name] = {label: {**first_steps(model, tokens, args.draws, args.seed), "expected": expected}
                         for label, (tokens, expected) in CONTEXTS.items()}
    print(write_result(args.out, metrics, wall_time_s=time.time() - tic, seeds=[args.seed],
                       command=["python", "scripts/cross_first_step.py", *argv],
                       protocol={"checkpoints": args.checkpoints, "scheduling": "autoregressive",
                                 "step_unit": "one data step, 1/16 per axis"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
