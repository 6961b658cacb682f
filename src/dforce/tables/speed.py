"""Speed and memory: the ratios of ``python -m benchmarks.core`` and ``benchmarks.guidance``."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, load, markdown


def _ratios(values: dict[str, float], unit: str = "x") -> str:
    return ", ".join(f"{v:.1f}{unit} ({k})" for k, v in values.items())


def _core_rows(core: dict) -> list[list[str]]:
    target = core["targets"]["train_fused_over_loop"]
    train = _ratios({k: v["speedup_fused_over_loop"] for k, v in core["train"].items()})
    rows = [["training step, fused `nn.GRU` vs per-timestep GRU-cell loop (width 256, depth 2, 4096 tokens/step)",
             train, f">= {target['target']:g}x: {'met' if all(target['met'].values()) else '**not met**'}"]]
    for name, label in (("gru", "GRU state"), ("transformer", "KV cache")):
        r = core["rollout"][name]
        speed = {f"{n} tokens": s for n, s in r["speedup_stream_over_recompute"].items()}
        flat = r["stream_per_token_ms_longest_over_shortest"]
        t = core["targets"][f"rollout_{name}"]
        met = {True: "met", False: "**not met**", None: "not measured"}
        rows.append([f"autoregressive rollout, streaming ({label}) vs recomputing the past at every step",
                     _ratios(speed), f">= {t['target_speedup']:g}x at {t['length']}: {met[t['speedup_met']]}"])
        rows.append([f"streaming time per token, longest vs shortest rollout ({label})", f"{flat:.2f}",
                     f"roughly flat (<= {t['flat_tolerance']:g}): {met[t['flat_met']]}"])
    mem = core["rollout"]["gru"]
    longest = max(mem["stream"], key=int)
    if longest in mem["recompute"]:
        kb = {k: mem[k][longest]["memory"]["rss_increase_kb"] / 1024 for k in ("stream", "recompute")}
        rows.append([f"peak memory added by a {longest}-token GRU rollout",
                     f"{kb['stream']:.1f} MB streaming vs {kb['recompute']:.1f} MB recompute", ""])
    return rows


def _guidance_row(guidance: dict) -> list[str]:
    cases = ", ".join(f"{c['speedup']:.1f}x ({c['batch']} plan{'s' if c['batch'] > 1 else ''} of {c['tokens']})"
                      for c in guidance["cases"])
    return ["Monte Carlo Guidance, 8 samples in one batched call vs one call each", cases, ""]


def table(root: Path) -> str:
    """Rows from results/bench/core.json and results/bench/guidance.json (whichever exist)."""
    rows = []
    core, guidance = load(root / "results" / "bench" / "core.json"), load(root / "results" / "bench" / "guidance.json")
    if core:
        rows += _core_rows(core)
    if guidance:
        rows.append(_guidance_row(guidance))
    return markdown(["what", "measured (side by side, one run)", "target"], rows or [[MISSING] * 3])
