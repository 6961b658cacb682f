"""Argument types for numeric command-line flags: bounded, finite, and named in their errors.

``type=int`` accepts ``99999999999999999999`` (a C++ overflow later) and ``type=float``
accepts ``nan`` and ``inf`` (silently NaN samples later). These types refuse them when
the command line is parsed, with the bound in the message; argparse prefixes the flag.
The CLI's parser also swaps plain ``type=int``/``type=float`` for :func:`bounded_int`
and :func:`finite_float`, so every subcommand's flags get at least that much.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

MAX_INT = 2**31 - 1        # the same bound as integer config settings (dforce.config.MAX_INT)
MAX_BATCH = 4_096          # sequences sampled together: more is a typo, not a workload for one process
MAX_TOKENS = 1_000_000     # tokens or frames generated per sequence
MAX_STEPS = 100_000        # sampling steps (the model refuses more than its diffusion levels anyway)
MAX_SLOPE = 1_000.0        # pyramid slope (dforce.config.MAX_SLOPE)


def int_in(lo: int, hi: int = MAX_INT) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {text}")
        return value
    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    """An argparse type: a finite float in [lo, hi] (NaN fails every comparison, so it is tested apart)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number{bound}, got {text!r}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a finite number{bound}, got {text}")
        return value
    bound = "" if math.isinf(lo) and math.isinf(hi) else f" in [{lo:g}, {hi:g}]"
    parse.__name__ = f"number{bound}"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
bounded_int = int_in(-MAX_INT)
finite_float = float_in(-math.inf, math.inf)
seed = int_in(0, 2**63 - 1)      # torch.manual_seed's range


def device(text: str):
    """An argparse type: a torch device that exists on this machine, ``auto`` resolved (``cuda`` without CUDA fails here)."""
    from .devices import resolve

    try:
        return resolve(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def train_device(text: str) -> str:
    """An argparse type: a ``train.device`` value (auto, cpu or cuda) that can run here; returned as given."""
    from .devices import TRAIN_DEVICES

    if text not in TRAIN_DEVICES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(TRAIN_DEVICES)} for training, got {text!r}")
    device(text)
    return text


DEVICE_HELP = "torch device: auto (default: cuda when available, else cpu), cpu, cuda, cuda:N or mps"


def add_device(parser: argparse.ArgumentParser, train: bool = False, default: str | None = "auto") -> None:
    """``--device`` on ``parser``: any existing device, or with ``train`` one ``train.device`` accepts.

    argparse runs a string default through the type too, so ``auto`` arrives resolved.
    """
    if train:
        parser.add_argument("--device", type=train_device, default=default,
                            help="auto (cuda when available, else cpu), cpu or cuda"
                                 + (" (default auto)" if default else " (default: the config's train.device)"))
    else:
        parser.add_argument("--device", type=device, default=default, help=DEVICE_HELP)
