"""Imitation with memory: success rates with and without corrupted observations (and the paper's)."""

from __future__ import annotations

from pathlib import Path

from .common import MISSING, markdown, metrics

METHODS = (("df", "`df` (memory, corrupted tokens flagged at `k_c`)"),
           ("teacher_forcing", "`teacher_forcing` (memory, corrupted tokens taken as clean)"),
           ("memoryless", "`memoryless` (current observation only)"))
PAPER = {"df": ("0.80", "0.76"), "teacher_forcing": ("-", "0.48"), "memoryless": ("fails", "-")}


def success(m: dict | None) -> str:
    """'0.470 ± 0.035 (200)' or '-'."""
    return MISSING if not m else f"{m['success_rate']:.3f} ± {m['success_stderr']:.3f} ({m['episodes']})"


def table(root: Path) -> str:
    """Rows: methods; columns: the paper's real-robot numbers, then ours clean and with 30% corrupted."""
    header = ["method", "paper, clean", "paper, corrupted", "clean", "30% corrupted"]
    rows = [[label, *PAPER[key], success(metrics(root, "imitation", f"{key}.json")),
             success(metrics(root, "imitation", f"{key}-corrupt0.3.json"))] for key, label in METHODS]
    # the ablation: the same DF policy not told which observations are corrupted
    rows.insert(1, ["`df`, told nothing (`--corrupt-level 0`)", MISSING, MISSING, "(as above)",
                    success(metrics(root, "imitation", "df-corrupt0.3-kc0.json"))])
    return markdown(header, rows)
