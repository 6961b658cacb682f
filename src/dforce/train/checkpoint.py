"""Training checkpoints: ``run/checkpoints/step-XXXXXXXX/`` plus a ``latest`` pointer.

Each checkpoint directory is a loadable pretrained model (``config.json`` +
``model.safetensors`` with the EMA weights) plus the training state:
``weights.safetensors`` (raw weights), ``optimizer.pt`` (read back with
``weights_only=True``) and ``trainer.json`` (step). Directories are complete
before they get their final name and ``latest`` is replaced atomically, so a
killed run always resumes from a whole checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..pipeline import DiffusionForcingModel


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoints_dir(run_dir) / "latest"
    if not pointer.is_file():
        return None
    path = checkpoints_dir(run_dir) / pointer.read_text().strip()
    return path if path.is_dir() else None


def save(run_dir: Path, step: int, model: DiffusionForcingModel, ema: DiffusionForcingModel,
         optimizer: torch.optim.Optimizer, keep: int, info: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    from safetensors.torch import save_file

    target = checkpoints_dir(run_dir) / f"step-{step:08d}"
    with atomic.new_directory(target) as tmp:
        ema.write_files(tmp)
        raw = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(raw, str(tmp / "weights.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **(info or {})}, indent=2) + "\n")
    atomic.write_text(checkpoints_dir(run_dir) / "latest", target.name + "\n")
    for old in sorted(checkpoints_dir(run_dir).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(path: Path, model: DiffusionForcingModel, ema: DiffusionForcingModel,
         optimizer: torch.optim.Optimizer) -> int:
    """Restore raw weights, EMA weights and optimizer state from ``path``; returns its step."""
    from safetensors.torch import load_file

    device = model.device
    model.load_state_dict(load_file(str(path / "weights.safetensors"), device=str(device)))
    ema.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    return int(json.loads((path / "trainer.json").read_text())["step"])
