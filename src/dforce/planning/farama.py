"""Run the Maze2D planners on Farama's gymnasium-robotics ``PointMaze_{UMaze,Medium,Large}-v3``.

Farama's PointMaze is D4RL's point mass rebuilt, in another coordinate frame. The planners
(:class:`~dforce.planning.Planner`) were trained in D4RL's frame (:mod:`dforce.envs.maze2d`), so
:class:`D4RLFrame` wraps a Farama env and converts between the two frames:

* observations: the dict ``{"observation", "achieved_goal", "desired_goal"}`` becomes ``(4,)``
  float64 ``[x, y, vx, vy]`` in D4RL's frame, and ``info["goal"]`` ``(2,)`` is the desired goal in D4RL's frame;
* actions: ``(2,)`` D4RL-frame actions in [-1, 1] are rotated into Farama's frame before the step.

The mapping, derived from the maps and checked on the simulators (``tests/test_farama_adapter.py``):

* **Layouts.** Farama's ``maze_map`` (1 = wall) and D4RL's layouts are the same grids: row ``i``,
  column ``j`` name the same cell in both.
* **Positions.** Farama puts cell ``(i, j)`` at ``(j + 0.5 - W / 2, H / 2 - i - 0.5)`` (``Maze.cell_rowcol_to_xy``,
  ``H x W`` grid, centred on the maze): x along columns, y up the rows. D4RL's observation has x along rows,
  y along columns, and that cell's walls centred at ``(i - 0.2, j - 0.2)`` (``maze2d.WALL_SHIFT``). So
  ``p_d4rl = R p_farama + c`` with ``R = [[0, -1], [1, 0]]`` (a rotation by +90 degrees, no mirror) and
  ``c = ((H - 1) / 2 - 0.2, (W - 1) / 2 - 0.2)``: (1.8, 1.8) for U-Maze, (3.3, 3.3) for Medium,
  (3.8, 5.3) for Large. Every wall box of Farama's model lands on D4RL's wall square exactly.
  The mapping is physical (walls onto walls), so Farama's cell centre maps to the centre of D4RL's wall
  square, 0.2 below D4RL's nominal cell point ``(i, j)`` in each coordinate: D4RL's goals and resets
  sit 0.2 off the cell centre, Farama's do not.
* **Velocities and actions.** ``v_d4rl = R v_farama`` and ``a_farama = R^T a_d4rl``. A rotation by 90
  degrees only swaps axes and flips a sign, so both envs' per-axis clipping (actions to [-1, 1], velocity
  to [-5, 5]) maps onto each other exactly and the action box is unchanged.
* **Time and units: no scaling.** Both simulate the same ball (sphere 0.1, mass 4.19, damping 1,
  gear 100, Euler) with timestep 0.01 and one physics step per env step (D4RL maze2d ``frame_skip`` 1,
  Farama ``PointEnv`` ``frame_skip=1``, ``dt`` 0.01; the "10 Hz" in Farama's docstring is not what it runs),
  both observe ``qvel`` in maze units per second, both clip the velocity before the step. Started from
  mapped states and fed mapped random actions (20 episodes of 300 steps per maze), Farama's ball and
  :mod:`dforce.envs.maze2d`'s stay within 4e-8 of each other until the first wall contact (the ball
  rests on the ground, whose contact solve sees the axes swapped) and within 2e-3 over the whole
  episode (contact onsets amplify that rounding). The episode lengths are D4RL's too (300 / 600 / 800).
* **What the wrapper leaves alone.** Reward, ``terminated``, ``truncated`` and ``info["success"]`` are
  Farama's (distance to the goal <= 0.45, where D4RL rewards <= 0.5); distances do not change under a
  rotation plus offset. Farama draws a random goal cell each reset (noise U(-0.25, 0.25)) and starts at
  rest; D4RL's planners handle any goal. ``reset(options={"goal_cell": (i, j), "reset_cell": (i, j)})``
  passes through: the cell indices are the same in both frames.

``gymnasium`` and ``gymnasium_robotics`` are optional dependencies (``pip install 'dforce[planning]'``):
they are imported when a wrapper is first built, not when this module is.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..envs.maze2d import MAZES, TIMESTEP, WALL_SHIFT, maze_layout
from ..lazy import module_getattr

# p_d4rl = ROTATION @ p_farama + offset: +90 degrees (Farama's x is D4RL's y; Farama's y is D4RL's -x).
ROTATION = np.array([[0.0, -1.0], [1.0, 0.0]])

# The Farama ids whose walls are D4RL's mazes; _Diverse_G / _Diverse_GR only restrict goal/start cells.
_ENV_ID = re.compile(r"^PointMaze_(UMaze|Medium|Large)(_Diverse_GR?)?(Dense)?-v3$")
_MAZE_OF = {"UMaze": "umaze", "Medium": "medium", "Large": "large"}
KNOWN_IDS = "PointMaze_{UMaze,Medium,Large}[_Diverse_G|_Diverse_GR][Dense]-v3"


# ---- names -----------------------------------------------------------------------------------------

def dforce_maze(env_id: str) -> str:
    """The dforce maze (``"umaze"``, ``"medium"`` or ``"large"``) of a Farama PointMaze env id.

    ``PointMaze_Medium-v3``, ``PointMaze_Medium_Diverse_GR-v3`` and ``PointMaze_MediumDense-v3`` all give
    ``"medium"``; anything else (``PointMaze_Open-v3``, an AntMaze, another version) is a ValueError.
    """
    match = _ENV_ID.match(str(env_id))
    if match is None:
        raise ValueError(f"{env_id!r} is not a PointMaze maze the dforce planners know; allowed: {KNOWN_IDS}")
    return _MAZE_OF[match.group(1)]


def maze_of_map(maze_map: Any) -> str:
    """The dforce maze whose walls are those of a Farama ``maze_map`` (list of rows, 1 = wall), or ValueError."""
    walls = np.array([[cell == 1 for cell in row] for row in maze_map])
    for maze in MAZES:
        layout = maze_layout(maze) == "#"
        if layout.shape == walls.shape and (layout == walls).all():
            return maze
    raise ValueError(f"maze_map of shape {walls.shape} has the walls of none of the dforce mazes {', '.join(MAZES)}")


# ---- the frame mapping (pure numpy) ----------------------------------------------------------------

def frame_offset(farama_maze: Any) -> np.ndarray:
    """``c`` of ``p_d4rl = R p_farama + c``, ``(2,)``, from a Farama ``Maze`` (``env.unwrapped.maze``).

    Uses Farama's own ``cell_rowcol_to_xy`` for cell (0, 0), whose walls D4RL centres at
    ``(WALL_SHIFT, WALL_SHIFT)``: matching walls with walls keeps the physics the planner learned.
    """
    if float(farama_maze.maze_size_scaling) != 1.0:   # D4RL cells are 1 x 1; a scaled maze is another task
        raise ValueError(f"maze_size_scaling must be 1 (D4RL's cell size), got {farama_maze.maze_size_scaling}")
    origin = np.asarray(farama_maze.cell_rowcol_to_xy(np.array([0, 0])), dtype=np.float64)
    return np.array([WALL_SHIFT, WALL_SHIFT]) - ROTATION @ origin


def position_to_d4rl(xy: Any, offset: np.ndarray) -> np.ndarray:
    """Farama positions ``(..., 2)`` -> D4RL positions ``(..., 2)``."""
    return np.asarray(xy, dtype=np.float64) @ ROTATION.T + offset


def position_to_farama(xy: Any, offset: np.ndarray) -> np.ndarray:
    """D4RL positions ``(..., 2)`` -> Farama positions ``(..., 2)`` (inverse of :func:`position_to_d4rl`)."""
    return (np.asarray(xy, dtype=np.float64) - offset) @ ROTATION


def observation_to_d4rl(obs: Any, offset: np.ndarray) -> np.ndarray:
    """Farama ``[x, y, vx, vy]`` ``(..., 4)`` -> D4RL ``[x, y, vx, vy]`` ``(..., 4)`` (velocities only rotate)."""
    obs = np.asarray(obs, dtype=np.float64)
    return np.concatenate([position_to_d4rl(obs[..., :2], offset), obs[..., 2:4] @ ROTATION.T], axis=-1)


def action_to_farama(action: Any) -> np.ndarray:
    """D4RL-frame actions ``(..., 2)`` -> Farama-frame actions ``(..., 2)`` (``R^T a``; [-1, 1] maps onto itself)."""
    return np.asarray(action, dtype=np.float64) @ ROTATION


def action_to_d4rl(action: Any) -> np.ndarray:
    """Farama-frame actions ``(..., 2)`` -> D4RL-frame actions ``(..., 2)`` (``R a``)."""
    return np.asarray(action, dtype=np.float64) @ ROTATION.T


# ---- the wrapper -----------------------------------------------------------------------------------

def _gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ImportError("the Farama adapter needs 'gymnasium' and 'gymnasium-robotics': "
                          "pip install 'dforce[planning]'") from e
    return gymnasium


def _build_wrapper_class():
    gym = _gymnasium()

    class D4RLFrame(gym.Wrapper):
        """A Farama PointMaze env seen in D4RL Maze2D's frame, as the dforce planners were trained.

        Observation ``(4,)`` float64 ``[x, y, vx, vy]``; ``info["goal"]`` ``(2,)`` (D4RL frame) after
        ``reset`` and every ``step``; action ``(2,)`` in [-1, 1] (D4RL frame). Reward, termination,
        truncation and ``info["success"]`` are Farama's. ``maze`` names the dforce maze (from the env's walls).
        Raises ValueError for an env whose walls, cell size or time step are not a D4RL maze's.
        """

        def __init__(self, env: Any):
            super().__init__(env)
            farama = env.unwrapped
            if not hasattr(farama, "maze") or not hasattr(farama, "point_env"):
                raise ValueError(f"{farama!r} is not a Farama PointMaze env (no .maze / .point_env)")
            self.maze = maze_of_map(farama.maze.maze_map)
            dt = float(farama.point_env.dt)
            if abs(dt - TIMESTEP) > 1e-12:   # the planner's tokens are 0.01 s steps; another dt is other dynamics
                raise ValueError(f"env time step {dt} differs from D4RL Maze2D's {TIMESTEP}")
            self.offset = frame_offset(farama.maze)                               # (2,)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

        def _convert(self, obs: dict, info: dict) -> tuple[np.ndarray, dict]:
            """Farama's dict observation -> ``(4,)`` D4RL observation, info with ``goal`` ``(2,)`` added."""
            info = dict(info)
            info["goal"] = position_to_d4rl(obs["desired_goal"], self.offset)   # read every step: goals can move
            return observation_to_d4rl(obs["observation"], self.offset), info

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            """Farama's reset (``options``: ``goal_cell``, ``reset_cell`` as (row, col)); returns ``(obs (4,), info)``."""
            obs, info = self.env.reset(seed=seed, options=options)
            return self._convert(obs, info)

        def step(self, action: Any):
            """One Farama step with a D4RL-frame action (2,): ``(obs (4,), reward, terminated, truncated, info)``."""
            a = np.asarray(action, dtype=np.float64).reshape(2)
            obs, reward, terminated, truncated, info = self.env.step(action_to_farama(a).astype(np.float32))
            obs, info = self._convert(obs, info)
            return obs, reward, terminated, truncated, info

    return D4RLFrame


# ``D4RLFrame`` is built on first access so that importing this module does not import gymnasium.
__getattr__ = module_getattr(__name__, {"D4RLFrame": _build_wrapper_class})


def register_pointmaze() -> None:
    """Register gymnasium-robotics' envs with gymnasium (idempotent); ImportError naming the extra without it."""
    gym = _gymnasium()
    try:
        import gymnasium_robotics
    except ImportError as e:
        raise ImportError("Farama PointMaze needs 'gymnasium-robotics': pip install 'dforce[planning]'") from e
    gym.register_envs(gymnasium_robotics)


def make_pointmaze(name: str = "PointMaze_UMaze-v3", *, adapt: bool = True, **kwargs: Any):
    """``gymnasium.make(name, **kwargs)`` for a Farama PointMaze of a dforce maze, wrapped in :class:`D4RLFrame`.

    ``adapt=False`` returns the bare Farama env (dict observations, Farama frame). ``name`` must be one of
    ``PointMaze_{UMaze,Medium,Large}[_Diverse_G|_Diverse_GR][Dense]-v3`` (ValueError otherwise, before
    anything is imported). The env keeps Farama's time limit (300 / 600 / 800 steps).
    """
    dforce_maze(name)
    register_pointmaze()
    env = _gymnasium().make(name, **kwargs)
    return __getattr__("D4RLFrame")(env) if adapt else env
