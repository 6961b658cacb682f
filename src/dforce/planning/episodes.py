"""Why an episode scores what it scores: arrival, dwelling, and the score if the agent had stayed.

The D4RL normalized score counts every step spent inside the goal radius, so it mixes
three things a reader wants apart: whether the goal was reached at all, how fast, and
whether the agent stayed. ``if_stay`` counts every step from the first arrival on (the
``episode_reward_if_stay`` the paper's authors log in their later code), so the gap
between it and the raw return is what leaving the goal costs.
"""

from __future__ import annotations

import numpy as np


def episode_stats(rewards: np.ndarray) -> dict[str, np.ndarray]:
    """Per-episode statistics from the 0/1 step rewards ``(E, T)``.

    Returns arrays of shape (E,): ``reached`` (bool), ``first_arrival`` (1-based env step of
    the first rewarded step; NaN if never), ``time_in_goal_after_arrival`` (fraction of the
    steps from the first arrival to the end spent inside the radius; NaN if never) and
    ``if_stay_return`` (steps from the first arrival to the end; 0 if never).
    """
    r = np.asarray(rewards, dtype=np.float64) > 0
    if r.ndim != 2:
        raise ValueError(f"rewards must be (episodes, steps), got shape {r.shape}")
    steps = r.shape[1]
    reached = r.any(1)
    first = np.where(reached, r.argmax(1), steps)                      # 0-based index, T if never
    after = steps - first                                                # steps from arrival on
    inside = r.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dwell = np.where(reached, inside / np.maximum(after, 1), np.nan)
    return {"reached": reached, "first_arrival": np.where(reached, first + 1.0, np.nan),
            "time_in_goal_after_arrival": dwell, "if_stay_return": after.astype(np.float64)}


def summary(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over episodes: reach rate; first arrival and time-in-goal over the episodes that arrived (NaN if none)."""
    reached = stats["reached"]
    mean = (lambda v: float(np.nanmean(v)) if reached.any() else float("nan"))  # noqa: E731
    return {"reached_goal_fraction": float(reached.mean()), "first_arrival_mean": mean(stats["first_arrival"]),
            "time_in_goal_after_arrival": mean(stats["time_in_goal_after_arrival"])}
