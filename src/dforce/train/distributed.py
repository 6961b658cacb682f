"""Multi-process data parallelism through torch.distributed (launched by ``torchrun``)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import devices


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False   # True when setup() started the process group (and so ends it)
    parent: int = 0            # the launcher's pid, watched so workers never outlive it (0: not watched)

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """:func:`dforce.devices.resolve` (``auto`` picks CUDA when present; ``cuda`` without a GPU is a
    user error), with a bare ``cuda`` placed on this process's GPU."""
    try:
        device = devices.resolve(name)
    except ValueError as err:
        raise ValueError(f"train.device={name}: {err}") from None
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def setup(device_name: str) -> tuple[Process, torch.device]:
    """Join the process group when started by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Process(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Process(rank, world, local_rank, owns_group, die_with_parent()), device


PR_SET_PDEATHSIG = 1


def die_with_parent() -> int:
    """Have the kernel send SIGTERM when the launcher dies (Linux); returns its pid for :func:`parent_alive`.

    A SIGKILLed torchrun cannot forward a signal, and orphaned workers would otherwise keep
    training (and holding the GPU) forever. SIGTERM, not SIGKILL, so they still save and stop
    together. The pid is also polled each step, for platforms without prctl.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return parent


def parent_alive(proc: Process) -> bool:
    """False once the launcher this process started under has gone (its children are re-parented)."""
    return proc.parent == 0 or os.getppid() == proc.parent


def mean_across(value: torch.Tensor, proc: Process) -> torch.Tensor:
    """Average a tensor over all processes (identity for one process)."""
    if proc.world == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / proc.world


def barrier(proc: Process) -> None:
    if proc.world > 1:
        dist.barrier()


def teardown(proc: Process) -> None:
    """End the process group if this process's setup() started it."""
    if proc.owns_group and dist.is_initialized():
        dist.destroy_process_group()
