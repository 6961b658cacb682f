"""``dforce data maze2d``: regenerate (or load from the cache) a D4RL Maze2D dataset; ``--check`` compares
its statistics with the real D4RL file's and writes ``<out>/<maze>.json`` (default ``outputs/maze2d_data/``;
``--record``: the shipped ``results/maze2d_data/``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..envs.maze2d import DATASET_STEPS, MAZES
from ..results import add_destination, destination


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce data maze2d`."""
    parser.add_argument("--maze", choices=MAZES, default="umaze", help="which maze (default umaze)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps to generate (default D4RL's: " +
                             ", ".join(f"{m} {n:,}" for m, n in DATASET_STEPS.items()) + ")")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="cache directory (default $XDG_CACHE_HOME/dforce/maze2d)")
    parser.add_argument("--check", action="store_true",
                        help="compare statistics with the real D4RL file's; writes results/maze2d_data/<maze>.json")
    add_destination(parser, Path("outputs/maze2d_data"), Path("results/maze2d_data"))   # --check: <out>/<maze>.json
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_table(rows: list[dict]) -> str:
    """The ``check`` rows as an aligned text table with PASS/FAIL."""
    lines = [f"{'statistic':<16} {'value':>9} {'reference':>9} {'tolerance':>10}  result"]
    for r in rows:
        lines.append(f"{r['stat']:<16} {r['value']:>9.4f} {r['reference']:>9.4f} {r['tolerance']:>10}  "
                     f"{'PASS' if r['pass'] else 'FAIL'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> list[Path]:
    """Generate or load the dataset; with ``--check`` print the comparison and write the results JSON."""
    from ..data.maze2d import (
        GENERATOR_VERSION, REFERENCE_STATS, TOLERANCES, cache_path, check, dataset_stats, load_or_generate,
    )
    from ..results import write_result

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    path = cache_path(args.maze, args.data_dir, args.steps, args.seed)
    cached = path.exists()
    tic = time.time()
    data = load_or_generate(args.maze, args.data_dir, args.steps, args.seed, progress=not args.no_progress)
    wall = time.time() - tic
    steps = len(data["observations"])
    print(f"maze2d-{args.maze}: {steps:,} steps {'loaded from' if cached else 'generated into'} {path}"
          + ("" if cached else f" in {wall:.1f} s ({steps / max(wall, 1e-9):,.0f} steps/s)"))
    if not args.check:
        return [path]
    rows = check(data, args.maze)
    print(format_table(rows))
    passed = all(r["pass"] for r in rows)
    print(f"{sum(r['pass'] for r in rows)}/{len(rows)} statistics within tolerance: {'PASS' if passed else 'FAIL'}")
    out = destination(args) / f"{args.maze}.json"
    metrics = {"pass": passed, "rows": rows, "stats": dataset_stats(data)}
    result = write_result(out, metrics, wall_time_s=wall, seeds={"generation": args.seed},
                          command=getattr(args, "command_line", None), maze=args.maze, steps=steps,
                          dataset=str(path), loaded_from_cache=cached, generator_version=GENERATOR_VERSION,
                          reference=REFERENCE_STATS[args.maze],
                          tolerances={k: {"kind": kind, "tol": tol} for k, (kind, tol) in TOLERANCES.items()})
    return [path, result]
