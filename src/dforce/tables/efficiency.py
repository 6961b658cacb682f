"""Training efficiency per preset and the sized presets: tables from ``results/bench/efficiency.json``."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..records import MISSING, load, markdown

LABELS = {"planner": "planner", "forecaster": "forecaster", "imitation": "imitation policy",
          "video": "video", "video_gpu": "video, GPU preset (batch 2 here)"}


def _record(root: Path) -> dict | None:
    return load(root / "results" / "bench" / "efficiency.json")


def table(root: Path) -> str:
    """Steps/s of the baseline and today's fp32 and bf16 steps, GFLOP/s and fraction of the GEMM peak."""
    record = _record(root)
    if not record:
        return markdown(["preset"], [[MISSING]])
    m = record["metrics"]
    peak = m["gemm_peak_gflops"]
    rows = []
    for name, p in m["presets"].items():
        v = p["variants"]
        rows.append([f"{LABELS.get(name, name)} (`{Path(p['config']).name}`, {p['parameters'] / 1e6:.2f}M params)",
                     f"{v['baseline']['steps_per_s']:.2f}", f"{v['fp32']['steps_per_s']:.2f}",
                     f"{v['bf16']['steps_per_s']:.2f}", f"**{p['speedup_vs_baseline']:.2f}x**",
                     f"{v['fp32']['gflops']:.0f} ({100 * v['fp32']['peak_fraction']:.0f}% of fp32 peak)",
                     f"{v['bf16']['gflops']:.0f} ({100 * v['bf16']['peak_fraction']:.0f}% of bf16 peak)"])
    rows.append([f"GEMM peak of the same run ({record.get('threads', 1)} thread)", "", "", "", "",
                 f"{peak['fp32']:.0f}", f"{peak['bf16']:.0f}"])
    return markdown(["preset", "baseline step/s", "fp32 step/s", "bf16 step/s", "speedup", "GFLOP/s fp32",
                     "GFLOP/s bf16"], rows)


def presets(root: Path) -> str:
    """Each domain's CPU preset (measured here) and GPU preset (its FLOP budget and expected hours)."""
    record = _record(root)
    if not record:
        return markdown(["domain"], [[MISSING]])
    m = record["metrics"]
    rows = []
    for name, gpu in m["gpu_presets"].items():
        cpu = m["presets"].get("video" if name == "video_gpu" else name)
        cpu_cell = MISSING
        if cpu:
            steps = load_config(root / cpu["config"]).train.steps
            cpu_cell = f"`{Path(cpu['config']).name}`: {steps} steps, {steps / cpu['steps_per_s'] / 60:.0f} min here"
        rows.append([LABELS.get(name, name).split(",")[0], cpu_cell,
                     f"`{Path(gpu['config']).name}`: {gpu['parameters'] / 1e6:.1f}M params, batch {gpu['batch']}, "
                     f"{gpu['steps']} steps, {gpu['total_pflop']:.0f} PFLOP",
                     f"{_duration(gpu['expected_hours'])} at {gpu['assumed_tflops']:g} TFLOP/s (assumed)"])
    return markdown(["domain", "CPU preset (bf16, 1 thread; training steps only)", "GPU preset",
                     "expected on one GPU"], rows)


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
