"""Training efficiency of every domain's preset on this machine, side by side in one run.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.efficiency           # full run -> results/bench/efficiency.json
    PYTHONPATH=src python -m benchmarks.efficiency --quick   # smoke run (~1 min) -> outputs/bench/efficiency_quick.json

Measured in the same process, interleaved, so that a busy machine slows every variant alike:

1. **The machine's GEMM peak**, fp32 and bf16: the best of a square matrix product and a
   3x3 convolution (oneDNN), each the best of several.
2. **Per preset** (planner, forecaster, imitation, video; the preset's network, batch and
   token shape, synthetic tokens of the right shape): training steps/s of
   * ``baseline`` - the training step as it was before this benchmark existed (noise from a
     host generator, a host read of the loss and a check of every weight each step, an EMA
     that walks the parameters one tensor at a time), fp32;
   * ``fp32`` and ``bf16`` - today's step (:mod:`dforce.train.loop`: levels and noise drawn
     on the device, fused AdamW and EMA, bf16 autocast on the device for ``bf16``).
   FLOPs per step are counted by ``torch.utils.flop_counter`` (forward + backward), so each
   variant's achieved GFLOP/s is a fraction of the GEMM peak of its own precision.
3. **bf16 still trains**: the same initial weights trained for ``--curve-steps`` steps in fp32
   and in bf16 on the preset's *real* training data (where this machine has it), same batches;
   the two loss curves are plotted and their last-100-step means compared.
4. **GPU presets**: the FLOPs of each ``*_gpu`` preset's whole run, and the hours they take
   at an assumed GPU rate (``ASSUMED_GPU_TFLOPS``; ``scripts/gpu_check.sh`` measures it).
5. **Planner backbone**: the paper's GRU against a causal transformer of about the same
   parameter count: training steps/s and the latency of one plan (the preset's scheduling,
   batch = the planner's Monte Carlo Guidance samples).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.core import sync
from dforce.config import ModelConfig, RunConfig, load_config
from dforce.data.sequences import Sequences
from dforce.pipeline import DiffusionForcingModel
from dforce.results import write_result
from dforce.train import checkpoint
from dforce.train import distributed
from dforce.train.ema import EMA
from dforce.train.loop import BatchSource, _train_step, mixed_precision, optimizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("results/bench/efficiency.json")
QUICK_OUT = Path("outputs/bench/efficiency_quick.json")
TARGET_SPEEDUP = 2.0          # planner and video presets, today's step over the baseline step
TARGET_PEAK_FRACTION = 0.30   # the largest preset, of the GEMM peak of its precision


@dataclass(frozen=True)
class Preset:
    """A training preset as the benchmark builds it: the config, and the token layout its data give."""

    name: str
    config: str
    token_shape: tuple[int, ...]
    cond_dim: int
    length: int                    # tokens per training sequence
    batch: int | None = None       # None: the preset's train.batch_size
    target: bool = False           # held to TARGET_SPEEDUP
    gpu_config: str | None = None  # the domain's paper-scale preset, whose FLOP budget is reported


PRESETS = (
    Preset("planner", "configs/maze2d_cpu.yaml", (60,), 5, 30, target=True, gpu_config="configs/maze2d_gpu.yaml"),
    Preset("forecaster", "configs/forecast_cpu.yaml", (8,), 11, 60, gpu_config="configs/forecast_gpu.yaml"),
    Preset("imitation", "configs/imitation_cpu.yaml", (30,), 11, 60, gpu_config="configs/imitation_gpu.yaml"),
    Preset("video", "configs/video_cpu.yaml", (1, 32, 32), 0, 16, target=True),
    # The paper-scale video preset: batch 32 would take minutes a step here, so its rate is
    # measured at batch 2; steps/s scale with the batch, FLOP/s and ratios do not.
    Preset("video_gpu", "configs/video_gpu.yaml", (1, 64, 64), 0, 16, batch=2, gpu_config="configs/video_gpu.yaml"),
)
# The GPU rate behind the expected wall times of the *_gpu presets: an assumption (about a tenth
# of a current data-centre GPU's dense bf16 peak, typical for networks this small), until
# scripts/gpu_check.sh has measured the preset on the GPU at hand.
ASSUMED_GPU_TFLOPS = 100.0


# ---- the two training steps ------------------------------------------------------------------

class Trainee:
    """One model copy with its optimizer and EMA, stepping on shared batches: the per-tensor
    AdamW of the baseline step, or the training loop's own (``current=True``)."""

    def __init__(self, model: DiffusionForcingModel, cfg: RunConfig, current: bool = True):
        self.model = model
        self.opt = optimizer(model, cfg.train) if current else torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        self.ema = EMA(model, 0.999)
        self.params = list(model.parameters())


def baseline_step(t: Trainee, data: Sequences, index: torch.Tensor, step: int, cfg: RunConfig) -> float:
    """The training step before the efficiency work, kept here as the reference it is measured
    against: host generator, host noise copied to the device, the loss read on the host and every
    weight checked each step, the EMA lerped one parameter at a time."""
    device = t.model.device
    x0, cond, mask = data.batch(index)
    k, noise = t.model.draw_levels_and_noise(x0, mask, torch.Generator().manual_seed(step))
    move = (lambda v: None if v is None else v.to(device, non_blocking=True))
    t.model.train()
    loss = t.model(move(x0), move(k), move(noise), move(mask), move(cond))
    value = float(loss.detach().float())
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.train.grad_clip or 1.0)
    t.opt.step()
    checkpoint.finite(t.params)
    with torch.no_grad():
        d = min(0.999, (1 + step) / (10 + step))
        for ema_p, p in zip(t.ema.model.parameters(), t.model.parameters()):
            ema_p.lerp_(p.detach(), 1 - d)
        for ema_b, b in zip(t.ema.model.buffers(), t.model.buffers()):
            ema_b.copy_(b)
    return value


def current_step(t: Trainee, batches: BatchSource, index: torch.Tensor, step: int, cfg: RunConfig,
                 bf16: bool) -> float:
    """Today's training step, as :func:`dforce.train.loop.train` takes it (one process)."""
    train_cfg = replace(cfg.train, grad_clip=cfg.train.grad_clip or 1.0)
    loss, _ = _train_step(t.model, t.model, t.opt, batches, index, step, train_cfg, distributed.Process(),
                          mixed_precision(bf16, batches.device), False)
    value = float(loss) if batches.device.type == "cpu" else math.nan
    if batches.device.type == "cpu":
        checkpoint.finite(t.params)
    t.ema.update(t.model, step)
    return value


# ---- measurements ----------------------------------------------------------------------------

def gemm_peak(dtype: torch.dtype, device: torch.device, n: int, reps: int) -> dict[str, float]:
    """Best GFLOP/s of the densest kernels torch runs here in ``dtype``: an (n, n) @ (n, n)
    product and a 3x3 convolution of 256 channels (oneDNN's convolution reaches about twice
    MKL's fp32 matrix product on AMD CPUs, so the product alone understates the machine)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    x = torch.randn(8, 256, 32, 32, device=device).to(dtype)
    w = torch.randn(256, 256, 3, 3, device=device).to(dtype)
    kernels = {"matmul": (lambda: a @ b, 2 * n ** 3),
               "conv3x3": (lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 8 * 32 * 32 * 256 * 256 * 9)}
    best = {}
    for name, (run, flops) in kernels.items():
        best[name] = 0.0
        for _ in range(reps):
            sync(device)
            tic = time.perf_counter()
            run().sum().item()
            best[name] = max(best[name], flops / (time.perf_counter() - tic) / 1e9)
    return {"peak": max(best.values()), **best}


def step_flops(model: DiffusionForcingModel, data: Sequences) -> int:
    """FLOPs of one training step's forward and backward (the optimizer's are negligible)."""
    x0, cond, mask = (None if v is None else v.to(model.device) for v in data.batch(torch.arange(len(data))))
    k, noise = model.draw_levels_and_noise(x0, mask)
    with FlopCounterMode(display=False) as counter:
        model(x0, k, noise, mask, cond).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def build(preset: Preset, device: torch.device, backbone: ModelConfig | None = None, seed: int = 0,
          config: str | None = None, batch: int | None = None) -> tuple[RunConfig, DiffusionForcingModel, Sequences]:
    """The preset's model (or ``backbone`` in its place) and one batch of synthetic tokens."""
    cfg = load_config(REPO_ROOT / (config or preset.config))
    batch = batch or preset.batch or cfg.train.batch_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, preset.length, *preset.token_shape, generator=g)
    cond = torch.randn(batch, preset.length, preset.cond_dim, generator=g) if preset.cond_dim else None
    data = Sequences(x, cond)
    torch.manual_seed(seed)
    model = DiffusionForcingModel(preset.token_shape, preset.cond_dim, backbone or cfg.model, cfg.diffusion,
                                  cfg.sampling)
    model.normalizer.fit(x)
    return cfg, model.to(device), data


def time_variants(variants: dict[str, Callable[[int], Any]], reps: int, min_block_s: float,
                  device: torch.device) -> dict[str, dict[str, Any]]:
    """Median seconds per step of each variant, timed in interleaved blocks after a warm-up."""
    for run in variants.values():        # warm-up, and the block size that lasts min_block_s
        for s in range(2):
            run(s)
    sync(device)
    tic = time.perf_counter()
    next(iter(variants.values()))(2)
    sync(device)
    per_block = max(1, math.ceil(min_block_s / max(time.perf_counter() - tic, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in variants}
    step = 3
    for _ in range(reps):
        for name, run in variants.items():
            sync(device)
            tic = time.perf_counter()
            for _ in range(per_block):
                run(step)
                step += 1
            sync(device)
            times[name].append((time.perf_counter() - tic) / per_block)
    return {name: {"s_per_step": statistics.median(ts), "steps_per_s": 1 / statistics.median(ts),
                   "blocks_s_per_step": ts, "steps_per_block": per_block} for name, ts in times.items()}


def measure_preset(preset: Preset, device: torch.device, reps: int, min_block_s: float,
                   peaks: dict[str, float]) -> dict[str, Any]:
    """steps/s of the baseline, fp32 and bf16 steps, their GFLOP/s and fractions of the peak."""
    cfg, model, data = build(preset, device)
    flops = step_flops(copy.deepcopy(model), data)
    index = torch.arange(len(data))
    trainees = {name: Trainee(copy.deepcopy(model), cfg, current=name != "baseline")
                for name in ("baseline", "fp32", "bf16")}
    batches = BatchSource(data, device)
    timed = time_variants({
        "baseline": lambda s: baseline_step(trainees["baseline"], data, index, s, cfg),
        "fp32": lambda s: current_step(trainees["fp32"], batches, index, s, cfg, bf16=False),
        "bf16": lambda s: current_step(trainees["bf16"], batches, index, s, cfg, bf16=True),
    }, reps, min_block_s, device)
    for name, entry in timed.items():
        entry["gflops"] = flops * entry["steps_per_s"] / 1e9
        entry["peak_fraction"] = entry["gflops"] / peaks["bf16" if name == "bf16" else "fp32"]
        entry["speedup_vs_baseline"] = entry["steps_per_s"] / timed["baseline"]["steps_per_s"]
    best = max(("fp32", "bf16"), key=lambda name: timed[name]["steps_per_s"])
    return {
        "config": preset.config, "batch": len(data), "tokens_per_sequence": preset.length,
        "token_shape": list(preset.token_shape), "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_step": flops / 1e9, "best_variant": best,
        "steps_per_s": timed[best]["steps_per_s"], "gflops": timed[best]["gflops"],
        "peak_fraction": timed[best]["peak_fraction"],
        "speedup_vs_baseline": timed[best]["speedup_vs_baseline"],
        "speedup_fp32_vs_baseline": timed["fp32"]["speedup_vs_baseline"],
        "variants": timed,
    }


def gpu_budget(preset: Preset) -> dict[str, Any]:
    """FLOPs of the whole training run of the domain's GPU preset, and its expected hours at
    ASSUMED_GPU_TFLOPS (FLOPs per step are linear in the batch, so they are counted at batch 2)."""
    assert preset.gpu_config is not None
    cfg, model, data = build(preset, torch.device("cpu"), config=preset.gpu_config, batch=2)
    per_sequence = step_flops(model, data) / len(data)
    total = per_sequence * cfg.train.batch_size * cfg.train.steps
    return {"config": preset.gpu_config, "parameters": sum(p.numel() for p in model.parameters()),
            "batch": cfg.train.batch_size, "steps": cfg.train.steps,
            "gflop_per_step": per_sequence * cfg.train.batch_size / 1e9, "total_pflop": total / 1e15,
            "assumed_tflops": ASSUMED_GPU_TFLOPS, "expected_hours": total / (ASSUMED_GPU_TFLOPS * 1e12) / 3600}


def real_sequences(preset: Preset, cfg: RunConfig, quick: bool) -> Sequences:
    """The preset's own training data, as its trainer builds it (smaller where that is slow to make)."""
    if cfg.data.name == "maze2d":
        from dforce.data.maze2d import load_or_generate
        from dforce.data.maze2d_tokens import planning_sequences

        p = cfg.planning
        walk = load_or_generate(p.maze, steps=20_000 if quick else 200_000, seed=p.dataset_seed, progress=False)
        return planning_sequences(walk, p.frame_stack, cfg.data.length, 2048, cfg.data.seed)
    if cfg.data.name == "timeseries":
        from dforce.forecasting.model import prepare, training_sequences

        return training_sequences(prepare(cfg.forecast))
    if cfg.data.name == "imitation":
        from dforce.imitation.train import training_sequences as imitation_sequences

        return imitation_sequences(cfg)
    if cfg.data.name == "moving_mnist":
        from dforce.tasks.video import video_data

        return video_data(replace(cfg.data, sequences=256 if quick else 2048), cfg.video)
    raise ValueError(f"no real data builder for {cfg.data.name!r}")


def loss_curves(preset: Preset, device: torch.device, steps: int, quick: bool) -> dict[str, Any]:
    """fp32 and bf16 training from the same weights on the same batches of real data."""
    cfg = load_config(REPO_ROOT / preset.config)
    try:
        data = real_sequences(preset, cfg, quick)
    except (OSError, ValueError, ImportError) as err:
        return {"skipped": f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"}
    torch.manual_seed(0)
    model = DiffusionForcingModel(data.token_shape, data.cond_dim, cfg.model, cfg.diffusion, cfg.sampling)
    model.normalizer.fit(data.x)
    model.to(device)
    batch = min(preset.batch or cfg.train.batch_size, len(data))
    order = torch.Generator().manual_seed(1)
    indices = [torch.randint(len(data), (batch,), generator=order) for _ in range(steps)]
    train_cfg = replace(cfg, train=replace(cfg.train, warmup=min(cfg.train.warmup, steps // 5), steps=steps))
    curves: dict[str, list[float]] = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        t = Trainee(copy.deepcopy(model), cfg)
        batches = BatchSource(data, device)
        curves[name] = [current_step(t, batches, indices[s], s, train_cfg, bf16) for s in range(steps)]
    tail = max(1, min(100, steps // 5))
    means = {name: statistics.fmean(c[-tail:]) for name, c in curves.items()}
    return {"steps": steps, "batch": batch, "sequences": len(data), "curves": curves,
            f"last_{tail}_mean": means, "bf16_over_fp32": means["bf16"] / means["fp32"]}


def equal_size_transformer(gru_params: int, preset: Preset, cfg: RunConfig) -> ModelConfig:
    """A causal transformer (depth 2) whose width brings its parameter count nearest the GRU's."""
    best: tuple[int, ModelConfig] | None = None
    for width in range(32, 513, 8):
        mc = ModelConfig(backbone="transformer", width=width, depth=2, heads=4)
        n = sum(p.numel() for p in DiffusionForcingModel(preset.token_shape, preset.cond_dim, mc,
                                                         cfg.diffusion).parameters())
        if best is None or abs(n - gru_params) < best[0]:
            best = (abs(n - gru_params), mc)
    assert best is not None
    return best[1]


def planner_backbones(device: torch.device, reps: int, min_block_s: float) -> dict[str, Any]:
    """GRU vs causal transformer of equal size: training steps/s (fp32, bf16) and one plan's latency."""
    preset = PRESETS[0]
    cfg, gru, data = build(preset, device)
    backbones = {"gru": gru}
    n_gru = sum(p.numel() for p in gru.parameters())
    backbones["transformer"] = build(preset, device, equal_size_transformer(n_gru, preset, cfg))[1]
    out: dict[str, Any] = {}
    index = torch.arange(len(data))
    batches = BatchSource(data, device)
    for name, model in backbones.items():
        trainees = {v: Trainee(copy.deepcopy(model), cfg) for v in ("fp32", "bf16")}
        timed = time_variants({v: (lambda s, v=v: current_step(trainees[v], batches, index, s, cfg, v == "bf16"))
                               for v in trainees}, reps, min_block_s, device)
        model.eval()
        plans = cfg.planning.mcg_samples
        context = data.x[:plans, :1].to(device)

        def plan(_: int, model: DiffusionForcingModel = model) -> None:
            model.rollout(preset.length - 1, context, cond=None if data.cond is None
                          else data.cond[:plans].to(device), generator=torch.Generator(device).manual_seed(0))

        latency = time_variants({"plan": plan}, max(2, reps // 2), min_block_s, device)["plan"]["s_per_step"]
        out[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                     "model": {"width": model.model_cfg.width, "depth": model.model_cfg.depth},
                     "train_steps_per_s": {v: timed[v]["steps_per_s"] for v in timed},
                     "plan_latency_s": latency, "plan": {"batch": plans, "tokens": preset.length,
                                                         "scheduling": cfg.sampling.scheduling,
                                                         "steps": cfg.sampling.steps}}
    out["transformer_over_gru_training"] = (out["transformer"]["train_steps_per_s"]["bf16"]
                                            / out["gru"]["train_steps_per_s"]["bf16"])
    out["transformer_over_gru_plan_latency"] = out["transformer"]["plan_latency_s"] / out["gru"]["plan_latency_s"]
    return out


def batch_scan(preset: Preset, device: torch.device, factors: tuple[int, ...], reps: int,
               min_block_s: float) -> dict[str, Any]:
    """Sequences/s of today's bf16 step at multiples of the preset's batch, against the baseline
    step at the preset's own batch (interleaved): whether larger batches buy throughput here."""
    cfg, model, data = build(preset, device)
    base_batch = len(data)
    baseline = Trainee(copy.deepcopy(model), cfg, current=False)
    variants: dict[str, Callable[[int], Any]] = {
        "baseline": lambda s: baseline_step(baseline, data, torch.arange(base_batch), s, cfg)}
    for f in factors:
        big = build(preset, device, batch=base_batch * f)[2]
        t, source = Trainee(copy.deepcopy(model), cfg), BatchSource(big, device)
        variants[f"bf16 x{f}"] = (lambda s, t=t, source=source, n=len(big):
                                  current_step(t, source, torch.arange(n), s, cfg, bf16=True))
    timed = time_variants(variants, reps, min_block_s, device)
    batch = {"baseline": base_batch, **{f"bf16 x{f}": base_batch * f for f in factors}}
    out = {name: {"batch": batch[name], "steps_per_s": t["steps_per_s"],
                  "sequences_per_s": t["steps_per_s"] * batch[name]} for name, t in timed.items()}
    for entry in out.values():
        entry["throughput_vs_baseline"] = entry["sequences_per_s"] / out["baseline"]["sequences_per_s"]
    return out


# ---- report ---------------------------------------------------------------------------------

def plot_curves(curves: dict[str, Any], path: Path) -> Path | None:
    """A panel per preset: the fp32 and bf16 loss curves (smoothed), same weights and batches."""
    shown = {name: c for name, c in curves.items() if "curves" in c}
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.0), squeeze=False)
    for ax, (name, c) in zip(axes[0], shown.items()):
        for variant, values in c["curves"].items():
            v = torch.tensor(values)
            width = max(1, len(v) // 25)
            smooth = v.unfold(0, width, 1).mean(1) if len(v) >= width else v
            ax.plot(range(width, width + len(smooth)), smooth, label=variant)
        ax.set(title=name, xlabel="step", yscale="log")
        ax.legend()
    axes[0][0].set_ylabel("training loss")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary(metrics: dict[str, Any]) -> str:
    lines = [f"GEMM peak: fp32 {metrics['gemm_peak_gflops']['fp32']:.1f} GFLOP/s, "
             f"bf16 {metrics['gemm_peak_gflops']['bf16']:.1f} GFLOP/s",
             f"{'preset':12s} {'baseline':>9s} {'fp32':>9s} {'bf16':>9s}  speedup  GFLOP/s  of peak"]
    for name, p in metrics["presets"].items():
        v = p["variants"]
        lines.append(f"{name:12s} {v['baseline']['steps_per_s']:9.2f} {v['fp32']['steps_per_s']:9.2f} "
                     f"{v['bf16']['steps_per_s']:9.2f}  {p['speedup_vs_baseline']:6.2f}x {p['gflops']:8.1f} "
                     f"{100 * p['peak_fraction']:7.1f}%")
    for name, c in metrics["bf16_training"].items():
        lines.append(f"bf16 loss / fp32 loss, {name}: " + (f"{c['bf16_over_fp32']:.3f}" if "curves" in c
                                                            else c["skipped"]))
    for name, g in metrics["gpu_presets"].items():
        lines.append(f"{g['config']}: {g['total_pflop']:.1f} PFLOP, about {g['expected_hours']:.1f} h "
                     f"at an assumed {g['assumed_tflops']:g} TFLOP/s")
    b = metrics.get("planner_backbones")
    if b:
        lines.append(f"planner: transformer/GRU training {b['transformer_over_gru_training']:.2f}x, "
                     f"plan latency {b['transformer_over_gru_plan_latency']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.efficiency", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    parser.add_argument("--reps", type=int, default=None, help="timed blocks per variant (default 5; quick 2)")
    parser.add_argument("--curve-steps", type=int, default=None, help="steps of each loss curve (default 500; quick 20)")
    parser.add_argument("--presets", default=None, help="comma-separated subset of " + ",".join(p.name for p in PRESETS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batch-scan", action="store_true",
                        help="only the batch scan (bf16 at 1x/2x/4x the preset batch vs the baseline step)")
    args = parser.parse_args(argv)
    device = distributed.resolve_device(args.device)
    torch.set_num_threads(args.threads)
    reps = args.reps or (2 if args.quick else 5)
    curve_steps = args.curve_steps or (20 if args.quick else 500)
    block = 0.3 if args.quick else 2.0
    names = args.presets.split(",") if args.presets else [p.name for p in PRESETS]
    unknown = sorted(set(names) - {p.name for p in PRESETS})
    if unknown:
        parser.error(f"--presets: unknown {', '.join(unknown)}")
    chosen = [p for p in PRESETS if p.name in names]
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    tic, load_start = time.time(), os.getloadavg()
    if args.batch_scan:
        return _write_batch_scan(args, chosen, device, reps, block, tic, load_start, argv)
    n = 512 if args.quick else 1536
    kernels = {"fp32": gemm_peak(torch.float32, device, n, 5), "bf16": gemm_peak(torch.bfloat16, device, n, 5)}
    peaks = {dtype: k["peak"] for dtype, k in kernels.items()}
    presets = {p.name: measure_preset(p, device, reps, block, peaks) for p in chosen}
    curves = {p.name: loss_curves(p, device, curve_steps, args.quick) for p in chosen if p.name != "video_gpu"}
    gpu = {p.name: gpu_budget(p) for p in chosen if p.gpu_config}
    metrics: dict[str, Any] = {"gemm_peak_gflops": peaks, "peak_kernels_gflops": kernels, "presets": presets,
                               "bf16_training": curves,
                               "gpu_presets": gpu}
    if "planner" in names:
        metrics["planner_backbones"] = planner_backbones(device, reps, block)
    largest = max(presets, key=lambda name: presets[name]["gflop_per_step"] / presets[name]["batch"])
    metrics["targets"] = {
        "speedup": TARGET_SPEEDUP, "peak_fraction": TARGET_PEAK_FRACTION, "largest_preset": largest,
        "speedup_met": {p.name: presets[p.name]["speedup_vs_baseline"] >= TARGET_SPEEDUP for p in chosen if p.target},
        "peak_fraction_met": presets[largest]["peak_fraction"] >= TARGET_PEAK_FRACTION,
    }
    picture = plot_curves(curves, out.with_name(out.stem + "-bf16-loss.png"))
    command = ["python", "-m", "benchmarks.efficiency", *(argv if argv is not None else sys.argv[1:])]
    write_result(out, metrics, wall_time_s=time.time() - tic, seeds={"init": 0, "batches": 1},
                 command=[shlex.join(command)], device=str(device), threads=args.threads,
                 load_average={"start": load_start, "end": os.getloadavg()},
                 pictures=[str(picture)] if picture else [],
                 method=__doc__.split("Measured in the same process,")[1].strip())
    print(summary(metrics))
    print(f"wrote {out}")
    return 0


def _write_batch_scan(args: argparse.Namespace, chosen: list[Preset], device: torch.device, reps: int, block: float,
                      tic: float, load_start: tuple[float, float, float], argv: list[str] | None) -> int:
    scan = {p.name: batch_scan(p, device, (1, 2, 4), reps, block) for p in chosen}
    out = args.out or DEFAULT_OUT.with_name("efficiency-batch.json")
    command = ["python", "-m", "benchmarks.efficiency", *(argv if argv is not None else sys.argv[1:])]
    write_result(out, {"batch_scan": scan}, wall_time_s=time.time() - tic, seeds={"init": 0}, command=[shlex.join(command)],
                 device=str(device), threads=args.threads, load_average={"start": load_start, "end": os.getloadavg()},
                 method=batch_scan.__doc__)
    for name, entries in scan.items():
        print(name + ": " + ", ".join(f"{k} (batch {e['batch']}) {e['throughput_vs_baseline']:.2f}x"
                                      for k, e in entries.items()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
