"""Results files: metrics plus what is needed to trust them (command, commit, hardware, time, seeds)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from . import atomic


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        # results/ holds outputs (a run rewrites its own figures before its JSON), not code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)results"],
                               capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(path: str | Path, metrics: dict[str, Any], *, wall_time_s: float, seeds: list[int] | dict[str, int],
                 command: list[str] | None = None, **extra: Any) -> Path:
    """Write a results JSON atomically and return its path."""
    record = {
        "metrics": metrics,
        "command": " ".join(command if command is not None else ["dforce", *sys.argv[1:]]),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_time_s": round(wall_time_s, 2),
        "seeds": seeds,
        **extra,
    }
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    return Path(path)


def add_destination(parser: Any, default_out: Path, record_dir: Path) -> None:
    """``--out DIR`` (default ``default_out``, under outputs/) or ``--record`` (the shipped ``record_dir``).

    Shipped records are only rewritten when asked: an exploratory run cannot overwrite them.
    """
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=default_out, help=f"output directory (default {default_out})")
    where.add_argument("--record", action="store_const", const=record_dir, dest="record",
                       help=f"write the project's records in {record_dir}/")


def destination(args: Any) -> Path:
    """The directory chosen by :func:`add_destination`'s arguments."""
    return args.record if getattr(args, "record", None) is not None else args.out
