"""Core benchmark of dforce: what the fused / streaming code paths buy.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.core            # full run, writes results/bench/core.json
    PYTHONPATH=src python -m benchmarks.core --quick    # smoke run (< ~1 min), writes results/bench/core_quick.json

Three measurements, side by side in one run:

1. Training step throughput of ``GRUDenoiser``: the fused ``nn.GRU`` (``forward``) against
   the per-timestep Python loop over the same parameters (``loop_forward``). One step is
   the Diffusion Forcing loss (forward) + backward + AdamW step. Two identically
   initialised copies of the network, the same batch and the same noise; the variants are
   interleaved (fused, loop, fused, loop, ...) after a warm-up and medians are reported.
2. Autoregressive rollout (one token per chunk, ``steps`` model calls per token) after a
   short clean context: native streaming (GRU hidden state / transformer KV cache) against
   ``Recompute`` (the whole past re-run at every denoising step).
3. Peak memory of every variant, each rollout case and each training variant in a fresh
   subprocess (``python -m benchmarks.core --one SPEC``): on CPU the peak RSS (VmHWM,
   reset after imports and model/input construction; ``ru_maxrss`` where /proc is missing)
   above the RSS at that point, on CUDA ``torch.cuda.max_memory_allocated`` above the
   allocation at that point (plus RSS).

Rollout timings are taken inside those same subprocesses, so the slow recompute rollouts
run exactly once. See ``benchmarks/README.md`` for the sizes and the reasoning behind them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dforce.diffusion import NoiseSchedule, autoregressive, diffusion_forcing_loss, rollout, training_levels
from dforce.models import CausalTransformer, GRUDenoiser, Recompute
from dforce.results import git_commit, hardware

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("results/bench/core.json")
QUICK_OUT = Path("results/bench/core_quick.json")

# Targets the project reports against (what we measure is reported as is).
TARGET_TRAIN_SPEEDUP = 3.0       # fused GRU training step vs per-timestep loop
TARGET_ROLLOUT_SPEEDUP = 10.0    # streaming vs recompute at the longest rollout
FLAT_TOLERANCE = 1.5             # "roughly flat": per-token time, longest / shortest rollout

FULL_CONFIG: dict[str, Any] = {
    "gru": {"token_dim": 8, "width": 256, "depth": 2, "levels": 1000},
    "transformer": {"token_dim": 8, "width": 128, "depth": 4, "heads": 4, "window": None, "levels": 1000},
    "train": {
        # Fixed 4096 tokens per batch; sequence length grows from the 64 first asked for
        # towards the paper's sequences of hundreds of tokens.
        "cases": [{"batch": 64, "seq": 64}, {"batch": 32, "seq": 128}, {"batch": 16, "seq": 256}],
        "warmup": 2,
        "reps": 7,
        "lr": 1e-4,
        "target": "v",
        "weighting": "min_snr",
        "forcing": "independent",
        "memory_steps": 2,
    },
    "rollout": {
        "batch": 1,
        "steps": 5,  # model calls per token; recompute cost ~ steps * length^2 / 2 positions
        "context": 4,
        "stabilization": 0,
        "lengths": [100, 300, 1000],
        # Recompute is quadratic in length; the transformer's 1000-token recompute would
        # take several more minutes on 2 CPU cores, so it is left out by default.
        "recompute_lengths": {"gru": [100, 300, 1000], "transformer": [100, 300]},
        "stream_repeats": 3,          # repeats (median) for streaming rollouts up to ...
        "repeat_max_length": 300,     # ... this length; everything else runs once
        "warmup_length": 4,
    },
}

QUICK_CONFIG: dict[str, Any] = {
    "gru": {"token_dim": 8, "width": 64, "depth": 2, "levels": 1000},
    "transformer": {"token_dim": 8, "width": 64, "depth": 2, "heads": 4, "window": None, "levels": 1000},
    "train": {**FULL_CONFIG["train"], "cases": [{"batch": 16, "seq": 32}], "warmup": 1, "reps": 3},
    "rollout": {
        **FULL_CONFIG["rollout"],
        "steps": 4,
        "lengths": [100, 300],
        "recompute_lengths": {"gru": [100, 300], "transformer": [100, 300]},
        "stream_repeats": 1,
    },
}


# -- small helpers ----------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_kb() -> int:
    """Peak RSS of this process image in KiB: VmHWM on Linux, else ru_maxrss.

    ru_maxrss alone is not enough for a child of a large process: Linux carries the
    parent's high-water mark across fork and exec, which hides anything smaller."""
    hwm = _status_kb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if hwm is None else hwm


def memory_baseline(device: torch.device) -> dict[str, Any]:
    """Record memory right before a workload; resets the RSS and CUDA peaks where possible."""
    was_reset = reset_peak_rss()
    current = _status_kb("VmRSS")
    base: dict[str, Any] = {
        "rss_kb": current if was_reset and current is not None else peak_rss_kb(),
        "rss_peak_was_reset": was_reset,
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base["cuda_bytes"] = torch.cuda.memory_allocated(device)
    return base


def memory_report(device: torch.device, base: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of the workload run since ``memory_baseline``."""
    peak = peak_rss_kb()
    out: dict[str, Any] = {
        "baseline_rss_kb": base["rss_kb"],
        "peak_rss_kb": peak,
        "rss_increase_kb": peak - base["rss_kb"],
        "rss_peak_was_reset": base["rss_peak_was_reset"],
        "ru_maxrss_before_kb": base["ru_maxrss_kb"],
        "ru_maxrss_after_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        cuda_peak = torch.cuda.max_memory_allocated(device)
        out.update(
            cuda_baseline_bytes=base["cuda_bytes"],
            cuda_peak_bytes=cuda_peak,
            cuda_increase_bytes=cuda_peak - base["cuda_bytes"],
        )
    return out


def peak_increase_mb(mem: dict[str, Any]) -> float:
    """The headline peak-memory increase in MiB (CUDA allocation when present, else RSS)."""
    if "cuda_increase_bytes" in mem:
        return mem["cuda_increase_bytes"] / 2**20
    return mem["rss_increase_kb"] / 1024


def timing_summary(seconds: list[float], work: int) -> dict[str, Any]:
    """Median and rate of repeated timings of ``work`` units (steps or tokens)."""
    med = statistics.median(seconds)
    return {"seconds": seconds, "median_s": med, "per_s": work / med}


def build_gru(cfg: dict[str, Any], device: torch.device, seed: int) -> GRUDenoiser:
    """The benchmark's GRUDenoiser, initialised from ``seed``."""
    torch.manual_seed(seed)
    g = cfg["gru"]
    return GRUDenoiser(g["token_dim"], width=g["width"], depth=g["depth"], levels=g["levels"]).to(device)


def build_model(cfg: dict[str, Any], name: str, device: torch.device, seed: int) -> torch.nn.Module:
    """``"gru"`` or ``"transformer"``, initialised from ``seed``."""
    if name == "gru":
        return build_gru(cfg, device, seed)
    torch.manual_seed(seed)
    t = cfg["transformer"]
    return CausalTransformer(
        t["token_dim"], width=t["width"], depth=t["depth"], heads=t["heads"], window=t["window"], levels=t["levels"]
    ).to(device)


# -- 1. training ------------------------------------------------------------------


def train_batch(cfg: dict[str, Any], case: dict[str, int], device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """One fixed training batch: clean tokens, Diffusion Forcing levels and noise."""
    tr, dim, levels = cfg["train"], cfg["gru"]["token_dim"], cfg["gru"]["levels"]
    gen = torch.Generator().manual_seed(seed)
    b, t = case["batch"], case["seq"]
    x0 = torch.randn(b, t, dim, generator=gen)
    k = training_levels(b, t, levels, tr["forcing"], generator=gen)
    noise = torch.randn(b, t, dim, generator=gen)
    return {"x0": x0.to(device), "k": k.to(device), "noise": noise.to(device)}


def loss_of(forward: Any, schedule: NoiseSchedule, batch: dict[str, torch.Tensor], cfg: dict[str, Any]) -> torch.Tensor:
    """The Diffusion Forcing loss of ``forward`` (``net`` or ``net.loop_forward``) on ``batch``."""
    tr = cfg["train"]
    return diffusion_forcing_loss(
        forward, schedule, batch["x0"], batch["k"], batch["noise"], target=tr["target"], weighting=tr["weighting"]
    )


def train_step(forward: Any, optimizer: torch.optim.Optimizer, schedule: NoiseSchedule,
               batch: dict[str, torch.Tensor], cfg: dict[str, Any]) -> None:
    """One full training step: loss (forward), backward, AdamW step."""
    optimizer.zero_grad(set_to_none=True)
    loss_of(forward, schedule, batch, cfg).backward()
    optimizer.step()


def training_variants(cfg: dict[str, Any], device: torch.device, seed: int) -> dict[str, tuple[Any, torch.optim.Optimizer]]:
    """Two identically initialised networks, one stepped through ``forward`` (fused nn.GRU),
    one through ``loop_forward`` (per-timestep cells), each with its own AdamW."""
    fused = build_gru(cfg, device, seed)
    looped = copy.deepcopy(fused)
    lr = cfg["train"]["lr"]
    return {
        "fused": (fused, torch.optim.AdamW(fused.parameters(), lr=lr)),
        "loop": (looped.loop_forward, torch.optim.AdamW(looped.parameters(), lr=lr)),
    }


def time_training(cfg: dict[str, Any], case: dict[str, int], device: torch.device, seed: int) -> dict[str, Any]:
    """Interleaved timings of fused and looped training steps on the same batch."""
    tr = cfg["train"]
    schedule = NoiseSchedule.make(cfg["gru"]["levels"])
    batch = train_batch(cfg, case, device, seed + 1)
    variants = training_variants(cfg, device, seed)
    with torch.no_grad():  # same weights, same batch, same noise -> the same loss
        losses = {name: float(loss_of(fwd, schedule, batch, cfg)) for name, (fwd, _) in variants.items()}
    for _ in range(tr["warmup"]):
        for fwd, opt in variants.values():
            train_step(fwd, opt, schedule, batch, cfg)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(tr["reps"]):
        for name, (fwd, opt) in variants.items():  # A B A B ...: background load hits both alike
            sync(device)
            start = time.perf_counter()
            train_step(fwd, opt, schedule, batch, cfg)
            sync(device)
            seconds[name].append(time.perf_counter() - start)
    res = {name: timing_summary(s, 1) for name, s in seconds.items()}
    for r in res.values():
        r["steps_per_s"] = r.pop("per_s")
    return {
        "batch": case["batch"],
        "seq": case["seq"],
        "tokens_per_step": case["batch"] * case["seq"],
        "initial_loss": losses,
        "initial_loss_abs_diff": abs(losses["fused"] - losses["loop"]),
        **res,
        "speedup_fused_over_loop": res["fused"]["steps_per_s"] / res["loop"]["steps_per_s"],
    }


def measure_training_memory(cfg: dict[str, Any], case: dict[str, int], variant: str,
                            device: torch.device, seed: int) -> dict[str, Any]:
    """(Child process) peak memory of ``memory_steps`` training steps of one variant."""
    schedule = NoiseSchedule.make(cfg["gru"]["levels"])
    batch = train_batch(cfg, case, device, seed + 1)
    fwd, opt = training_variants(cfg, device, seed)[variant]
    base = memory_baseline(device)
    for _ in range(cfg["train"]["memory_steps"]):  # the first step also creates AdamW's state
        train_step(fwd, opt, schedule, batch, cfg)
    return {"memory": memory_report(device, base)}


# -- 2. rollouts ------------------------------------------------------------------


def measure_rollout(cfg: dict[str, Any], case: dict[str, Any], device: torch.device, seed: int) -> dict[str, Any]:
    """(Child process) time and peak memory of autoregressive rollouts of one model/variant/length."""
    ro = cfg["rollout"]
    net = build_model(cfg, case["model"], device, seed).eval()
    runner = net if case["variant"] == "stream" else Recompute(net)
    schedule = NoiseSchedule.make(cfg[case["model"]]["levels"])
    levels = autoregressive(1, ro["steps"])  # (steps + 1, 1): ``steps`` model calls per token
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    context = torch.randn(ro["batch"], ro["context"], cfg[case["model"]]["token_dim"], generator=gen, device=device)

    def run(length: int) -> torch.Tensor:
        g = torch.Generator(device=device).manual_seed(seed + 3)  # same noise for both variants
        return rollout(runner, schedule, levels, length, context=context,
                       stabilization=ro["stabilization"], generator=g)

    base = memory_baseline(device)
    seconds = []
    with torch.no_grad():
        run(min(ro["warmup_length"], case["length"]))
        for _ in range(case["repeats"]):
            sync(device)
            start = time.perf_counter()
            out = run(case["length"])
            sync(device)
            seconds.append(time.perf_counter() - start)
    mem = memory_report(device, base)
    res = timing_summary(seconds, ro["batch"] * case["length"])
    res["tokens_per_s"] = res.pop("per_s")
    res["per_token_ms"] = res["median_s"] / case["length"] * 1e3
    res["per_model_call_ms"] = res["per_token_ms"] / ro["steps"]
    return {**case, **res, "output_sum": float(out.double().sum()), "memory": mem}


def rollout_cases(cfg: dict[str, Any], models: list[str]) -> list[dict[str, Any]]:
    """Every (model, variant, length) rollout to measure, streaming before recompute."""
    ro, cases = cfg["rollout"], []
    for model in models:
        for length in ro["lengths"]:
            repeats = ro["stream_repeats"] if length <= ro["repeat_max_length"] else 1
            cases.append({"model": model, "variant": "stream", "length": length, "repeats": repeats})
        for length in ro["recompute_lengths"][model]:
            cases.append({"model": model, "variant": "recompute", "length": length, "repeats": 1})
    return cases


def summarize_rollouts(cfg: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Group rollout cases by model; speed ratio and per-token flatness per model."""
    out: dict[str, Any] = {}
    for r in results:
        model = out.setdefault(r["model"], {"stream": {}, "recompute": {}})
        model[r["variant"]][str(r["length"])] = {k: v for k, v in r.items() if k not in ("model", "variant")}
    for name, model in out.items():
        model["recompute_skipped_lengths"] = [
            L for L in cfg["rollout"]["lengths"] if str(L) not in model["recompute"]
        ]
        model["speedup_stream_over_recompute"] = {
            L: model["recompute"][L]["median_s"] / model["stream"][L]["median_s"]
            for L in model["recompute"] if L in model["stream"]
        }
        model["output_sum_rel_diff"] = {  # streaming is an optimisation: the same samples
            L: abs(model["recompute"][L]["output_sum"] - model["stream"][L]["output_sum"])
            / max(1.0, abs(model["stream"][L]["output_sum"]))
            for L in model["recompute"] if L in model["stream"]
        }
        per_token = [model["stream"][str(L)]["per_token_ms"] for L in cfg["rollout"]["lengths"]]
        model["stream_per_token_ms_longest_over_shortest"] = per_token[-1] / per_token[0]
    return out


# -- child processes ---------------------------------------------------------------


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Entry point of ``--one``: run one case in this (fresh) process."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    case, cfg, seed = spec["case"], spec["config"], spec["seed"]
    if case["kind"] == "train":
        return measure_training_memory(cfg, case, case["variant"], device, seed)
    if case["kind"] == "rollout":
        return measure_rollout(cfg, case, device, seed)
    raise ValueError(f"unknown case kind {case['kind']!r}")


def spawn_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``python -m benchmarks.core --one SPEC`` and return its JSON answer."""
    paths = [str(REPO_ROOT)] + ([str(REPO_ROOT / "src")] if (REPO_ROOT / "src").is_dir() else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "benchmarks.core", "--one", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {spec['case']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- provenance ---------------------------------------------------------------------


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (other work on the machine shows up here)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# -- report -------------------------------------------------------------------------


def targets(train: dict[str, Any], rollouts: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Measured values next to the project's targets."""
    longest = str(max(cfg["rollout"]["lengths"]))
    out: dict[str, Any] = {
        "train_fused_over_loop": {
            "target": TARGET_TRAIN_SPEEDUP,
            "measured": {name: c["speedup_fused_over_loop"] for name, c in train.items()},
        },
    }
    out["train_fused_over_loop"]["met"] = {n: v >= TARGET_TRAIN_SPEEDUP for n, v in out["train_fused_over_loop"]["measured"].items()}
    for name, model in rollouts.items():
        speed = model["speedup_stream_over_recompute"].get(longest)
        flat = model["stream_per_token_ms_longest_over_shortest"]
        out[f"rollout_{name}"] = {
            "length": int(longest),
            "target_speedup": TARGET_ROLLOUT_SPEEDUP,
            "speedup": speed,
            "speedup_met": None if speed is None else speed >= TARGET_ROLLOUT_SPEEDUP,
            "flat_tolerance": FLAT_TOLERANCE,
            "stream_per_token_longest_over_shortest": flat,
            "flat_met": flat <= FLAT_TOLERANCE,
        }
    return out


def format_table(report: dict[str, Any]) -> str:
    """The short human-readable summary printed at the end."""
    cfg, lines = report["config"], []
    g = cfg["gru"]
    lines.append(f"Training step, GRUDenoiser(token_dim={g['token_dim']}, width={g['width']}, depth={g['depth']}), "
                 f"DF loss + backward + AdamW  [device {report['hardware']['device']}, "
                 f"{report['hardware']['torch_threads']} threads]")
    lines.append(f"  {'batch x seq':>12} {'fused st/s':>11} {'loop st/s':>10} {'fused/loop':>11} {'mem fused MB':>13} {'mem loop MB':>12}")
    for name, c in report["train"].items():
        mem = c.get("memory", {})
        mf = f"{peak_increase_mb(mem['fused']):.1f}" if "fused" in mem else "-"
        ml = f"{peak_increase_mb(mem['loop']):.1f}" if "loop" in mem else "-"
        lines.append(f"  {name:>12} {c['fused']['steps_per_s']:>11.2f} {c['loop']['steps_per_s']:>10.2f} "
                     f"{c['speedup_fused_over_loop']:>10.2f}x {mf:>13} {ml:>12}")
    ro = cfg["rollout"]
    lines.append("")
    lines.append(f"Autoregressive rollout, batch {ro['batch']}, {ro['steps']} model calls per token, "
                 f"{ro['context']}-token context: streaming vs recompute-the-past")
    lines.append(f"  {'model':>11} {'tokens':>6} {'stream s':>9} {'ms/tok':>7} {'recomp s':>9} {'ms/tok':>8} "
                 f"{'speedup':>8} {'mem str MB':>11} {'mem rec MB':>11}")
    for name, model in report["rollout"].items():
        for L, s in model["stream"].items():
            r = model["recompute"].get(L)
            rec = (f"{r['median_s']:>9.2f} {r['per_token_ms']:>8.1f} {model['speedup_stream_over_recompute'][L]:>7.1f}x"
                   if r else f"{'-':>9} {'-':>8} {'-':>8}")
            mr = f"{peak_increase_mb(r['memory']):.1f}" if r else "-"
            lines.append(f"  {name:>11} {L:>6} {s['median_s']:>9.2f} {s['per_token_ms']:>7.2f} {rec} "
                         f"{peak_increase_mb(s['memory']):>11.1f} {mr:>11}")
        lines.append(f"  {name:>11} streaming per-token time, longest/shortest: "
                     f"{model['stream_per_token_ms_longest_over_shortest']:.2f}")
    lines.append("")
    t = report["targets"]
    measured = ", ".join(f"{n} {v:.2f}x" for n, v in t["train_fused_over_loop"]["measured"].items())
    lines.append(f"Target fused/loop >= {TARGET_TRAIN_SPEEDUP:g}x: {measured}")
    for name in report["rollout"]:
        r = t[f"rollout_{name}"]
        sp = "not measured" if r["speedup"] is None else f"{r['speedup']:.1f}x ({'met' if r['speedup_met'] else 'NOT met'})"
        lines.append(f"Target {name} stream/recompute at {r['length']} >= {TARGET_ROLLOUT_SPEEDUP:g}x: {sp}; "
                     f"per-token flat (<= {FLAT_TOLERANCE:g}): {r['stream_per_token_longest_over_shortest']:.2f} "
                     f"({'met' if r['flat_met'] else 'NOT met'})")
    lines.append(f"Wall time {report['wall_time_s']:.0f} s")
    return "\n".join(lines)


METHOD = {
    "train_timing": "Two identically initialised GRUDenoisers (deepcopy), one trained through forward (fused nn.GRU), "
                    "one through loop_forward (Python loop over time of GRU cells on the same parameters), each with "
                    "its own AdamW; the same batch, levels and noise at every step. One step = diffusion_forcing_loss "
                    "(forward) + backward + optimizer.step. `warmup` untimed steps each, then `reps` timed steps "
                    "interleaved fused, loop, fused, loop, ...; medians reported (time.perf_counter, CUDA synchronised).",
    "rollout_timing": "Each (model, variant, length) runs in a fresh subprocess: rollout() with autoregressive(1, steps) "
                      "after a clean context, no grad, eval mode, same seeds (same context and noise) for both variants. "
                      "'stream' = the model's own state (GRU hidden state / KV cache); 'recompute' = Recompute(model), "
                      "which re-runs the model over the whole past at every denoising step. An untimed warm-up rollout of "
                      "`warmup_length` tokens, then `repeats` timed rollouts (median). per_token_ms = median_s / length "
                      "(the whole batch advances one token).",
    "memory": "Each case in a fresh subprocess (python -m benchmarks.core --one SPEC). Baseline after imports and "
              "model/optimizer/input construction. CPU: the RSS high-water mark is reset there (write '5' to "
              "/proc/self/clear_refs) and rss_increase_kb = VmHWM after the workload - VmRSS at the baseline (KiB). "
              "Plain ru_maxrss is also recorded but not used: Linux carries the parent's high-water mark (~the parent "
              "benchmark's RSS) into a spawned child, which hides smaller workloads. Without /proc the fallback is "
              "ru_maxrss after - ru_maxrss before. Allocator reuse can still hide small allocations. CUDA: "
              "torch.cuda.max_memory_allocated after reset_peak_memory_stats minus memory_allocated at the baseline. "
              "Training memory covers `memory_steps` steps (the first creates AdamW state); rollout memory covers the "
              "warm-up and the timed rollouts.",
}


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    p.add_argument("--quick", action="store_true", help="small sizes, lengths 100/300: a smoke run")
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT} ({QUICK_OUT} with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: 1 on CPU, see README; torch's own choice on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rollout-batch", type=int, default=None, help="override the rollout batch size")
    p.add_argument("--steps", type=int, default=None, help="override the sampling steps (model calls) per token")
    p.add_argument("--no-transformer", action="store_true", help="skip the CausalTransformer rollout rows")
    p.add_argument("--all-recompute", action="store_true",
                   help="also run the recompute baseline at every length for every model (slow)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one case (JSON spec)
    return p.parse_args(argv)


def resolve_device(name: str | None) -> torch.device:
    """--device, defaulting to CUDA when available."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


_T0 = time.perf_counter()


def default_threads(device: torch.device) -> int:
    """One intra-op thread on CPU: the per-step GRU and sampler ops are too small to gain
    much from more, and on a shared machine OpenMP spin-waiting against other processes
    made multi-threaded runs up to ~30x slower and erratic. Torch's choice on CUDA."""
    return 1 if device.type == "cpu" else torch.get_num_threads()


def log(msg: str) -> None:
    """Progress to stderr (the table goes to stdout), with seconds since import."""
    print(f"[bench.core {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark (or one ``--one`` case) and write the JSON report."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(args_list)
    if args.one is not None:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0

    start = time.perf_counter()
    device = resolve_device(args.device)
    torch.set_num_threads(default_threads(device) if args.threads is None else args.threads)
    cfg = copy.deepcopy(QUICK_CONFIG if args.quick else FULL_CONFIG)
    if args.rollout_batch is not None:
        cfg["rollout"]["batch"] = args.rollout_batch
    if args.steps is not None:
        cfg["rollout"]["steps"] = args.steps
    if args.all_recompute:
        ro = cfg["rollout"]
        ro["recompute_lengths"] = {model: list(ro["lengths"]) for model in ro["recompute_lengths"]}
    models = ["gru"] if args.no_transformer else ["gru", "transformer"]
    spec = {"device": str(device), "threads": torch.get_num_threads(), "seed": args.seed, "config": cfg}
    load_start = load_average()

    train: dict[str, Any] = {}
    for case in cfg["train"]["cases"]:
        name = f"B{case['batch']}xT{case['seq']}"
        log(f"training {name}: timing fused vs loop")
        train[name] = time_training(cfg, case, device, args.seed)
        train[name]["memory"] = {}
        for variant in ("fused", "loop"):
            log(f"training {name}: memory of {variant} (subprocess)")
            one = spawn_one({**spec, "case": {"kind": "train", "variant": variant, **case}})
            train[name]["memory"][variant] = one["memory"]

    results = []
    for case in rollout_cases(cfg, models):
        log(f"rollout {case['model']} {case['variant']} {case['length']} tokens x{case['repeats']} (subprocess)")
        results.append(spawn_one({**spec, "case": {"kind": "rollout", **case}}))
    rollouts = summarize_rollouts(cfg, results)

    commit = git_commit()
    dirty = commit.endswith("-dirty")
    report = {
        "benchmark": "dforce core",
        "command": shlex.join([sys.executable, "-m", "benchmarks.core", *args_list]),
        "sys_argv": " ".join(sys.argv),
        "git_commit": commit,
        "git_dirty": dirty,
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": {**hardware(), "device": str(device)},
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "quick": args.quick,
        "threads": {"torch_num_threads": torch.get_num_threads(),
                    "set_by": "--threads" if args.threads is not None else "default: 1 on CPU, torch's choice on CUDA"},
        "seeds": {"model_init": args.seed, "train_batch": args.seed + 1, "rollout_context": args.seed + 2,
                  "rollout_noise": args.seed + 3},
        "config": cfg,
        "method": METHOD,
        "train": train,
        "rollout": rollouts,
    }
    report["targets"] = targets(train, rollouts, cfg)
    report["wall_time_s"] = time.perf_counter() - start

    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
