"""Monte Carlo Guidance: its samples in one batched model call vs one call per sample.

``python -m benchmarks.guidance`` plans like the Maze2D planner (GRU of width 128, depth 2,
60-dimensional tokens, pyramid scheduling, a goal cost on the predicted clean plan) with
``MonteCarloGuidance(samples=8)`` and times the same plan two ways, interleaved in one
run: ``batched`` (the backbone tiles its state with ``repeat_state`` and every sample goes
through one call of batch ``samples * B``) and ``sequential`` (the same backbone with
``repeat_state`` hidden, one call and one backward per sample). Both give the same plan
(checked here to float tolerance). Prints the speed-up per case and writes
``results/bench/guidance.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dforce.diffusion import MonteCarloGuidance, NoiseSchedule, pyramid, sample
from dforce.models import GRUDenoiser
from dforce.results import git_commit, hardware

DEFAULT_OUT = Path("results/bench/guidance.json")
CONFIG = {"token_dim": 60, "width": 128, "depth": 2, "levels": 1000, "steps": 20, "samples": 8,
          "cases": [{"batch": 1, "tokens": 30}, {"batch": 10, "tokens": 30}, {"batch": 10, "tokens": 60},
                    {"batch": 50, "tokens": 60}],
          "reps": 3}


class Sequential(torch.nn.Module):
    """The backbone without ``repeat_state``: Monte Carlo samples then run one after another."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def init_state(self, batch: int) -> Any:
        return self.net.init_state(batch)

    def forward_chunk(self, x, k, cond, state):
        return self.net.forward_chunk(x, k, cond, state)

    def append(self, x, k, cond, state):
        return self.net.append(x, k, cond, state)


def plan(net: torch.nn.Module, schedule: NoiseSchedule, batch: int, tokens: int, cfg: dict[str, Any]) -> torch.Tensor:
    """One guided plan (batch, tokens, token_dim): goal cost on the first two features of every token."""
    goal = torch.ones(batch, 1, 2)
    guidance = MonteCarloGuidance(lambda x0: ((x0[..., :2] - goal) ** 2).sum((1, 2)), 0.5, cfg["samples"])
    return sample(net, schedule, pyramid(tokens, cfg["steps"], 1.0), batch=batch, token_shape=(cfg["token_dim"],),
                  guidance=guidance, generator=torch.Generator().manual_seed(0))


def time_case(nets: dict[str, torch.nn.Module], schedule: NoiseSchedule, case: dict[str, int],
              cfg: dict[str, Any]) -> dict[str, Any]:
    """Interleaved timings (median of ``reps``) of both variants on one case, plus their agreement."""
    times: dict[str, list[float]] = {name: [] for name in nets}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(cfg["reps"]):
        for name, net in nets.items():
            tic = time.perf_counter()
            outs[name] = plan(net, schedule, case["batch"], case["tokens"], cfg)
            times[name].append(time.perf_counter() - tic)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {**case, "median_s": median, "speedup": median["sequential"] / median["batched"],
            "max_abs_diff": float((outs["batched"] - outs["sequential"]).abs().max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.guidance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="the first two cases, one repetition")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = dict(CONFIG, cases=CONFIG["cases"][:2], reps=1) if args.quick else dict(CONFIG)
    torch.manual_seed(0)
    net = GRUDenoiser(cfg["token_dim"], 0, cfg["width"], cfg["depth"], cfg["levels"]).eval()
    nets = {"batched": net, "sequential": Sequential(net)}
    schedule = NoiseSchedule.make(cfg["levels"])
    start, rows = time.perf_counter(), []
    for case in cfg["cases"]:
        rows.append(time_case(nets, schedule, case, cfg))
        r = rows[-1]
        print(f"B={r['batch']:>3} tokens={r['tokens']:>3}: batched {r['median_s']['batched']:.2f}s, "
              f"sequential {r['median_s']['sequential']:.2f}s, speed-up {r['speedup']:.2f}x "
              f"(max |diff| {r['max_abs_diff']:.1e})")
    report = {"benchmark": "Monte Carlo Guidance batching", "command": shlex.join([sys.executable, "-m",
                                                                                  "benchmarks.guidance", *(argv or sys.argv[1:])]),
              "git_commit": git_commit(), "hardware": hardware(), "threads": args.threads, "config": cfg,
              "cases": rows, "wall_time_s": time.perf_counter() - start,
              "seeds": {"model_init": 0, "sampling": 0}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
