"""Devices: which torch device a command runs on, and random generators that live there.

Every command that trains, samples or evaluates takes ``--device`` (default ``auto``:
CUDA when present, else the CPU). Models are loaded onto that device and sampling
generators are created on it, because ``torch.randn(..., generator=g, device=d)``
refuses a generator that lives elsewhere. On the CPU a generator made here draws the
same numbers as ``torch.Generator().manual_seed(seed)``, so CPU results do not change.
"""

from __future__ import annotations

import torch

AUTO = "auto"
KINDS = ("cpu", "cuda", "mps")   # others (meta, xpu, ...) cannot run dforce's models here
TRAIN_DEVICES = (AUTO, "cpu", "cuda")   # what train.device accepts (DDP picks the GPU per process)


def check(name: str | torch.device) -> torch.device:
    """``name`` as a torch device that exists here; ValueError for unknown names or absent CUDA/MPS."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {str(name)!r} is not a torch device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type not in KINDS:
        raise ValueError(f"device {str(name)!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(name)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(name)!r}: MPS is not available on this machine; use cpu or auto")
    return device


def resolve(name: str | torch.device = AUTO) -> torch.device:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; any other name is checked by :func:`check`."""
    if isinstance(name, str) and name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check(name)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (on the CPU: the stream of ``torch.manual_seed``)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)
