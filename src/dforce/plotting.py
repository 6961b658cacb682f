"""PNG figures for schedules, rollouts, samples and training curves.

matplotlib is an optional, heavy dependency, so it is imported inside each function.
Every function saves a PNG to ``path`` (creating parent folders), closes its figure
and returns the path as a ``Path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from torch import Tensor

MAX_FEATURES = 4     # rows of feature-vs-time panels in a rollout plot
MAX_SEQUENCES = 3    # sequences drawn per rollout panel
GAP_LINEAR_RANGE = 0.5  # nats/dim: gap axes turn logarithmic beyond +-this when some gap exceeds it


def _pyplot() -> Any:
    """pyplot on the Agg backend, unless the caller already imported pyplot.

    Selecting a backend after pyplot is imported would switch backends and close the
    caller's open figures, hence the guard.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _np(x: Tensor) -> Any:
    return x.detach().cpu().float().numpy()


def _check_dims(name: str, x: Tensor, dims: int) -> None:
    if x.dim() != dims:
        raise ValueError(f"{name} must have {dims} dims; got shape {tuple(x.shape)}")


def _heatmap(ax: Any, levels: Tensor) -> Any:
    """Draw a scheduling matrix (M, H) on ax: x = token index, y = sampling row (top = row 0)."""
    _check_dims("levels", levels, 2)
    im = ax.imshow(_np(levels), aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_xlabel("token index")
    ax.set_ylabel("sampling row")
    return im


def plot_schedule(levels: Tensor, path: str | os.PathLike, title: str | None = None) -> Path:
    """Heatmap of one scheduling matrix levels: (M, H) grid noise levels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    im = _heatmap(ax, levels)
    fig.colorbar(im, ax=ax, label="noise level (grid)")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_schedules(named: dict[str, Tensor], path: str | os.PathLike) -> Path:
    """Several scheduling matrices {name: (M_i, H_i)} side by side, one subplot each."""
    if not named:
        raise ValueError("named must hold at least one scheduling matrix; got an empty dict")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(named), figsize=(3.6 * len(named), 3.6), squeeze=False)
    for ax, (name, levels) in zip(axes[0], named.items()):
        im = _heatmap(ax, levels)
        ax.set_title(name)
        # a colorbar per panel: matrices built with different step counts have different scales
        fig.colorbar(im, ax=ax, label="noise level (grid)")
    fig.tight_layout()
    return _save(fig, path)


def plot_rollout(
    generated: Tensor,
    real: Tensor | None,
    path: str | os.PathLike,
    context: int = 0,
    train_length: int | None = None,
    title: str | None = None,
) -> Path:
    """Generated vs real vector sequences over time, plus a phase plot.

    generated: (B, T, D); real: (B', T', D) or None. One row per feature (up to 4)
    shows up to 3 generated sequences (solid) and up to 3 real ones (dashed, grey);
    a vertical line marks the end of the context, a shaded band the training length
    (so a rollout far past it is visible). When D >= 2 a right-hand panel shows
    feature 0 vs feature 1 for both.
    """
    _check_dims("generated", generated, 3)
    if real is not None:
        _check_dims("real", real, 3)
        if real.shape[-1] != generated.shape[-1]:
            raise ValueError(
                f"real and generated must share the feature dim; got {tuple(real.shape)} "
                f"and {tuple(generated.shape)}"
            )
    plt = _pyplot()
    gen = _np(generated[:MAX_SEQUENCES])
    ref = None if real is None else _np(real[:MAX_SEQUENCES])
    n_feat = min(gen.shape[-1], MAX_FEATURES)
    phase = gen.shape[-1] >= 2
    fig = plt.figure(figsize=(11 if phase else 8, 1.1 + 1.9 * n_feat), layout="constrained")
    grid = fig.add_gridspec(n_feat, 2 if phase else 1, width_ratios=[2.6, 1] if phase else None)
    colors = [f"C{i}" for i in range(MAX_SEQUENCES)]

    for f in range(n_feat):
        ax = fig.add_subplot(grid[f, 0])
        if train_length is not None:
            ax.axvspan(0, train_length - 1, color="0.92", zorder=0,
                       label=f"training length ({train_length})")
        if ref is not None:
            for i, seq in enumerate(ref):
                ax.plot(seq[:, f], color="0.35", ls="--", lw=1, label="real" if i == 0 else None)
        for i, seq in enumerate(gen):
            ax.plot(seq[:, f], color=colors[i], lw=1.2, label="generated" if i == 0 else None)
        if context > 0:
            ax.axvline(context - 0.5, color="k", lw=1, ls=":", label=f"context end ({context})")
        ax.set_ylabel(f"feature {f}")
        ax.margins(x=0.01)
        if f == 0:
            # above the panel: inside it would hide the curves it explains
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7, ncol=4, frameon=False)
        if f == n_feat - 1:
            ax.set_xlabel("time step")

    if phase:
        ax = fig.add_subplot(grid[:, 1])
        if ref is not None:
            for i, seq in enumerate(ref):
                ax.plot(seq[:, 0], seq[:, 1], color="0.35", ls="--", lw=0.8,
                        label="real" if i == 0 else None)
        for i, seq in enumerate(gen):
            ax.plot(seq[:, 0], seq[:, 1], color=colors[i], lw=0.8, alpha=0.9,
                    label="generated" if i == 0 else None)
        ax.set_xlabel("feature 0")
        ax.set_ylabel("feature 1")
        ax.set_title("phase plot", fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_loss(steps: list[int], losses: list[float], path: str | os.PathLike) -> Path:
    """Training loss against step, log y axis (non-positive losses are masked)."""
    if len(steps) != len(losses):
        raise ValueError(f"steps and losses must have equal length; got {len(steps)} and {len(losses)}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, losses, lw=1)
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_likelihood(
    lengths: list[int],
    exact: list[float],
    bounds: dict[str, tuple[list[float], list[float]]],
    gaps: dict[str, tuple[list[float], list[float]]],
    token_gaps: dict[str, tuple[list[float], list[float]]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Three panels, all in nats/dim: ELBO vs subsequence length per model with the exact
    log-likelihood as a line; the gap (exact - ELBO) vs length; the per-token gap given the
    clean past.

    lengths: the L values; exact: exact log-likelihood per L; bounds / gaps: model name ->
    (value per L, standard error per L); token_gaps: model name -> (gap per token, s.e.).
    """
    plt = _pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    left.plot(lengths, exact, "k-", lw=2, label="exact log p")
    for name, (value, se) in bounds.items():
        left.errorbar(lengths, value, yerr=se, marker="o", ms=4, capsize=3, label=f"ELBO {name}")
    left.set(ylabel="nats / dim (data units)", title="ELBO of the first L tokens (fresh state)")
    for name, (value, se) in gaps.items():
        middle.errorbar(lengths, value, yerr=se, marker="o", ms=4, capsize=3, label=name)
    middle.set(ylabel="exact - ELBO, nats / dim", title="gap (error bars: s.e. over sequences)")
    for ax in (left, middle):
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.set_xlabel("subsequence length L")
    for name, (value, se) in token_gaps.items():
        right.errorbar(range(1, len(value) + 1), value, yerr=se, marker="o", ms=3, capsize=2, label=name)
    right.set(xlabel="token t", ylabel="exact - ELBO, nats / dim", title="per-token gap given the clean past x_<t")
    widest = max(abs(v) for series in (*gaps.values(), *token_gaps.values()) for v in series[0])
    for ax in (middle, right):
        ax.axhline(0, color="k", lw=1)
        if widest > GAP_LINEAR_RANGE:  # a loose model would flatten the others: small gaps linear, large ones log
            ax.set_yscale("symlog", linthresh=GAP_LINEAR_RANGE)
    for ax in (left, middle, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_fan(history: Any, truth: Any, samples: Any, path: str | os.PathLike, series: list[int] | None = None,
             names: list[str] | None = None, title: str | None = None, shown_history: int = 60) -> Path:
    """Fan charts: median and 50% / 90% intervals of sample paths against the truth.

    history: (N, T) observed values; truth: (P, N) what followed; samples: (S, P, N).
    One panel per series in ``series`` (default: the first four); the last
    ``shown_history`` observed steps are drawn before the forecast.
    """
    import numpy as np

    plt = _pyplot()
    history, truth, samples = np.asarray(history), np.asarray(truth), np.asarray(samples)
    series = list(range(min(4, history.shape[0]))) if series is None else series
    T, P = history.shape[1], truth.shape[0]
    past = np.arange(max(0, T - shown_history), T)
    future = np.arange(T, T + P)
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.2 * len(series)), squeeze=False, sharex=True)
    for ax, n in zip(axes[:, 0], series):
        q05, q25, q50, q75, q95 = np.quantile(samples[:, :, n], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.plot(past, history[n, past], color="k", lw=1)
        ax.fill_between(future, q05, q95, color="tab:blue", alpha=0.2, lw=0, label="90% interval")
        ax.fill_between(future, q25, q75, color="tab:blue", alpha=0.4, lw=0, label="50% interval")
        ax.plot(future, q50, color="tab:blue", lw=1.5, label="median")
        ax.plot(future, truth[:, n], color="k", lw=1, ls="--", label="truth")
        ax.axvline(T - 0.5, color="0.6", lw=0.8)
        ax.set_ylabel(names[n] if names else f"series {n}")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time step")
    if title:
        axes[0, 0].set_title(title)
    return _save(fig, path)


# ---- Maze2D planning -------------------------------------------------------------------------------

def draw_maze(ax: Any, walls: Any, start: Any, goal: Any) -> None:
    """Draw wall squares (W, 4) ``(x_lo, y_lo, x_hi, y_hi)`` with maze rows (x) downwards, columns (y) rightwards."""
    import numpy as np
    from matplotlib.patches import Rectangle

    walls = np.asarray(walls)
    for x_lo, y_lo, x_hi, y_hi in walls:
        ax.add_patch(Rectangle((y_lo, x_lo), y_hi - y_lo, x_hi - x_lo, color="0.25", lw=0))
    ax.set_xlim(walls[:, 1].min(), walls[:, 3].max())
    ax.set_ylim(walls[:, 2].max(), walls[:, 0].min())
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.plot(start[1], start[0], "o", color="tab:green", ms=7, mec="k", zorder=5)
    ax.plot(goal[1], goal[0], "*", color="gold", ms=14, mec="k", zorder=5)


def plot_maze_episodes(walls: Any, episodes: list[dict[str, Any]], path: str | os.PathLike,
                       title: str | None = None, max_plans: int = 10) -> Path:
    """One panel per episode: executed trajectory and (up to ``max_plans``, evenly spaced) plans made along it.

    walls: (W, 4) squares in observation coordinates; each episode dict holds ``trajectory``
    (T, 2) executed positions, ``plans`` a list of (N, 2) planned positions, ``goal`` (2,)
    and optionally ``title``.
    """
    import numpy as np

    plt = _pyplot()
    n = len(episodes)
    if n == 0:
        raise ValueError("need at least one episode to plot")
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, ep in zip(axes.flat, episodes):
        traj = np.asarray(ep["trajectory"])
        draw_maze(ax, walls, traj[0], ep["goal"])
        plans = list(ep.get("plans", []))
        plans = [plans[i] for i in np.unique(np.linspace(0, len(plans) - 1, min(len(plans), max_plans)).astype(int))] \
            if plans else []
        cmap = plt.get_cmap("cool")
        for i, p in enumerate(plans):
            p = np.asarray(p)
            ax.plot(p[:, 1], p[:, 0], color=cmap(i / max(1, len(plans) - 1)), lw=0.8, alpha=0.6)
        ax.plot(traj[:, 1], traj[:, 0], color="tab:red", lw=1.8, label="executed")
        ax.set_title(ep.get("title", ""), fontsize=8)
    axes.flat[0].legend(loc="lower left", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def maze_mpc_frames(walls: Any, trajectory: Any, plans: list[tuple[int, Any]], goal: Any,
                    title: str = "") -> list[Any]:
    """RGB frames (H, W, 3) uint8 of model-predictive control, one per replan.

    trajectory: (T + 1, 2) executed positions (start first); plans: ``(t, (N, 2))`` the env
    step each plan was made at and its planned positions. Frame i shows the path executed
    up to plan i, the plan, and faintly the earlier plans.
    """
    import numpy as np

    plt = _pyplot()
    traj = np.asarray(trajectory)
    frames = []
    for i, (t, p) in enumerate(plans):
        fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
        draw_maze(ax, walls, traj[0], goal)
        for _, old in plans[max(0, i - 5):i]:
            old = np.asarray(old)
            ax.plot(old[:, 1], old[:, 0], color="tab:blue", lw=0.6, alpha=0.25)
        p = np.vstack([traj[t:t + 1], np.asarray(p)])
        ax.plot(p[:, 1], p[:, 0], color="tab:blue", lw=1.5, label="plan")
        ax.plot(traj[:t + 1, 1], traj[:t + 1, 0], color="tab:red", lw=1.8, label="executed")
        ax.plot(traj[t, 1], traj[t, 0], "o", color="tab:red", ms=5)
        ax.set_title(f"{title} step {t}", fontsize=8)
        ax.legend(loc="lower left", fontsize=6)
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return frames


def plot_video_metrics(curves: dict[str, dict[str, list[float]]], path: str | os.PathLike, train_length: int,
                       thresholds: dict[str, float] | None = None, title: str | None = None) -> Path:
    """One panel per video metric vs frame index: {metric: {series: values per frame}}.

    Dotted vertical lines mark multiples of the training length; ``thresholds`` draws a
    horizontal dashed line on the panel of that metric (e.g. the divergence threshold).
    """
    if not curves:
        raise ValueError("curves must hold at least one metric; got an empty dict")
    plt = _pyplot()
    n = len(curves)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (metric, series) in zip(axes.flat, curves.items()):
        longest = 0
        for name, values in series.items():
            ax.plot(range(1, len(values) + 1), values, label=name, lw=1)
            longest = max(longest, len(values))
        for m in range(train_length, longest + 1, train_length):
            if longest // train_length <= 12 or m % (10 * train_length) == 0:
                ax.axvline(m, color="grey", lw=0.5, ls=":")
        if thresholds and metric in thresholds:
            ax.axhline(thresholds[metric], color="red", lw=0.8, ls="--", label="threshold")
        if longest > 20 * train_length:
            ax.set_xscale("log")
        ax.set_title(metric)
        ax.set_xlabel("generated frame")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
