"""Training checkpoints: ``run/checkpoints/step-XXXXXXXX/`` plus a ``latest`` pointer.

Each checkpoint directory is a loadable pretrained model (``config.json`` +
``model.safetensors`` with the EMA weights) plus the training state:
``weights.safetensors`` (raw weights), ``optimizer.pt`` (read back with
``weights_only=True``), ``trainer.json`` (step) and ``manifest.json``, the sha256 of
every other file (safetensors has no checksum of its own). Directories are complete
before they get their final name and ``latest`` is replaced atomically, so a
killed run always resumes from a whole checkpoint; loading verifies every hash, so
a checkpoint damaged later is reported by file name instead of half-loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .. import atomic
from ..pipeline import DiffusionForcingModel
from .errors import CheckpointError, TrainingDiverged, one_line

log = logging.getLogger(__name__)

FILES = ("config.json", "model.safetensors", "weights.safetensors", "optimizer.pt", "trainer.json")
MANIFEST = "manifest.json"
FORMAT = "dforce-checkpoint"
_STEP = re.compile(r"step-(\d{8,})")


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(path: Path) -> int | None:
    """The step a ``step-XXXXXXXX`` directory name stands for; None for any other name."""
    match = _STEP.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- finding the checkpoint to resume from -------------------------------------------------
def latest(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: where ``latest`` points, else the newest that verifies; None if none exist.

    A missing, unreadable, dangling or directory-typed ``latest`` never means "start at
    step 0" while a complete checkpoint exists. Raises CheckpointError when
    ``checkpoints`` is not a directory, or when step directories exist but none verifies.
    """
    ckdir = checkpoints_dir(run_dir)
    if not ckdir.exists() and not ckdir.is_symlink():
        return None
    if not ckdir.is_dir():
        raise CheckpointError(ckdir, "is not a directory; move it away or choose another --out")
    pointed = _pointed(ckdir)
    return pointed if pointed is not None else _newest_complete(ckdir)


def _pointed(ckdir: Path) -> Path | None:
    """The directory ``latest`` names, or None (with a warning) when the pointer is unusable."""
    pointer = ckdir / "latest"
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:  # a directory, a dangling link, unreadable bytes
        log.warning("%s is unreadable (%s); scanning for the newest complete checkpoint", pointer, one_line(err))
        return None
    if step_of(Path(name)) is not None and (ckdir / name).is_dir():
        return ckdir / name
    log.warning("%s names %r, which is not a checkpoint here; scanning for the newest complete one", pointer, name)
    return None


def _newest_complete(ckdir: Path) -> Path | None:
    problems = []
    for path in sorted(_step_dirs(ckdir), key=step_of, reverse=True):
        try:
            verify(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        log.warning("resuming from %s, the newest checkpoint that verifies", path)
        return path
    if problems:
        raise CheckpointError(ckdir, f"no checkpoint verifies ({'; '.join(problems)}); "
                                     "remove the damaged step directories to start again from step 0")
    return None


def _step_dirs(ckdir: Path) -> list[Path]:
    return [p for p in ckdir.iterdir() if step_of(p) is not None and p.is_dir()]


def clean(run_dir: Path) -> None:
    """Remove what interrupted writes left in a run directory; call while holding the run's lock.

    Temporaries (``.step-*.tmp-*``, ``.latest.tmp-*``, ``.model.tmp-*`` ...) go; a
    checkpoint caught between the two renames of a replace is put back; a ``latest``
    that is a directory or a dangling link is removed so the next pointer write can land.
    """
    run_dir = Path(run_dir)
    for removed in atomic.remove_leftovers(run_dir):
        log.warning("removed %s, left by an interrupted write", removed)
    ckdir = checkpoints_dir(run_dir)
    if not ckdir.is_dir():
        return
    for removed in atomic.remove_leftovers(ckdir):
        log.warning("removed %s, left by an interrupted write", removed)
    for old in ckdir.glob("step-*.old"):
        atomic.recover(old.with_name(old.name[:-len(".old")]))
        shutil.rmtree(old, ignore_errors=True)     # still there: the new copy had landed
    pointer = ckdir / "latest"
    if pointer.is_symlink() or pointer.is_dir():
        log.warning("removed %s: not a pointer file", pointer)
        if pointer.is_symlink():
            pointer.unlink()
        else:
            shutil.rmtree(pointer)


# ---- writing -------------------------------------------------------------------------------
def save(run_dir: Path, step: int, model: DiffusionForcingModel, ema: DiffusionForcingModel,
         optimizer: torch.optim.Optimizer, keep: int, info: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep`` up to it.

    Refuses (TrainingDiverged) to write non-finite weights. Only checkpoints of earlier
    steps are pruned, so a run that restarted lower never deletes the ones ahead of it.
    """
    from safetensors.torch import save_file

    for name, module in (("weights", model), ("EMA weights", ema)):
        if not all_finite(module):
            raise TrainingDiverged(f"{name} are not finite at step {step}; refusing to write a checkpoint")
    target = checkpoints_dir(run_dir) / f"step-{step:08d}"
    with atomic.new_directory(target) as tmp:
        ema.write_files(tmp)
        raw = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(raw, str(tmp / "weights.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **(info or {})}, indent=2) + "\n")
        manifest = {"format": FORMAT, "step": step, "sha256": {name: sha256(tmp / name) for name in FILES}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    atomic.write_text(checkpoints_dir(run_dir) / "latest", target.name + "\n")
    earlier = sorted((p for p in _step_dirs(checkpoints_dir(run_dir)) if step_of(p) < step), key=step_of)
    for old in earlier[:max(0, len(earlier) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def all_finite(module: nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite."""
    return finite([*module.parameters(), *module.buffers()])


def finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every floating tensor is finite: one fused reduction, one host sync.

    The max-abs norm is inf or NaN exactly when some entry is, and cannot overflow as a 2-norm can.
    """
    tensors = [t.detach() for t in tensors if t.is_floating_point() and t.numel()]
    if not tensors:
        return True
    peaks = torch._foreach_norm(tensors, float("inf"))   # what clip_grad_norm_ uses; one kernel per device/dtype
    return bool(torch.isfinite(torch.stack([p.float() for p in peaks])).all())


# ---- reading -------------------------------------------------------------------------------
def verify(path: Path) -> bool:
    """Check that ``path`` holds every checkpoint file with the sha256 its manifest records.

    Raises CheckpointError naming the first file that is missing, unreadable or altered.
    Returns False, with a warning, for a checkpoint with every file but no manifest: older
    dforce versions wrote those, and their runs stay resumable (a damaged file is still
    reported by name when it is read); True once every hash matched.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise CheckpointError(path / missing[0], "missing (and no manifest.json): not a whole checkpoint") from None
        log.warning("%s has no %s (written before dforce recorded hashes); loading it unverified", path, MANIFEST)
        return False
    except (OSError, ValueError) as err:
        raise CheckpointError(manifest_path, f"unreadable ({one_line(err)})") from None
    hashes = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(hashes, dict) or not set(FILES) <= hashes.keys():
        raise CheckpointError(manifest_path, f"does not record the sha256 of all of {', '.join(FILES)}")
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointError(file, "missing")
        if sha256(file) != hashes[name]:
            raise CheckpointError(file, f"content does not match the sha256 recorded in {MANIFEST} "
                                        "(corrupted or truncated)")
    return True


def load(path: Path, model: DiffusionForcingModel, ema: DiffusionForcingModel,
         optimizer: torch.optim.Optimizer) -> int:
    """Verify ``path``, then restore raw weights, EMA weights and optimizer state; returns its step.

    Every failure is a CheckpointError naming the file, including weights whose shapes
    do not fit the model the current config builds.
    """
    from safetensors.torch import load_file

    path = Path(path)
    verify(path)
    step = _read_step(path / "trainer.json", expected=step_of(path))
    device = model.device
    for name, module in (("weights.safetensors", model), ("model.safetensors", ema)):
        with _reading(path / name, "unreadable"):
            state = load_file(str(path / name), device=str(device))
        with _reading(path / name, "does not fit the model the current config builds"):
            module.load_state_dict(state)
    with _reading(path / "optimizer.pt", "unreadable"):
        state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    with _reading(path / "optimizer.pt", "does not fit the model's parameters"):
        optimizer.load_state_dict(state)
        _check_optimizer_shapes(optimizer)
    return step


def _read_step(file: Path, expected: int | None) -> int:
    with _reading(file, "unreadable"):
        step = json.loads(file.read_text()).get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(file, f"has no valid 'step' (got {step!r})")
    if expected is not None and step != expected:
        raise CheckpointError(file, f"says step {step} but its directory is step {expected}")
    return step


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"state {key!r} has shape {tuple(value.shape)} for a parameter of {tuple(p.shape)}")


@contextlib.contextmanager
def _reading(file: Path, problem: str) -> Iterator[None]:
    """Turn whatever reading or applying ``file`` raises (SafetensorError, a truncated zip, a
    size mismatch...) into a one-line CheckpointError naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 -- any failure here means this file cannot be used
        raise CheckpointError(file, f"{problem} ({type(err).__name__}: {one_line(err)})") from None
