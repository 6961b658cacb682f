"""Metrics to JSON lines (always) and TensorBoard (when installed and asked for)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .. import atomic

log = logging.getLogger(__name__)


class MetricsLogger:
    """Appends ``{"step": s, **metrics}`` rows to ``run/metrics.jsonl``; mirrors them to TensorBoard.

    ``resume_from``: the step training starts at (0 for a fresh run); rows logged after it
    by an earlier, interrupted process are dropped first so no step appears twice.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_from: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None:
            self._truncate_after(resume_from)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                log.warning("tensorboard is not installed; logging to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_from)

    def _truncate_after(self, step: int) -> None:
        """Keep only rows up to ``step`` (atomically), so the resumed run does not repeat the rest.

        A row torn by a kill mid-write is not valid JSON and is dropped with them.
        """
        if not self.path.is_file():
            return
        lines = self.path.read_text(errors="replace").splitlines()
        rows = [line for line in lines if _step(line) is not None and _step(line) <= step]
        if len(rows) != len(lines):
            atomic.write_text(self.path, "".join(row + "\n" for row in rows))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _step(line: str) -> int | None:
    """The step of one metrics row, or None for a blank, torn or foreign line."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, int) else None
