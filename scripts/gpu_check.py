"""GPU check: the CUDA tests, steps/s and samples/s of every preset (fp32 and bf16), and a timed training run.

Run through ``scripts/gpu_check.sh`` (which documents the settings), or directly::

    python scripts/gpu_check.py --device cuda --out outputs/gpu_check --minutes 2 --preset configs/video_mnist64.yaml

Needs PyTorch and dforce's dependencies, no network and nothing beside the checkout: data
the presets read from ``../shared/data`` is looked up under ``--data`` instead. Without it,
Moving MNIST renders from a stand-in digit file (compute is the same, the model learns
rings instead of digits) and presets whose token shape depends on a dataset (forecasting)
are reported as skipped, with the reason.

Steps:

1. ``tests/test_cuda.py`` on the device (``DFORCE_TEST_DEVICE`` set for the CPU).
2. Per preset, per precision: a model built from the preset and a batch of tokens of its
   shape (random values: compute does not depend on them), then as many training steps
   (forward, backward, AdamW) and as many sampling rollouts (one training-length sequence
   per sample, the preset's scheduling and steps) as fit in a few seconds. bf16 is autocast.
3. ``dforce train PRESET`` for about ``--minutes``: the number of steps is what the measured
   rate allows in that time. Then ``dforce sample`` from the trained model.
4. ``OUT/gpu.json`` (and, on CUDA and not ``--tiny``, ``results/bench/gpu.json``), the
   model, its metrics and samples under ``OUT``; every file must be under 16 MiB.

The whole run keeps to ``--budget`` seconds (default 510: inside 9 minutes): training is
shortened, or later presets skipped, to fit. ``--tiny`` shrinks every model and batch for a
quick CPU dry run of the whole path.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))          # runnable from a checkout without installing

import torch  # noqa: E402

from dforce import devices  # noqa: E402
from dforce.config import RunConfig, load_config, to_dict  # noqa: E402
from dforce.pipeline import DiffusionForcingModel  # noqa: E402
from dforce.train.loop import mixed_precision  # noqa: E402

FILE_LIMIT = 16 * 2**20                    # bytes, every file written under OUT
SHARED_DATA = "../shared/data"              # where presets point for data kept beside the checkout
VIDEO_SEQUENCES = 2_000                     # Moving MNIST videos rendered for the timed run (8000 take ~1 min)
ATARI_ACTIONS = 18                          # Atari's full action set: the conditioning width when ale-py is absent
TINY = ["model.width=8", "model.depth=1", "model.heads=2", "train.batch_size=2", "sampling.steps=2"]
RESERVE_S = 45                              # kept back for sampling, writing and process start-ups


# ---- helpers --------------------------------------------------------------------------------------

def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    return mixed_precision(precision == "bf16", device)


def data_path(value: str | None, data: Path | None) -> str | None:
    """A preset's ``../shared/data/...`` path under ``data`` instead (None when there is no such file)."""
    if value is None or not value.startswith(SHARED_DATA):
        return value
    if data is None:
        return None
    moved = data / value[len(SHARED_DATA):].lstrip("/")
    return str(moved) if moved.exists() else None


def mnist_dir(data: Path | None, scratch: Path) -> tuple[str, str]:
    """(directory with MNIST images, what it is): ``DATA/mnist`` when it holds them, else a stand-in file."""
    from dforce.data.moving_mnist import IMAGE_FILES, write_stand_in

    if data is not None:
        for name in IMAGE_FILES:
            if any((data / "mnist" / f).is_file() for f in (name, name + ".gz")):
                return str(data / "mnist"), "MNIST"
    target = scratch / "stand_in_mnist"
    if not (target / f"{IMAGE_FILES[0]}.gz").is_file():
        write_stand_in(target)
    return str(target), "stand-in digits (rings), no MNIST given"


# ---- 1. tests -------------------------------------------------------------------------------------

def run_tests(device: torch.device, timeout: float) -> dict[str, Any]:
    """``tests/test_cuda.py`` on ``device``: exit code, the closing summary line and the wall time."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"rc": None, "summary": "not run: pytest is not installed", "ok": False}
    tic = time.time()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env={**env(), "DFORCE_TEST_DEVICE": device.type},
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "summary": f"timed out after {timeout:.0f} s", "ok": False, "seconds": round(timeout, 1)}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return {"rc": done.returncode, "summary": lines[-1] if lines else done.stderr.strip()[-300:],
            "ok": done.returncode == 0, "seconds": round(time.time() - tic, 1)}


# ---- 2. throughput --------------------------------------------------------------------------------

def preset_config(path: Path, tiny: bool) -> RunConfig:
    return load_config(str(path), TINY if tiny else [])


def token_layout(cfg: RunConfig, data: Path | None) -> tuple[tuple[int, ...], int, int, str]:
    """(token shape, cond_dim, tokens per training sequence, where the shape came from) for a preset.

    Raises LookupError naming what is missing when the shape needs a dataset that is not here.
    """
    d = cfg.data
    length = d.window or d.length
    if d.name in ("oscillators", "cross", "linear_gaussian"):
        from dforce.synthetic.data import generate

        return tuple(generate(d.name, 2, d.length, d.seed, d.noise).shape[2:]), 0, length, "the preset's generator"
    if d.name == "moving_mnist":
        return (1, cfg.video.size, cfg.video.size), 0, length, "the preset's frame size"
    if d.name == "atari":
        return (1, cfg.video.size, cfg.video.size), atari_actions(cfg.video.game), length, "the preset's frame size"
    if d.name == "maze2d":
        from dforce.data.maze2d_tokens import COND_DIM, FRAME_DIM

        return (FRAME_DIM * cfg.planning.frame_stack,), COND_DIM, length, "the preset's frame stack"
    if d.name == "imitation":
        from dforce.data.maze2d_tokens import FRAME_DIM
        from dforce.imitation.tokens import cond_dim

        i = cfg.imitation
        return (FRAME_DIM * i.frame_stack,), cond_dim(i.frame_stack, i.unknown_steps), length, "the preset's frame stack"
    if d.name == "timeseries":
        dataset = data_path(cfg.forecast.dataset, data)
        if dataset is None:
            raise LookupError(f"forecast.dataset {cfg.forecast.dataset} is not here (give --data with it)")
        from dataclasses import replace

        from dforce.forecasting.model import prepare, training_sequences

        try:
            seqs = training_sequences(prepare(replace(cfg.forecast, dataset=dataset)))
        except (ImportError, OSError, ValueError) as err:
            raise LookupError(f"forecast.dataset {dataset}: {type(err).__name__}: {err}") from None
        return seqs.token_shape, seqs.cond_dim, seqs.x.shape[1], f"the dataset {dataset}"
    raise LookupError(f"data.name={d.name!r} has no token layout here")


@functools.lru_cache(maxsize=None)
def atari_actions(game: str) -> int:
    """The game's minimal action set size (the conditioning width), from ale-py when it is installed."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        import ale_py
        from ale_py import roms

        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)          # the emulator prints a banner from C
        os.close(null)
        ale = ale_py.ALEInterface()
        ale.loadROM(roms.get_rom_path(game))
        return len(ale.getMinimalActionSet())
    except Exception:   # ale-py or the ROM absent: the full action set (a Linear's input width, no more)
        return ATARI_ACTIONS
    finally:
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])


def measure(fn, device: torch.device, seconds: float, warmup: int = 1) -> float:
    """Calls of ``fn`` per second over at least ``seconds`` (and 2 calls), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    calls, tic = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - tic < seconds:
        fn()
        calls += 1
        sync(device)
    return calls / (time.perf_counter() - tic)


def throughput(cfg: RunConfig, shape: tuple[int, ...], cond_dim: int, length: int, device: torch.device,
               seconds: float) -> dict[str, Any]:
    """Training steps/s and sampled sequences/s of the preset's model, fp32 and bf16."""
    torch.manual_seed(0)
    model = DiffusionForcingModel(shape, cond_dim, cfg.model, cfg.diffusion, cfg.sampling).to(device)
    B = cfg.train.batch_size
    x0 = torch.rand(B, length, *shape, device=device)
    cond = torch.randn(B, length, cond_dim, device=device) if cond_dim else None
    model.normalizer.fit(x0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    chunk = min(cfg.sampling.chunk, length)
    levels = model.scheduling_matrix(horizon=chunk)
    n_samples = min(B, 16)
    sample_cond = None if cond is None else cond[:n_samples]
    out: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters()), "batch": B, "length": length,
                           "sample_batch": n_samples, "sampling": f"{cfg.sampling.scheduling}, {cfg.sampling.steps} steps, "
                                                               f"chunk {chunk}"}
    for precision in ("fp32", "bf16"):
        def step() -> None:
            k, noise = model.draw_levels_and_noise(x0, None, None)
            model.train()
            with autocast(device, precision):
                loss = model(x0, k.to(device), noise.to(device), None, cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        @torch.no_grad()
        def roll() -> None:
            model.eval()
            with autocast(device, precision):
                model.rollout(length, batch=n_samples, levels=levels, cond=sample_cond,
                              generator=devices.generator(0, device))
        steps = measure(step, device, seconds, warmup=2)
        samples = measure(roll, device, seconds) * n_samples
        out[precision] = {"steps_per_s": round(steps, 3), "train_tokens_per_s": round(steps * B * length, 1),
                          "samples_per_s": round(samples, 3), "sample_tokens_per_s": round(samples * length, 1)}
    return out


def bench(configs: list[Path], device: torch.device, data: Path | None, tiny: bool, seconds: float,
          deadline: float) -> list[dict[str, Any]]:
    rows = []
    for path in configs:
        name = path.stem
        if time.time() + 6 * seconds > deadline:
            rows.append({"preset": name, "skipped": "time budget spent"})
            continue
        cfg = preset_config(path, tiny)
        try:
            shape, cond_dim, length, source = token_layout(cfg, data)
        except (LookupError, ImportError) as err:
            rows.append({"preset": name, "skipped": str(err)})
            print(f"{name}: skipped ({err})", flush=True)
            continue
        tic = time.time()
        row = {"preset": name, "data": cfg.data.name, "backbone": cfg.model.backbone, "tokens": list(shape),
               "cond_dim": cond_dim, "shape_from": source, "inputs": "random tokens of the preset's shape",
               **throughput(cfg, shape, cond_dim, length, device, seconds)}
        row["seconds"] = round(time.time() - tic, 1)
        rows.append(row)
        print(f"{name}: fp32 {row['fp32']['steps_per_s']:.2f} steps/s {row['fp32']['samples_per_s']:.2f} samples/s | "
              f"bf16 {row['bf16']['steps_per_s']:.2f} steps/s {row['bf16']['samples_per_s']:.2f} samples/s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ---- 3. the timed training run --------------------------------------------------------------------

def run_overrides(cfg: RunConfig, data: Path | None, scratch: Path, tiny: bool) -> tuple[list[str], dict[str, str]]:
    """Overrides that point the preset at the data found here (and shrink it for --tiny); what each says."""
    out, notes = list(TINY) if tiny else [], {}
    if cfg.data.name == "moving_mnist":
        where, what = mnist_dir(data, scratch)
        out += [f"video.mnist_dir={where}", f"video.data_dir={scratch / 'moving_mnist'}",
                f"data.sequences={min(cfg.data.sequences, 16 if tiny else VIDEO_SEQUENCES)}"]
        notes["video"] = f"{what}; data.sequences capped at {VIDEO_SEQUENCES} (rendering the preset's take longer than the run)"
        if tiny:
            out.append("data.length=4")
    if cfg.data.name == "timeseries":
        dataset = data_path(cfg.forecast.dataset, data)
        if dataset is None:
            raise LookupError(f"forecast.dataset {cfg.forecast.dataset} is not here (give --data with it)")
        out.append(f"forecast.dataset={dataset}")
    if cfg.data.name in ("maze2d", "imitation", "atari") and tiny:
        raise LookupError(f"{cfg.data.name} presets generate or record their data first: too slow for a dry run")
    return out, notes


def train_preset(preset: Path, device: torch.device, out: Path, data: Path | None, tiny: bool, seconds: float,
                 rate: float | None) -> dict[str, Any]:
    """``dforce train preset`` for about ``seconds`` (steps from the measured ``rate``), then ``dforce sample``."""
    cfg = preset_config(preset, tiny)
    scratch = out / "scratch"
    overrides, notes = run_overrides(cfg, data, scratch, tiny)
    rate = rate or 1.0
    steps = max(4, int(rate * seconds * 0.85))      # 0.85: EMA, logging and batching cost a little more than the loop
    run = out / "train"
    if run.exists():
        shutil.rmtree(run)
    argv = [sys.executable, "-m", "dforce", "train", str(preset), *overrides, f"train.steps={steps}",
            f"train.checkpoint_every={steps}", f"train.eval_every={steps}", "train.tensorboard=false",
            f"train.log_every={max(1, steps // 50)}", f"train.warmup={min(cfg.train.warmup, max(1, steps // 10))}",
            "--device", device.type, "--out", str(run), "--no-progress"]
    tic = time.time()
    done = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True)
    wall = time.time() - tic
    if done.returncode != 0:
        raise RuntimeError(f"dforce train failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    shutil.rmtree(run / "checkpoints", ignore_errors=True)      # optimizer state: not needed, and large
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in rows if "loss" in r]
    evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/")}
    sample_dir = out / "samples"
    sampled = subprocess.run(sample_command(cfg, run, sample_dir, device), cwd=ROOT, env=env(), capture_output=True,
                             text=True)
    metrics = {
        "preset": preset.stem, "device": device.type, "steps": steps, "wall_s": round(wall, 1),
        "train_s": round(losses[-1]["elapsed_s"], 1) if losses else None,
        "steps_per_s": round(steps / losses[-1]["elapsed_s"], 3) if losses and losses[-1]["elapsed_s"] else None,
        "first_loss": losses[0]["loss"] if losses else None, "final_loss": losses[-1]["loss"] if losses else None,
        "eval": evals, "notes": notes, "overrides": overrides, "command": " ".join(["dforce", *argv[3:]]),
        "sample": {"rc": sampled.returncode, "files": sorted(str(p.relative_to(out)) for p in sample_dir.glob("*"))
                   if sample_dir.is_dir() else [], "error": sampled.stderr.strip()[-500:] if sampled.returncode else None},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def sample_command(cfg: RunConfig, run: Path, out: Path, device: torch.device) -> list[str]:
    """The command that samples the trained model: ``dforce sample`` (synthetic, video) or ``dforce forecast``;
    planning and imitation are measured by their ``dforce eval`` (episodes in MuJoCo), not run here."""
    dforce = [sys.executable, "-m", "dforce"]
    if cfg.data.name == "timeseries":
        chosen = run / "best" if (run / "best").is_dir() else run / "model"
        return [*dforce, "forecast", str(chosen), "--samples", "8", "--device", device.type, "--out", str(out)]
    if cfg.data.name in ("maze2d", "imitation"):
        return [sys.executable, "-c", f"print('no sample command for {cfg.data.name}: use dforce eval')"]
    return [*dforce, "sample", str(run / "model"), "--batch", "4", "--context", "2",
            "--length", str(2 * (cfg.data.window or cfg.data.length)), "--device", device.type, "--out", str(out)]


# ---- 4. the record --------------------------------------------------------------------------------

def oversized(out: Path) -> list[str]:
    return [f"{p.relative_to(out)} ({p.stat().st_size / 2**20:.1f} MiB)" for p in sorted(out.rglob("*"))
            if p.is_file() and p.stat().st_size >= FILE_LIMIT]


def hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--out", type=Path, default=Path("outputs/gpu_check"))
    p.add_argument("--minutes", type=float, default=2.0, help="training minutes for --preset (default 2)")
    p.add_argument("--preset", type=Path, default=Path("configs/video_mnist64.yaml"))
    p.add_argument("--data", type=Path, default=None,
                   help="a folder laid out like ../shared/data (mnist/, timeseries/, ...); default: none")
    p.add_argument("--tiny", action="store_true", help="tiny models and batches: a quick dry run of the whole path")
    p.add_argument("--budget", type=float, default=510.0, help="seconds for the whole run (default 510)")
    p.add_argument("--seconds", type=float, default=None, help="timing window per measurement (default 1, tiny 0.2)")
    p.add_argument("--presets", default="configs/*.yaml", help="comma-separated globs of the presets to measure")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--record", type=Path, default=None,
                   help="where gpu.json goes besides OUT (default results/bench/gpu.json on CUDA without --tiny)")
    args = p.parse_args(argv)

    start = time.time()
    deadline = start + args.budget
    try:
        device = devices.resolve(args.device)
    except ValueError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    if args.data is not None and not args.data.is_dir():
        print(f"gpu_check: --data {args.data} is not a directory", file=sys.stderr)
        return 2
    preset = args.preset if args.preset.is_absolute() else ROOT / args.preset
    if not preset.is_file():
        print(f"gpu_check: --preset {args.preset} not found", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seconds = args.seconds if args.seconds is not None else (0.2 if args.tiny else 1.0)
    train_s = max(0.0, args.minutes * 60)
    record: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "hardware": hardware(device),
                              "tiny": args.tiny, "budget_s": args.budget}
    failures = []

    # 1. tests
    if args.skip_tests:
        record["tests"] = {"summary": "skipped (--skip-tests)"}
    else:
        print("== tests/test_cuda.py", flush=True)
        record["tests"] = run_tests(device, timeout=max(30.0, min(240.0, deadline - time.time() - train_s - RESERVE_S)))
        print(record["tests"]["summary"], flush=True)
        if not record["tests"]["ok"]:
            failures.append(f"tests: {record['tests']['summary']}")

    # 2. throughput of every preset, leaving time for the training run
    print("== throughput", flush=True)
    configs = sorted({path for pattern in args.presets.split(",") for path in ROOT.glob(pattern.strip())})
    record["presets"] = bench(configs, device, args.data, args.tiny, seconds, deadline - train_s - RESERVE_S)

    # 3. the timed training run, shortened to what is left of the budget
    left = deadline - time.time() - RESERVE_S
    train_s = min(train_s, left)
    print(f"== training {preset.stem} for {train_s:.0f} s", flush=True)
    if train_s < 1:
        record["training"] = {"skipped": f"no time left in the budget of {args.budget:.0f} s"}
        failures.append("training: no time left")
    else:
        measured = next((r for r in record["presets"] if r["preset"] == preset.stem and "fp32" in r), None)
        cfg = preset_config(preset, args.tiny)
        precision = "bf16" if cfg.train.bf16 and device.type == "cuda" else "fp32"
        rate = measured[precision]["steps_per_s"] if measured else None
        try:
            record["training"] = train_preset(preset, device, out, args.data, args.tiny, train_s, rate)
            print(f"{record['training']['steps']} steps in {record['training']['train_s']} s, "
                  f"loss {record['training']['first_loss']:.4f} -> {record['training']['final_loss']:.4f}", flush=True)
            if record["training"]["sample"]["rc"] != 0:
                failures.append(f"sample: {record['training']['sample']['error']}")
        except (LookupError, RuntimeError, OSError) as err:
            record["training"] = {"error": str(err)}
            failures.append(f"training: {err}")
    shutil.rmtree(out / "scratch", ignore_errors=True)

    # 4. the record, and the size limit
    big = oversized(out)
    if big:
        failures.append(f"files of 16 MiB or more: {', '.join(big)}")
    record["wall_s"] = round(time.time() - start, 1)
    record["failures"] = failures
    text = json.dumps(record, indent=2) + "\n"
    (out / "gpu.json").write_text(text)
    target = args.record or (ROOT / "results" / "bench" / "gpu.json" if device.type == "cuda" and not args.tiny else None)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"== wrote {out / 'gpu.json'}{f' and {target}' if target else ''} in {record['wall_s']:.0f} s", flush=True)
    for failure in failures:
        print(f"gpu_check: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
