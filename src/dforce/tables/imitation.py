"""Imitation with memory: success rates with and without corrupted observations (and the paper's)."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, markdown, metrics

METHODS = (("df", "`df` (memory, corrupted tokens flagged at `k_c`)"),
           ("teacher_forcing", "`teacher_forcing` (memory, corrupted tokens taken as clean)"),
           ("memoryless", "`memoryless` (current observation only)"))
PAPER = {"df": ("0.80", "0.76"), "teacher_forcing": ("-", "0.48"), "memoryless": ("fails", "-")}
NETWORKS = (("", "transformer (shipped configs)"), ("rnn", "GRU (`model.backbone=rnn model.depth=2`)"))


def success(m: dict | None) -> str:
    """'0.470 ± 0.035 (200)' or '-'."""
    return MISSING if not m else f"{m['success_rate']:.3f} ± {m['success_stderr']:.3f} ({m['episodes']})"


def _rows(root: Path, folder: str, network: str) -> list[list[str]]:
    def record(name: str) -> dict | None:
        return metrics(root, "imitation", *([folder] if folder else []), name)

    def paper(key: str) -> tuple[str, str]:
        return PAPER[key] if not folder else ("", "")             # the paper's numbers once, on the main rows

    rows = [[label, network, *paper(key), success(record(f"{key}.json")), success(record(f"{key}-corrupt0.3.json"))]
            for key, label in METHODS]
    # the ablation: the same DF policy not told which observations are corrupted
    no_paper = ("-", "-") if not folder else ("", "")
    rows.insert(1, ["`df`, told nothing (`--corrupt-level 0`)", network, *no_paper, "(as above)",
                    success(record("df-corrupt0.3-kc0.json"))])
    return rows


def table(root: Path) -> str:
    """Rows: methods per network; columns: the paper's real-robot numbers, then ours clean and 30% corrupted."""
    header = ["method", "network", "paper, clean", "paper, corrupted", "clean", "30% corrupted"]
    return markdown(header, [row for folder, network in NETWORKS for row in _rows(root, folder, network)])
