"""The cross experiment's figure (paper Fig. 7): sampled trajectories, a row per model, a column per context."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from .cross import CLASSES

COLORS = {"diagonal": "tab:blue", "stitched": "tab:red", "other": "0.6"}
DRAWN = 48
TITLES = {"context1": "context: last token", "context2": "context: last 2 tokens", "memory": "context: whole past"}


def plot_cross(panels: dict[tuple[str, str], tuple[Tensor, Tensor, dict]], path: Path, title: str = "") -> Path:
    """Grid of trajectory panels keyed (model name, mode name) -> (trajectories (N, T, 2), labels (N,),
    metrics): the first 48 trajectories drawn in their class's colour, each class's measured share
    of all N next to the ideal's in the legend."""
    from ..plotting import _np, _pyplot, _save

    if not panels:
        raise ValueError("plot_cross needs at least one panel")
    rows = list(dict.fromkeys(name for name, _ in panels))
    cols = list(dict.fromkeys(mode for _, mode in panels))
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 3.9 * len(rows)), squeeze=False,
                             layout="constrained")
    for (name, mode), (traj, labels, metrics) in panels.items():
        ax = axes[rows.index(name)][cols.index(mode)]
        for seq, label in zip(_np(traj[:DRAWN]), labels[:DRAWN].tolist()):
            color = COLORS[CLASSES[label]]
            ax.plot(seq[:, 0], seq[:, 1], color=color, lw=0.8, alpha=0.55)
            ax.plot(seq[0, 0], seq[0, 1], "o", color=color, ms=2.5)
        ideal = metrics.get("ideal") or {}
        for cls in CLASSES:
            expected = f" (ideal {ideal[cls]:.0%})" if cls in ideal else ""
            ax.plot([], [], color=COLORS[cls], label=f"{cls} {metrics[cls]['fraction']:.0%}{expected}")
        ax.set_aspect("equal")
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        ax.set_title(f"{name}: {TITLES.get(mode, mode)}", fontsize=9)
        ax.legend(loc="upper center", fontsize=7, ncol=1, frameon=False, bbox_to_anchor=(0.5, -0.08))
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
