"""Shared fixtures for training tests: a tiny configuration that trains in about a second."""

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Real datasets that cannot be downloaded here live beside the checkout (../shared/data);
# DFORCE_TEST_DATA points elsewhere.
DATA = Path(os.environ.get("DFORCE_TEST_DATA", ROOT.parent / "shared" / "data"))

TINY = [
    "model.width=16", "model.depth=1", "diffusion.levels=100", "data.sequences=64", "data.length=8",
    "train.batch_size=16", "train.warmup=5", "train.tensorboard=false", "train.log_every=5",
    "sampling.steps=4", "sampling.chunk=4", "sampling.stabilization=5",
]


def env() -> dict[str, str]:
    """Environment for child processes: the source tree importable, one thread each."""
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def dforce(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dforce", *args], env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def train_tiny(run: Path) -> Path:
    """Train the TINY config for a few steps into ``run``; returns its model directory (about 2 s)."""
    from dforce.cli import main

    assert main(["train", "default", *TINY, "train.steps=3", "--out", str(run), "--no-progress"]) == 0
    return run / "model"


class NoRepeat(torch.nn.Module):
    """Hides a backbone's ``repeat_state`` so Monte Carlo samples run one after another."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def init_state(self, batch):
        return self.net.init_state(batch)

    def forward_chunk(self, x, k, cond, state):
        return self.net.forward_chunk(x, k, cond, state)

    def append(self, x, k, cond, state):
        return self.net.append(x, k, cond, state)
