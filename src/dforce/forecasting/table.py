"""Forecasting: CRPS-sum per method and dataset (mean ± std over seeds) next to the paper's Table 2."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, load, markdown

DATASETS = (("exchange_rate_nips", "Exchange"), ("etth1", "ETTh1"), ("etth2", "ETTh2"))
METHODS = (
    ("df", "**df** (Diffusion Forcing)"),
    ("tf", "tf (teacher forcing, TimeGrad-like)"),
    ("fs", "fs (full sequence)"),
    ("deepar", "deepar (GluonTS)"),
    ("random_walk", "random_walk"),
    ("seasonal_naive", "seasonal_naive"),
)
# REFERENCE.md, paper Table 2 (Exchange only; ETT is not in the paper).
PAPER = (("paper's DF (Table 2)", "0.003 ± 0.001"), ("paper's TimeGrad", "0.006 ± 0.001"),
         ("paper's Transformer-MAF", "0.005 ± 0.003"))


def crps_sum(root: Path, dataset: str, method: str) -> str:
    """'mean ± std (n seeds)' of CRPS-sum, the bare mean for a deterministic method, or '-'."""
    record = load(root / "results" / "forecasting" / f"{dataset}-{method}.json")
    if not record:
        return MISSING
    m, seeds = record["metrics"]["crps_sum"], len(record.get("seeds") or [])
    return f"{m['mean']:.4f}" if m["std"] == 0 else f"{m['mean']:.4f} ± {m['std']:.4f} ({seeds})"


def table(root: Path) -> str:
    """Rows: the paper's Exchange numbers, then every method; columns: datasets."""
    header = ["method", *(label for _, label in DATASETS)]
    rows = [[label, value] + [MISSING] * (len(DATASETS) - 1) for label, value in PAPER]
    rows += [[label, *(crps_sum(root, ds, method) for ds, _ in DATASETS)] for method, label in METHODS]
    return markdown(header, rows)
