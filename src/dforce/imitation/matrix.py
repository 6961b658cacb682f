"""`dforce eval imitation --matrix`: every corruption kind x rate x flagged/unflagged x method.

Cells: for each method (``df``, ``teacher_forcing``, ``memoryless``; one checkpoint each),
the clean run, and for each kind (gaussian std 0.5 / 1 / 2, zeros, hold, outlier) and rate
(0.1, 0.3, 0.5, 0.7) a flagged and an unflagged run, all on the same episodes
(``--seed``, default 40000, and ``--episodes``, default 500: the record's protocol; seeds
no choice was ever made on).

A flagged cell of a method whose flags hide the corrupted values (``df`` with unknown-step
inputs blanks them; the baselines hold the last good observation) cannot depend on the
kind: the policy never sees what the corruption put there, and every kind corrupts the
same steps (:mod:`.corruption`). Those cells are run once per rate, on the first kind,
and the others say ``same_run_as``; a test checks the invariance.

Each run is cached in ``<out>/matrix-cells/`` with the settings that produced it (the
checkpoint and its weights' sha256, episodes, seed, batch, steps, limit, level; not the code
or the device: remove the folder after changing how a policy acts), so an interrupted matrix resumes, and disjoint ``--methods`` can run in parallel processes into
one ``--out``; a last call with all methods assembles ``<out>/matrix.json`` (``metrics.cells``:
``{kind, rate, flagged, method, success, ci95, episodes, ...}``, and ``metrics.targets``:
flagged ``df`` against the targets and the baselines) and the figure ``<out>/matrix.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .corruption import Corruption, parse_kind
from .policy import METHODS

KINDS = "gaussian0.5,gaussian1,gaussian2,zeros,hold,outlier"
RATES = "0.1,0.3,0.5,0.7"
CHECKPOINTS = {"df": "imitation-df", "teacher_forcing": "imitation-teacher-forcing", "memoryless": "imitation-memoryless"}
TEST_SEED = 40000                      # the record's episodes (the 200-episode pilot used 30000)
EPISODES = 500
TARGETS = {0.3: 0.90, 0.5: 0.75}       # flagged df success, every kind
BEAT_FROM = 0.3                        # flagged df beats the baselines in every cell with rate >= this


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--matrix`` options of `dforce eval imitation`."""
    m = parser.add_argument_group("matrix")
    m.add_argument("--matrix", action="store_true", help="run the corruption matrix (every kind, rate, flag, method)")
    m.add_argument("--checkpoints", nargs="+", metavar="METHOD=DIR", default=None,
                   help="one model per method (default: the zoo's " + ", ".join(CHECKPOINTS.values()) + ")")
    m.add_argument("--methods", default=",".join(METHODS), help=f"comma list (default {','.join(METHODS)})")
    m.add_argument("--kinds", default=KINDS, help=f"comma list of corruption kinds (default {KINDS})")
    m.add_argument("--rates", default=RATES, help=f"comma list of corruption rates in (0, 1] (default {RATES})")


# ---- inputs ---------------------------------------------------------------------------------

def parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            rate = float("nan")
        if not 0 < rate <= 1:
            raise ValueError(f"--rates must be numbers in (0, 1], got {part!r}")
        rates.append(rate)
    return sorted(set(rates))


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",")]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods must be a comma list of {', '.join(METHODS)}, got {text!r}")
    return list(dict.fromkeys(methods))


def parse_checkpoints(items: list[str] | None, methods: list[str]) -> dict[str, str]:
    chosen = dict(CHECKPOINTS)
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or name not in METHODS or not path:
            raise ValueError(f"--checkpoints takes METHOD=DIR with METHOD one of {', '.join(METHODS)}, got {item!r}")
        chosen[name] = path
    return {m: chosen[m] for m in methods}


# ---- cells ----------------------------------------------------------------------------------

def cell_name(method: str, corruption: Corruption, flagged: bool) -> str:
    """``df-clean`` or ``df-zeros-p0.3-flagged``: one cached run."""
    if corruption.p == 0:
        return f"{method}-clean"
    return f"{method}-{corruption.label}-p{corruption.p:g}-{'flagged' if flagged else 'unflagged'}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings(args: argparse.Namespace, checkpoint: str, weights_sha: str, limit: int) -> dict[str, Any]:
    """What a cached run depends on besides its cell."""
    return {"checkpoint": checkpoint, "weights_sha256": weights_sha, "episodes": args.episodes, "seed": args.seed,
            "batch": args.batch, "steps": args.steps, "limit": limit, "corrupt_level": args.corrupt_level}


def run_cell(policy_factory: Any, corruption: Corruption, flagged: bool, key: dict[str, Any], path: Path,
             progress: bool, command: list[str]) -> dict[str, Any]:
    """The cached run at ``path`` if its settings match ``key``, else run it and cache it (with its provenance)."""
    from .. import atomic
    from ..results import git_commit, hardware
    from .episodes import run_episodes

    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == key:
            return cached
    policy = policy_factory()
    tic = time.time()
    out = run_episodes(policy, key["episodes"], key["batch"], key["seed"], corruption, key["limit"],
                       flagged=flagged, progress=progress, record=0)
    cell = {"settings": key, "summary": out.summary(), "wall_time_s": round(time.time() - tic, 2),
            "outcomes": "".join(o[0] for o in out.outcomes), "policy": policy.describe(),
            "command": " ".join(command), "git_commit": git_commit(), "hardware": hardware()}
    atomic.write_text(path, json.dumps(cell, indent=1) + "\n")
    print(f"{path.stem}: success {cell['summary']['success']:.3f} ({cell['wall_time_s']:.0f} s)", flush=True)
    return cell


def plan(kinds: list[Corruption], rates: list[float], flag_hides_values: bool) -> list[tuple[Corruption, bool, Corruption]]:
    """The cells of one method: (corruption, flagged, the corruption actually run: the first kind's at that
    rate for a flagged cell whose values are hidden, else the cell's own)."""
    cells = [(Corruption(0.0), False, Corruption(0.0))]
    for rate in rates:
        first = Corruption(rate, kinds[0].kind, kinds[0].std)
        for kind in kinds:
            c = Corruption(rate, kind.kind, kind.std)
            cells += [(c, True, first if flag_hides_values else c), (c, False, c)]
    return cells


def method_cells(args: argparse.Namespace, method: str, checkpoint: str, kinds: list[Corruption], rates: list[float],
                 cache: Path, limit: int) -> list[dict[str, Any]]:
    """Every cell of one method, run or read from the cache."""
    from ..zoo import resolve
    from .evaluate import load_model
    from .policy import ImitationPolicy

    weights = resolve(checkpoint) / "model.safetensors"
    key = settings(args, checkpoint, file_sha256(weights), limit)
    model = load_model(checkpoint, args.device)          # loaded once; a policy only reads it

    def factory() -> Any:                                # a fresh policy (and sampling stream) per cell
        return ImitationPolicy(model, method, corrupt_level=args.corrupt_level, steps=args.steps, seed=args.seed)

    hides = factory().flag_use in ("blank", "hold")

    rows = []
    for corruption, flagged, source in plan(kinds, rates, hides):
        name = cell_name(method, source, flagged)
        cell = run_cell(factory, source, flagged, key, cache / f"{name}.json", not args.no_progress, args.command_line)
        rows.append({"kind": corruption.label if corruption.p > 0 else "none", "rate": corruption.p,
                     "flagged": flagged, "method": method, **cell["summary"],
                     "same_run_as": name if source != corruption else None, "wall_time_s": cell["wall_time_s"]})
    return rows


# ---- verdicts -------------------------------------------------------------------------------

def targets(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Flagged df against the success targets and against every baseline cell of the same kind and rate."""
    by = {(c["method"], c["kind"], c["rate"], c["flagged"]): c for c in cells}
    checks, beats = [], []
    for c in cells:
        if c["method"] != "df" or not c["flagged"]:
            continue
        if c["rate"] in TARGETS:
            need = TARGETS[c["rate"]]
            checks.append({"kind": c["kind"], "rate": c["rate"], "success": c["success"], "target": need,
                           "met": c["success"] >= need, "short_by": max(0.0, need - c["success"])})
        if c["rate"] >= BEAT_FROM:
            for m in ("teacher_forcing", "memoryless"):
                for flagged in (True, False):
                    other = by.get((m, c["kind"], c["rate"], flagged))
                    if other:
                        beats.append({"kind": c["kind"], "rate": c["rate"], "baseline": m, "baseline_flagged": flagged,
                                      "df_ci95": c["ci95"], "baseline_ci95": other["ci95"],
                                      "separated": c["ci95"][0] > other["ci95"][1]})
    return {"success": checks, "all_success_met": all(x["met"] for x in checks) if checks else None,
            "beats": beats, "all_separated": all(x["separated"] for x in beats) if beats else None}


def headline(cells: list[dict[str, Any]]) -> dict[str, float]:
    """``<method>_clean`` and ``<method>_<flagged|unflagged>_worst_p<rate %>``: the lowest success over kinds."""
    out: dict[str, float] = {}
    for c in cells:
        if c["kind"] == "none":
            out[f"{c['method']}_clean"] = c["success"]
            continue
        key = f"{c['method']}_{'flagged' if c['flagged'] else 'unflagged'}_worst_p{round(c['rate'] * 100)}"
        out[key] = min(out.get(key, 1.0), c["success"])
    return out


# ---- the command ----------------------------------------------------------------------------

def run_matrix(args: argparse.Namespace) -> list[Path]:
    """Run (or read from the cache) every cell; write matrix.json and matrix.png under the output directory."""
    from ..results import write_result
    from .evaluate import DEFAULT_OUT, RECORD_DIR, protocol
    from .figure import plot_matrix
    from .maze import EPISODE_LIMIT

    methods = parse_methods(args.methods)
    kinds = [parse_kind(k.strip()) for k in args.kinds.split(",")]
    rates = parse_rates(args.rates)
    checkpoints = parse_checkpoints(args.checkpoints, methods)
    if args.method or args.checkpoint:
        raise ValueError("--matrix takes --methods and --checkpoints METHOD=DIR, not --method/--checkpoint")
    if args.corrupt_level is not None and methods != ["df"]:
        raise ValueError("--corrupt-level applies to df only; run it with --methods df")
    out = RECORD_DIR if args.record else args.out or DEFAULT_OUT
    if out.suffix == ".json":
        raise ValueError(f"--out for --matrix is a directory, got {out}")
    seed = args.seed = TEST_SEED if args.seed is None else args.seed
    args.episodes = EPISODES if args.episodes is None else args.episodes
    limit = EPISODE_LIMIT if args.limit is None else args.limit
    tic = time.time()
    cells = [row for m in methods
             for row in method_cells(args, m, checkpoints[m], kinds, rates, out / "matrix-cells", limit)]
    verdict = targets(cells)
    figure = None if args.no_plot else plot_matrix(cells, out / "matrix.png")
    metrics = {"cells": cells, "targets": verdict, "headline": headline(cells), "checkpoints": checkpoints,
               "cell_wall_time_s_total": round(sum(c["wall_time_s"] for c in cells if not c["same_run_as"]), 1)}
    setting = {**protocol(limit, args.batch), "kinds": [k.label for k in kinds], "rates": rates,
               "flagged": "the policy is told which observations are corrupted (dforce.imitation.policy)",
               "cell_cache": str(out / "matrix-cells")}
    path = write_result(out / "matrix.json", metrics, wall_time_s=time.time() - tic, command=args.command_line,
                        seeds={"episodes": seed, "sampling": seed}, protocol=setting,
                        pictures=[str(figure)] if figure else [])
    return [path, *([figure] if figure else [])]
