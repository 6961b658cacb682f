"""One readable training loop: AdamW, warmup + cosine decay, clipping, EMA, checkpoints, DDP.

Every random draw of step ``s`` on rank ``r`` comes from a generator seeded by
``(seed, r, s)`` and the data order from ``(seed, epoch)``, so a run killed and
resumed from a checkpoint takes exactly the same steps as one that never stopped.
The loop holds the run directory's lock, stops on a NaN loss or non-finite weights
before anything bad is written, and turns SIGTERM/SIGINT into a checkpoint and a clean exit.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..config import TrainConfig
from ..data.sequences import Sequences
from ..pipeline import DiffusionForcingModel
from . import checkpoint, distributed, run_dir as run_lock, signals
from .ema import EMA
from .errors import CheckpointError, TrainingDiverged, TrainingInterrupted
from .metrics import MetricsLogger

log = logging.getLogger(__name__)

Evaluate = Callable[[DiffusionForcingModel, int], dict[str, float]]


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to lr / 10 at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class BatchOrder:
    """Per-process batch indices for any step: DistributedSampler epochs cut into batches."""

    def __init__(self, data: Sequences, batch_size: int, proc: distributed.Process, seed: int):
        self.sampler = DistributedSampler(data, proc.world, proc.rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"train.batch_size={batch_size} exceeds the {len(self.sampler)} sequences per process")
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, torch.tensor(list(self.sampler))
        return self._order[j * self.batch_size:(j + 1) * self.batch_size]


def step_generator(seed: int, rank: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """An independent, reproducible stream for one step of one process, on ``device`` so that
    levels and noise are drawn where they are used (on CPU the stream is the same as ever)."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + rank) * 10_000_019 + step)


FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_config(cfg: TrainConfig) -> None:
    """Reject values no run can survive: an infinite or NaN lr turns every weight to NaN in one
    step, and one beyond float32 makes the optimizer itself fail with an overflow."""
    for name in ("lr", "weight_decay", "grad_clip", "ema_decay"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ValueError(f"train.{name}={value} must be a finite number (at most {FLOAT32_MAX:.3g})")


def train(
    model: DiffusionForcingModel,
    data: Sequences,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    evaluate: Evaluate | None = None,
    progress: bool = True,
) -> DiffusionForcingModel:
    """Train ``model`` on ``data``; returns the EMA model, also saved to ``run_dir/model``.

    Checkpoints go to ``run_dir/checkpoints`` every ``cfg.checkpoint_every`` steps and at
    the end. ``resume`` continues from the newest one. ``train.batch_size`` is per process.
    Raises TrainingDiverged (nothing non-finite is written), TrainingInterrupted after
    SIGTERM/SIGINT (a checkpoint of the current step is written first), and ValueError
    (CheckpointError, RunDirError) for a run directory or checkpoint that cannot be used.
    """
    check_config(cfg)
    run_dir = Path(run_dir)
    proc, device = distributed.setup(cfg.device)
    try:
        with run_lock.locked(run_dir) if proc.main else nullcontext(), signals.stop_requests() as stop:
            return _train(model, data, cfg, run_dir, proc, device, stop, resume, evaluate, progress)
    finally:
        distributed.teardown(proc)


def _train(model: DiffusionForcingModel, data: Sequences, cfg: TrainConfig, run_dir: Path,
           proc: distributed.Process, device: torch.device, stop: signals.StopRequest, resume: bool,
           evaluate: Evaluate | None, progress: bool) -> DiffusionForcingModel:
    if proc.main:
        checkpoint.clean(run_dir)      # safe: the lock says no other process writes here
    distributed.barrier(proc)          # the other ranks look for checkpoints only after the clean-up
    found = checkpoint.latest(run_dir)
    if found is not None and not resume:
        raise ValueError(f"{run_dir} already holds checkpoints; resume with --resume or choose another output directory")
    model.normalizer.fit(data.x)
    model.to(device)
    ema = EMA(model, cfg.ema_decay)
    opt = optimizer(model, cfg)
    start = 0
    if found is not None:
        start = checkpoint.load(found, model, ema.model, opt)
        log.info("resumed from %s (step %d)", found, start)
    net = DistributedDataParallel(model) if proc.world > 1 else model
    if cfg.compile:   # the module is still saved and averaged uncompiled: only the training call is compiled
        net = torch.compile(net)
    order = BatchOrder(data, cfg.batch_size, proc, cfg.seed)
    logger = MetricsLogger(run_dir, cfg.tensorboard, resume_from=start) if proc.main else None
    autocast = mixed_precision(cfg.bf16, device)
    fast_device_setup(device)
    batches = BatchSource(data, device)
    bar = _progress(start, cfg.steps, progress and proc.main)
    save = (lambda done: checkpoint.save(run_dir, done, model, ema.model, opt, cfg.keep_checkpoints)
            if proc.main else None)
    params = list(model.parameters())     # listed once: walking the module tree every step costs more than the check
    tic = time.time()
    try:
        for step in range(start, cfg.steps):
            asked = bool(stop.signum) or not distributed.parent_alive(proc)
            loss, stopping = _train_step(model, net, opt, batches, order(step), step, cfg, proc, autocast, asked)
            done = step + 1
            due = done % cfg.checkpoint_every == 0 or done == cfg.steps
            logging_now = done % cfg.log_every == 0 or done == cfg.steps
            if checks_every_step(device, proc) or logging_now or due or stopping:
                # On an accelerator reading the loss waits for the device, so it is read (and the
                # weights checked) only when logged or saved: nothing non-finite is ever written.
                value = float(loss)
                _check_finite(value, checkpoint.finite(params), done, run_dir)   # replicas are equal: all agree
                bar.set_postfix(loss=f"{value:.4f}")
            ema.update(model, step)
            bar.update(1)
            if logger and logging_now:
                logger.log(done, {"loss": value, "lr": learning_rate(step, cfg), "elapsed_s": time.time() - tic})
            if evaluate and cfg.eval_every and done % cfg.eval_every == 0 and proc.main:
                metrics = evaluate(ema.model, done)
                logger.log(done, {f"eval/{k}": v for k, v in metrics.items()})
            if due or (stopping and done < cfg.steps):
                save(done)
                distributed.barrier(proc)
            if stopping and done < cfg.steps:   # at the last step, finishing is the faster way out
                raise _interrupted(stop.signum or signal.SIGTERM, done, cfg.steps, run_dir)
        if proc.main:
            ema.model.save_pretrained(run_dir / "model")
    finally:
        bar.close()
        if logger:
            logger.close()
    return ema.model


def _check_finite(loss: float, weights_finite: bool, step: int, run_dir: Path) -> None:
    """Stop before anything is written when the loss (before the update) or the weights (after it) are not finite."""
    if math.isfinite(loss) and weights_finite:
        return
    what = f"loss became {loss}" if not math.isfinite(loss) else "the weights became non-finite after the update"
    try:
        good = checkpoint.latest(run_dir)
    except CheckpointError:
        good = None
    where = f"the last good checkpoint {good} is untouched" if good else "no checkpoint was written"
    raise TrainingDiverged(f"{what} at step {step}; stopping ({where})")


def _interrupted(signum: int, done: int, steps: int, run_dir: Path) -> TrainingInterrupted:
    where = checkpoint.checkpoints_dir(run_dir) / f"step-{done:08d}"
    return TrainingInterrupted(signum, f"stopped by {TrainingInterrupted.name(signum)} at step {done} of {steps}; "
                                       f"saved {where}; continue with --resume")


def _train_step(model: DiffusionForcingModel, net: torch.nn.Module, opt: torch.optim.Optimizer,
                batches: "BatchSource", index: torch.Tensor, step: int, cfg: TrainConfig,
                proc: distributed.Process, autocast: Any, stop: bool) -> tuple[torch.Tensor, bool]:
    """One optimisation step; returns (the loss averaged over processes, a 0-d tensor that
    stays on the device, and whether any process asked to stop).

    With several processes the stop request rides on the loss all-reduce, so every process
    learns of it in the same step at no extra cost and all of them stop after that step.
    A non-finite loss skips the update only where it is read at once (one process on the
    CPU); elsewhere the caller finds it, or the weights it spoilt, before anything is saved.
    """
    for group in opt.param_groups:
        group["lr"] = learning_rate(step, cfg)
    x0, cond, mask = batches(index)
    k, noise = model.draw_levels_and_noise(x0, mask, step_generator(cfg.seed, proc.rank, step, batches.device))
    model.train()
    with autocast:
        loss = net(x0, k, noise, mask, cond)
    value = loss.detach().float()
    stopping = stop
    if proc.world > 1:
        value, asked = distributed.mean_across(torch.stack([value, value.new_tensor(float(stop))]), proc).unbind()
        stopping = bool(asked > 0)
    if checks_every_step(batches.device, proc) and not math.isfinite(float(value)):
        return value, stopping   # every process sees the same mean, so all stop together
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return value, stopping


def optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; about a fifth faster per step
    than the per-tensor loop for the small presets on a CPU) where this torch and device have it."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):   # no fused kernel for this device or dtype
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def checks_every_step(device: torch.device, proc: distributed.Process) -> bool:
    """Whether the loss is read on the host every step: free on one CPU process, and with
    several processes the stop flag's all-reduce waits for the step anyway."""
    return device.type == "cpu" or proc.world > 1


def mixed_precision(bf16: bool, device: torch.device) -> Any:
    """bf16 autocast on the training device (CUDA, or a CPU with bf16 matrix units) or nothing."""
    return torch.autocast(device.type, torch.bfloat16) if bf16 else nullcontext()


def fast_device_setup(device: torch.device) -> None:
    """cuDNN autotuning and TF32 matmuls on CUDA: shapes are fixed per run, and TF32 keeps
    fp32 range with a 10-bit mantissa, ample for a denoiser's gradients."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class BatchSource:
    """Training batches (x0, cond, mask) on the training device.

    On an accelerator a dataset up to ``resident_bytes`` is copied there once, so a step
    gathers its rows on the device instead of copying them from host memory; larger ones are
    pinned and copied asynchronously. Data drawn afresh per batch are drawn on the host as ever.
    """

    def __init__(self, data: Sequences, device: torch.device, resident_bytes: int = 2 << 30):
        self.data, self.device = data, device
        self._tensors: tuple[torch.Tensor | None, ...] | None = None
        stored = [t for t in (data.x, data.cond, data.mask) if t is not None]
        gathers = type(data).batch is Sequences.batch    # not data drawn afresh per batch
        if device.type != "cpu" and gathers and stored:
            size = sum(t.numel() * t.element_size() for t in stored)
            place = ((lambda t: t.to(device)) if size <= resident_bytes else (lambda t: t.pin_memory()))
            self._tensors = tuple(None if t is None else place(t) for t in (data.x, data.cond, data.mask))

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self._tensors is None:
            rows = self.data.batch(index)
        else:
            at = index.to(self._tensors[0].device)
            rows = tuple(None if t is None else t[at] for t in self._tensors)
        return tuple(None if t is None else t.to(self.device, non_blocking=True) for t in rows)  # type: ignore[return-value]


def _progress(start: int, total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())
