"""Pictures of the imitation evaluation: trajectories in the maze, and the corruption matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_trajectories(recorded: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Maze walls, start, both goals (A: cue +1, B: cue -1) and the recorded paths coloured by cue;
    failed episodes dashed."""
    from .maze import GOAL_CELLS, MAZE, START_CELL
    from ..envs.maze2d import GOAL_RADIUS, wall_squares
    from ..plotting import _pyplot, _save, draw_maze

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    draw_maze(ax, wall_squares(MAZE), START_CELL, GOAL_CELLS[1])
    colors = {1: "tab:blue", -1: "tab:orange"}
    for cue, (gx, gy) in GOAL_CELLS.items():
        ax.add_patch(plt.Circle((gy, gx), GOAL_RADIUS, color=colors[cue], alpha=0.25, lw=0))
        ax.plot(gy, gx, "*", color="gold", ms=14, mec="k", zorder=5)
        ax.text(gy + 0.3, gx, "A" if cue > 0 else "B", ha="left", va="center", fontsize=9, weight="bold")
    for r in recorded:
        p = r["path"]
        ax.plot(p[:, 1], p[:, 0], color=colors[r["cue"]], lw=1.2, alpha=0.8,
                ls="-" if r["outcome"] == "success" else "--")
    ax.plot([], [], color=colors[1], label="cue +1 (goal A)")
    ax.plot([], [], color=colors[-1], label="cue -1 (goal B)")
    ax.plot([], [], color="0.3", ls="--", label="failed")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


COLORS = {"df": "tab:blue", "teacher_forcing": "tab:orange", "memoryless": "tab:gray"}


def plot_matrix(cells: list[dict[str, Any]], path: Path) -> Path:
    """Success vs corruption rate, a panel per kind, a line per method (solid: flagged, dashed: unflagged),
    95% intervals as bars; the clean run at rate 0 in every panel; the flagged-df targets as black ticks."""
    from ..plotting import _pyplot, _save
    from .matrix import TARGETS

    kinds = list(dict.fromkeys(c["kind"] for c in cells if c["kind"] != "none"))
    if not kinds:
        raise ValueError("plot_matrix needs at least one corrupted cell")
    methods = list(dict.fromkeys(c["method"] for c in cells))
    plt = _pyplot()
    cols = min(3, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for i, kind in enumerate(kinds):
        ax = axes[i // cols][i % cols]
        for method in methods:
            clean = [c for c in cells if c["method"] == method and c["kind"] == "none"]
            for flagged, style in ((True, "-"), (False, "--")):
                line = sorted(clean + [c for c in cells if c["method"] == method and c["kind"] == kind
                                       and c["flagged"] == flagged], key=lambda c: c["rate"])
                if len(line) < 2:
                    continue
                x = [c["rate"] for c in line]
                y = [c["success"] for c in line]
                err = [[c["success"] - c["ci95"][0] for c in line], [c["ci95"][1] - c["success"] for c in line]]
                ax.errorbar(x, y, yerr=err, color=COLORS.get(method), ls=style, marker="o" if flagged else "x",
                            ms=3.5, lw=1.3, capsize=2, label=f"{method} ({'flagged' if flagged else 'unflagged'})")
        for rate, need in TARGETS.items():
            ax.plot([rate - 0.03, rate + 0.03], [need, need], color="k", lw=2)
        ax.set_title(kind, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(-0.03, 0.73)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("success")
        if i // cols == rows - 1:
            ax.set_xlabel("corrupted share of observations")
    for j in range(len(kinds), rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle("cued-maze imitation under corrupted observations (black: flagged-df targets)", fontsize=10)
    return _save(fig, path)
