"""Pictures of the forecasting backtest: each method's CRPS-sum and the paired differences, with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_backtest(metrics: dict[str, Any], reference: str, path: Path, title: str) -> Path:
    """Two panels of horizontal 95% intervals: CRPS-sum per method (lower is better), and
    CRPS-sum(reference) - CRPS-sum(method) (left of the zero line: the reference is better)."""
    from ..plotting import _pyplot, _save

    plt = _pyplot()
    scores, paired = metrics["crps_sum"], metrics["paired"]
    names = sorted(scores, key=lambda m: scores[m]["mean"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.6), sharey=True)
    for ax, values, label in ((axes[0], scores, "CRPS-sum (lower is better)"),
                              (axes[1], paired, f"CRPS-sum({reference}) - CRPS-sum(method)")):
        for y, name in enumerate(names):
            if name not in values:
                continue
            v = values[name]
            color = "tab:red" if name == reference else "tab:blue"
            ax.errorbar(v["mean"], y, xerr=[[v["mean"] - v["ci95"][0]], [v["ci95"][1] - v["mean"]]], fmt="o",
                        color=color, capsize=3)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        ax.locator_params(axis="x", nbins=5)
    axes[1].axvline(0.0, color="0.3", lw=1)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
