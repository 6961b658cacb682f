"""Run a batch of cued-maze episodes with a policy and corrupted observations.

Episode ``e`` (``e = 0 .. episodes-1``) has cue ``+1`` for even ``e`` and ``-1`` for odd
``e`` (balanced) and its own random stream ``default_rng([seed, e])``: start noise, then
the corruption draws of every step (:class:`~.corruption.Draws`), drawn before the episode
runs, so every method meets the same starts and the same corrupted steps whatever the
batch size, and every corruption kind corrupts the same steps.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..stats import binomial_stderr, wilson
from .corruption import Corruption
from .demos import cue_of
from .maze import OUTCOMES, CuedMaze, start_position


@dataclass
class Episodes:
    """Outcomes of a run: cues (E,), outcomes [E] (one of ``OUTCOMES``), steps (E,), the share of each episode's
    observations corrupted (E,), and the first few episodes' true paths ``{"episode", "cue", "path" (T, 2), "outcome"}``."""

    cues: np.ndarray
    outcomes: list[str]
    steps: np.ndarray
    corrupted: np.ndarray
    recorded: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Success with its 95% Wilson interval and standard error; the other outcomes' rates."""
        outcomes = np.array(self.outcomes)
        ok = outcomes == "success"
        n, count = len(ok), int(ok.sum())
        lo, hi = wilson(count, n)
        return {"success": count / n, "ci95": [lo, hi], "stderr": binomial_stderr(count, n), "episodes": n,
                **{f"{o}_rate": float((outcomes == o).mean()) for o in OUTCOMES if o != "success"},
                "success_by_cue": {str(c): float(ok[self.cues == c].mean()) for c in (1, -1) if (self.cues == c).any()},
                "steps_to_success_mean": float(self.steps[ok].mean()) if ok.any() else None,
                "corrupted_step_fraction": float(self.corrupted.mean())}


def run_episodes(policy: Any, episodes: int, batch: int, seed: int, corruption: Corruption, limit: int, *,
                 flagged: bool = True, progress: bool = True, record: int = 8) -> Episodes:
    """Run ``episodes`` episodes, ``batch`` at a time; the policy is told the corrupted steps if ``flagged``."""
    from tqdm.auto import tqdm

    cues = np.array([cue_of(e) for e in range(episodes)], np.int64)
    out = Episodes(cues, [""] * episodes, np.zeros(episodes, np.int64), np.zeros(episodes))
    bar = tqdm(total=episodes, desc=f"imitation {policy.method} {corruption.label} p={corruption.p:g}",
               unit="episode", dynamic_ncols=True, disable=not progress or not sys.stderr.isatty())
    try:
        for first in range(0, episodes, batch):
            ids = np.arange(first, min(episodes, first + batch))
            _run_batch(policy, ids, cues[ids], seed, corruption, limit, flagged, out, record, bar)
            bar.update(len(ids))
    finally:
        bar.close()
    return out


def _run_batch(policy: Any, ids: np.ndarray, cues: np.ndarray, seed: int, corruption: Corruption, limit: int,
               flagged: bool, out: Episodes, record: int, bar: Any) -> None:
    """One batch of episodes ``ids``, written into ``out``."""
    k = policy.frame_stack
    rngs = [np.random.default_rng([seed, int(e)]) for e in ids]
    starts = np.stack([start_position(r) for r in rngs])
    draws = [corruption.draw(r, limit + k) for r in rngs]
    flags = np.stack([d.flags for d in draws])                                  # (b, limit + k + 1)
    normal, uniform = np.stack([d.normal for d in draws]), np.stack([d.uniform for d in draws])
    maze = CuedMaze(len(ids), limit)
    try:
        seen_last = maze.reset(cues, starts)
        policy.reset(seen_last)
        path, t = [maze.state[:, :2].copy()], 0
        while not maze.done.all() and t < limit:
            act = policy.actions()                                              # (b, k, 2)
            seen, told = [], []
            for j in range(k):
                t += 1
                running = ~maze.done
                o = maze.step(act[:, j])
                f = flags[:, t] & running
                seen_last = corruption.apply(o, f, normal[:, t], uniform[:, t], seen_last)
                seen.append(seen_last)
                told.append(f if flagged else np.zeros_like(f))
                path.append(maze.state[:, :2].copy())
            policy.observe(np.stack(seen, 1), act, np.stack(told, 1))
            bar.set_postfix(step=t, done=int(maze.done.sum()))
        trail = np.stack(path, 1)                                               # (b, T + 1, 2)
        for i, e in enumerate(ids):
            n = int(maze.steps[i])
            out.outcomes[e] = maze.outcome[i] or "timeout"
            out.steps[e] = n
            out.corrupted[e] = flags[i, 1:n + 1].mean() if n else 0.0
            if e < record:
                out.recorded.append({"episode": int(e), "cue": int(cues[i]), "outcome": out.outcomes[e],
                                     "path": trail[i, :n + 1]})
    finally:
        maze.close()
