"""A memory task on the real Maze2D Medium physics: a cue at t=0 says which of two goals to reach.

Layout (D4RL ``maze2d-medium``, cells ``(row, col)``, observation x along rows, y along columns)::

    ########        start  S = (1, 1)
    #SO##OO#        goal A = (2, 6)   cue +1
    #OO#OOA#        goal B = (4, 6)   cue -1
    ##OOJ###        junction J = (3, 4)
    #OO#OOB#
    #O#OO#O#        shortest paths (D4RL's tie-breaking): S -> (1,2) (2,2) (3,2) (3,3) J, then
    #OOO#OO#        A: (2,4) (2,5) (2,6)   B: (4,4) (4,5) (4,6)
    ########        (mirror images of each other about row 3, 7 cells each)

The two shortest paths share their first five cells and split at the junction; the
walls of cells (3, 5) and (3, 6) keep the two goals apart, so a ball can only reach the
other goal by going back through the junction.

Observation given to policies ``(x, y, vx, vy, cue)``: the ball's state and the cue,
``+1`` (goal A) or ``-1`` (goal B) at ``t = 0`` only and ``0`` afterwards, so after the
first step nothing in the current observation tells which goal was asked for.

Episode: start at rest at the start cell plus ``U(-0.1, 0.1)`` position noise (D4RL's
reset noise). *Success* = coming within ``GOAL_RADIUS`` (0.5, D4RL's reward radius) of the
cued goal before coming within 0.5 of the other goal and within ``EPISODE_LIMIT``
steps; the episode ends at the first of the two goals touched. ``EPISODE_LIMIT`` = 435
steps is 1.5x the longest episode of the scripted expert (:mod:`dforce.data.imitation`:
287 steps in 2000 demos, seed 0, action noise 0.5; median 243), rounded up to a
multiple of 5 (whole tokens of 5 steps).

Batching: :class:`CuedMaze` steps ``B`` environments in a loop (the physics is tiny);
finished episodes stop moving.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..envs.maze2d import GOAL_RADIUS, make

MAZE = "medium"
START_CELL = (1, 1)
GOAL_CELLS = {1: (2, 6), -1: (4, 6)}      # cue -> goal cell
JUNCTION_CELL = (3, 4)
START_NOISE = 0.1
EPISODE_LIMIT = 435
OBS_DIM = 5                               # x, y, vx, vy, cue
OUTCOMES = ("success", "wrong_goal", "timeout")


def goal_of(cue: Any) -> np.ndarray:
    """Goal positions ``(..., 2)`` float64 for cues ``(...)`` in {+1, -1}."""
    cue = np.asarray(cue)
    if not np.isin(cue, (1, -1)).all():
        raise ValueError(f"cues must be +1 or -1, got {np.unique(cue).tolist()}")
    return np.where(cue[..., None] > 0, np.array(GOAL_CELLS[1], float), np.array(GOAL_CELLS[-1], float))


def start_position(rng: np.random.Generator) -> np.ndarray:
    """The start cell plus U(-0.1, 0.1) noise per coordinate, ``(2,)``."""
    return np.asarray(START_CELL, float) + rng.uniform(-START_NOISE, START_NOISE, size=2)


def with_cue(state: np.ndarray, cue: Any) -> np.ndarray:
    """Observations ``(..., 5)`` from states ``(..., 4)`` and cues broadcastable to ``(...)``."""
    state = np.asarray(state, dtype=np.float64)
    cue = np.broadcast_to(np.asarray(cue, dtype=np.float64), state.shape[:-1])
    return np.concatenate([state, cue[..., None]], -1)


class CuedMaze:
    """``B`` cued Maze2D Medium episodes stepped together (see the module docstring).

    ``reset(cues (B,), starts (B, 2))`` returns observations ``(B, 5)`` with the cue;
    ``step(actions (B, 2))`` returns ``(B, 5)`` with cue 0 and updates ``outcome``:
    ``None`` while running, else one of ``OUTCOMES``. Finished episodes ignore their
    actions and keep their last observation. ``steps`` (B,) counts the steps taken.
    """

    def __init__(self, batch: int, limit: int = EPISODE_LIMIT):
        if batch < 1 or limit < 1:
            raise ValueError(f"need batch >= 1 and limit >= 1, got {batch}, {limit}")
        self.envs = [make(f"maze2d-{MAZE}", render_mode=None) for _ in range(batch)]
        self.limit = limit
        self.cues = np.ones(batch, np.int64)
        self.state = np.zeros((batch, 4))
        self.steps = np.zeros(batch, np.int64)
        self.outcome: list[str | None] = [None] * batch

    @property
    def done(self) -> np.ndarray:
        """(B,) bool: which episodes have ended."""
        return np.array([o is not None for o in self.outcome])

    def reset(self, cues: Any, starts: Any) -> np.ndarray:
        cues, starts = np.asarray(cues, np.int64), np.asarray(starts, np.float64)
        if cues.shape != (len(self.envs),) or starts.shape != (len(self.envs), 2):
            raise ValueError(f"need cues ({len(self.envs)},) and starts ({len(self.envs)}, 2), "
                             f"got {cues.shape}, {starts.shape}")
        goal_of(cues)   # validates
        self.cues = cues
        self.state = np.stack([env.reset(options={"start": s})[0] for env, s in zip(self.envs, starts)])
        self.steps[:] = 0
        self.outcome = [None] * len(self.envs)
        return with_cue(self.state, self.cues)

    def step(self, actions: Any) -> np.ndarray:
        actions = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
        cued, other = goal_of(self.cues), goal_of(-self.cues)
        for i, env in enumerate(self.envs):
            if self.outcome[i] is not None:
                continue
            self.state[i] = env.advance(float(actions[i, 0]), float(actions[i, 1]))
            self.steps[i] += 1
            self.outcome[i] = outcome(self.state[i, :2], cued[i], other[i], int(self.steps[i]), self.limit)
        return with_cue(self.state, 0.0)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def outcome(position: np.ndarray, cued: np.ndarray, other: np.ndarray, steps: int, limit: int) -> str | None:
    """``"success"``, ``"wrong_goal"``, ``"timeout"`` or None (still running) after ``steps`` steps."""
    if np.hypot(*(position - cued)) <= GOAL_RADIUS:
        return "success"
    if np.hypot(*(position - other)) <= GOAL_RADIUS:
        return "wrong_goal"
    return "timeout" if steps >= limit else None
