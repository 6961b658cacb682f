"""D4RL Maze2D (maze2d-{umaze,medium,large}-v1) rebuilt on the ``mujoco`` bindings.

The MJCF below is D4RL's ``d4rl/pointmaze/maze_model.py::point_maze`` written out by
hand: a sphere of radius 0.1 (density 1000, mass 4.19) on two slide joints
``ball_x``/``ball_y`` with damping 1, motors with gear 100 and ctrlrange [-1, 1],
timestep 0.01, Euler integrator, no gravity, walls as 1x1 boxes. Each step, as
D4RL's ``MazeEnv.step``: clip the action to [-1, 1], clip the joint velocity to
[-5, 5] (*before* the physics step, so an observed speed can exceed 5 by at most
one step's acceleration, 100 / 4.19 * 0.01 = 0.24), take one physics step
(frame_skip 1), observe ``(x, y, vx, vy) = (qpos, qvel)``.

Coordinates are D4RL's: x runs along maze rows, y along columns, and the reset
locations, goals, rewards and waypoints treat cell ``(i, j)`` as the point
``(i, j)``. Like D4RL, the ball's body sits at world (1.2, 1.2) while the wall of
cell ``(i, j)`` sits at world ``(i + 1, j + 1)``, so in observation coordinates
the walls are shifted by -0.2: cell ``(i, j)`` is the square
``[i - 0.7, i + 0.3] x [j - 0.7, j + 0.3]``. This quirk is kept on purpose, because
the D4RL datasets and reference scores were made with it (``WALL_SHIFT``).

Reward: 1.0 when ``||(x, y) - goal|| <= 0.5`` else 0 (D4RL's sparse reward, on the
observation after the step). No termination; truncation after 300 / 600 / 800
steps. Reset (D4RL ``reset_model``): a uniformly drawn open cell (the goal cell
included) plus U(-0.1, 0.1) position noise, velocity N(0, 0.1^2). Goal: the
maze's fixed ``G`` cell exactly (no noise); with ``multi=True`` (D4RL's
``reset_target=True``, the paper's "Multi2D") a fresh goal is drawn at every
reset as D4RL's ``set_target()`` does: a uniformly drawn open cell plus
U(-0.1, 0.1) noise.

Batching: the physics is tiny and sequential; use a list of environments
(:func:`make_batch`) and step them in a loop.
"""

from __future__ import annotations

import math
import os
from collections import deque
from functools import lru_cache
from typing import Any

import numpy as np

from ..lazy import module_getattr

MAZES = ("umaze", "medium", "large")

# D4RL maze_model.py: U_MAZE, MEDIUM_MAZE, LARGE_MAZE ('#' wall, 'O' open, 'G' the goal cell).
_LAYOUTS = {
    "umaze": (
        "#####",
        "#GOO#",
        "###O#",
        "#OOO#",
        "#####",
    ),
    "medium": (
        "########",
        "#OO##OO#",
        "#OO#OOO#",
        "##OOO###",
        "#OO#OOO#",
        "#O#OO#O#",
        "#OOO#OG#",
        "########",
    ),
    "large": (
        "############",
        "#OOOO#OOOOO#",
        "#O##O#O#O#O#",
        "#OOOOOO#OOO#",
        "#O####O###O#",
        "#OO#O#OOOOO#",
        "##O#O#O#O###",
        "#OO#OOO#OGO#",
        "############",
    ),
}

EPISODE_LENGTH = {"umaze": 300, "medium": 600, "large": 800}
DATASET_STEPS = {"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}
REF_SCORES = {"umaze": (23.85, 161.86), "medium": (13.13, 277.39), "large": (6.7, 273.99)}   # D4RL ref_min, ref_max
GOAL_RADIUS = 0.5
MAX_SPEED = 5.0
TIMESTEP = 0.01
BODY_POS = 1.2      # world position of the ball's body origin (obs = world - BODY_POS)
WALL_POS = 1.0      # wall of cell (i, j) sits at world (i + WALL_POS, j + WALL_POS)
WALL_SHIFT = WALL_POS - BODY_POS    # -0.2: where cell (i, j)'s square is centred in observation coordinates, minus (i, j)
RESET_NOISE = 0.1   # U(-0.1, 0.1) on position (start and multi goals); N(0, 0.1^2) on velocity

# D4RL's grid actions in their order (NOOP, UP, DOWN, LEFT, RIGHT) as (d_row, d_col);
# shortest-path ties are broken by this order, as Q-iteration's argmax does.
_MOVES = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0))


# ---- names and layouts -----------------------------------------------------------------------

def parse_name(name: str) -> tuple[str, bool]:
    """``(maze, multi)`` from ``umaze``, ``maze2d-umaze``, ``maze2d-umaze-v1`` or ``multi2d-umaze`` (and so on)."""
    base = name.lower()
    if base.endswith("-v1"):
        base = base[:-3]
    multi = base.startswith("multi2d-")
    for prefix in ("maze2d-", "multi2d-"):
        if base.startswith(prefix):
            base = base[len(prefix):]
    if base not in MAZES:
        allowed = [f"maze2d-{m}" for m in MAZES] + [f"multi2d-{m}" for m in MAZES] + list(MAZES)
        raise ValueError(f"unknown maze {name!r}; allowed: {', '.join(allowed)} (optionally with -v1)")
    return base, multi


def maze_layout(name: str) -> np.ndarray:
    """The maze grid, ``(rows, cols)`` array of ``'#'`` (wall), ``'O'`` (open) and ``'G'`` (goal cell)."""
    maze, _ = parse_name(name)
    return np.array([list(row) for row in _LAYOUTS[maze]])


def open_cells(name: str) -> np.ndarray:
    """All cells that are not walls (the goal cell included), ``(N, 2)`` int64 ``(row, col)``, row-major order."""
    return np.argwhere(maze_layout(name) != "#").astype(np.int64)


def goal_cell(name: str) -> np.ndarray:
    """The fixed goal cell ``(row, col)`` of the standard (single-goal) task, ``(2,)`` int64."""
    return np.argwhere(maze_layout(name) == "G")[0].astype(np.int64)


def wall_squares(name: str) -> np.ndarray:
    """Wall squares in observation coordinates, ``(W, 4)`` float ``(x_lo, y_lo, x_hi, y_hi)``; see ``WALL_SHIFT``."""
    cells = np.argwhere(maze_layout(name) == "#").astype(np.float64)
    lo = cells + WALL_SHIFT - 0.5
    return np.concatenate([lo, lo + 1.0], axis=1)


def cell_of(position: Any) -> tuple[int, int]:
    """The grid cell D4RL assigns to a position: ``(round(x), round(y))`` (its ``gridify_state``)."""
    return int(round(float(position[0]))), int(round(float(position[1])))


@lru_cache(maxsize=None)
def _distances(maze: str, target: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Grid steps from every reachable open cell to ``target`` (breadth-first search)."""
    free = {tuple(c) for c in open_cells(maze).tolist()}
    if target not in free:
        raise ValueError(f"target cell {target} is not an open cell of {maze}; open cells: {sorted(free)}")
    dist, queue = {target: 0}, deque([target])
    while queue:
        r, c = queue.popleft()
        for dr, dc in _MOVES[1:]:
            nxt = (r + dr, c + dc)
            if nxt in free and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


def shortest_path_waypoints(name: str, start: Any, target: Any) -> np.ndarray:
    """Cells visited on a shortest grid path from ``start`` to ``target`` (both ``(row, col)``).

    Returns ``(K, 2)`` int64: the cells after ``start``, ending with ``target``;
    ``[target]`` when ``start == target``. ``start`` may be a wall cell next to an open one (a ball
    touching a wall can round into it, as D4RL's ``gridify_state`` does). Equal-length paths are broken as D4RL's
    Q-iteration argmax does (first of NOOP, UP (col-1), DOWN (col+1), LEFT (row-1),
    RIGHT (row+1)), so the path is the one D4RL's waypoint controller follows.
    """
    maze, _ = parse_name(name)
    start, target = tuple(int(v) for v in start), tuple(int(v) for v in target)
    dist = _distances(maze, target)
    if start not in dist and not any((start[0] + dr, start[1] + dc) in dist for dr, dc in _MOVES):
        raise ValueError(f"start cell {start} is neither an open cell of {maze} nor next to one")
    path, cell = [], start
    while True:
        best = min(_MOVES, key=lambda m: dist.get((cell[0] + m[0], cell[1] + m[1]), math.inf))   # first minimum wins
        cell = (cell[0] + best[0], cell[1] + best[1])
        path.append(cell)
        if cell == target:
            return np.array(path, dtype=np.int64)


def normalized_score(env_name: str, episode_return: Any) -> Any:
    """D4RL normalized score ``100 * (R - ref_min) / (ref_max - ref_min)`` (float, or array for an array of returns)."""
    maze, _ = parse_name(env_name)
    lo, hi = REF_SCORES[maze]
    return 100.0 * (np.asarray(episode_return, dtype=np.float64) - lo) / (hi - lo) if np.ndim(episode_return) \
        else 100.0 * (float(episode_return) - lo) / (hi - lo)


# ---- MuJoCo model --------------------------------------------------------------------------------

def mjcf(name: str) -> str:
    """The MJCF XML of D4RL's ``point_maze`` model for this maze (plus a top-down camera for rendering)."""
    layout = maze_layout(name)
    rows, cols = layout.shape
    walls = "\n".join(
        f'    <geom name="wall_{i}_{j}" type="box" pos="{i + WALL_POS} {j + WALL_POS} 0" size="0.5 0.5 0.2" '
        f'conaffinity="1" material="wall"/>'
        for i, j in np.argwhere(layout == "#").tolist())
    cx, cy = (rows - 1) / 2 + WALL_POS, (cols - 1) / 2 + WALL_POS
    height = (max(rows, cols) / 2 + 0.1) / math.tan(math.radians(22.5))
    return f"""<mujoco model="point_maze">
  <compiler inertiafromgeom="true" angle="radian"/>
  <option timestep="{TIMESTEP}" gravity="0 0 0" iterations="20" integrator="Euler"/>
  <default>
    <joint damping="1" limited="false"/>
    <geom friction=".5 .1 .1" density="1000" margin="0.002" condim="1" contype="2" conaffinity="1"/>
  </default>
  <asset>
    <texture type="2d" name="groundplane" builtin="checker" rgb1="0.2 0.3 0.4" rgb2="0.1 0.2 0.3" width="100" height="100"/>
    <material name="groundplane" texture="groundplane" texrepeat="20 20"/>
    <material name="wall" rgba=".7 .5 .3 1"/>
    <material name="target" rgba=".6 .3 .3 1"/>
  </asset>
  <visual>
    <headlight ambient=".4 .4 .4" diffuse=".8 .8 .8" specular="0.1 0.1 0.1"/>
    <map znear=".01"/>
  </visual>
  <worldbody>
    <camera name="top" pos="{cx} {cy} {height:.4f}" xyaxes="0 1 0 -1 0 0" fovy="45"/>
    <geom name="ground" size="40 40 0.25" pos="0 0 -0.1" type="plane" contype="1" conaffinity="0" material="groundplane"/>
    <body name="particle" pos="{BODY_POS} {BODY_POS} 0">
      <geom name="particle_geom" type="sphere" size="0.1" rgba="0 0 1 0" contype="1"/>
      <site name="particle_site" pos="0 0 0" size="0.2" rgba="0.3 0.6 0.3 1"/>
      <joint name="ball_x" type="slide" pos="0 0 0" axis="1 0 0"/>
      <joint name="ball_y" type="slide" pos="0 0 0" axis="0 1 0"/>
    </body>
    <body name="target" mocap="true" pos="0 0 0">
      <site name="target_site" pos="0 0 0" size="0.2" material="target"/>
    </body>
{walls}
  </worldbody>
  <actuator>
    <motor joint="ball_x" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
    <motor joint="ball_y" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
  </actuator>
</mujoco>
"""


def _import_mujoco():
    """Import ``mujoco``, choosing a headless GL backend (EGL) when none is set and there is no display."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    try:
        import mujoco
    except ImportError as e:
        raise ImportError("Maze2D needs the 'mujoco' package: pip install 'dforce[planning]'") from e
    return mujoco


def _gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ImportError("Maze2D needs the 'gymnasium' package: pip install 'dforce[planning]'") from e
    return gymnasium


def _build_env_class():
    gym = _gymnasium()
    spaces = gym.spaces
    seeding = gym.utils.seeding

    class Maze2DEnv(gym.Env):
        """D4RL Maze2D point mass as a ``gymnasium.Env`` (see the module docstring for the exact rules).

        Observation ``(4,)`` float64 ``(x, y, vx, vy)``; action ``(2,)`` in [-1, 1]; ``info["goal"]`` ``(2,)``.
        ``reset(options={"start": (x, y), "goal": (x, y)})`` places the ball (at rest) and/or the goal exactly.
        ``render()`` returns a top-down ``(H, W, 3)`` uint8 image from MuJoCo's offscreen renderer (EGL when
        headless); where no GL backend works it falls back to a plain raster drawing of walls, goal and ball.
        """

        metadata = {"render_modes": ["rgb_array"], "render_fps": int(1 / TIMESTEP)}

        def __init__(self, maze: str = "umaze", multi: bool = False, max_episode_steps: int | None = None,
                     render_mode: str | None = "rgb_array", render_size: tuple[int, int] = (256, 256)):
            """``render_size`` is ``(height, width)`` in pixels."""
            mujoco = _import_mujoco()
            self.maze, _ = parse_name(maze)
            if render_mode not in (None, "rgb_array"):
                raise ValueError(f"render_mode must be one of [None, 'rgb_array'], got {render_mode!r}")
            self.multi = bool(multi)
            self.max_episode_steps = int(max_episode_steps or EPISODE_LENGTH[self.maze])
            if self.max_episode_steps < 1:
                raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
            self.render_mode, self.render_size = render_mode, tuple(render_size)
            self._mj = mujoco
            self.model = mujoco.MjModel.from_xml_string(mjcf(self.maze))
            self.data = mujoco.MjData(self.model)
            self.cells = open_cells(self.maze).astype(np.float64)                 # (N, 2)
            self.fixed_goal = goal_cell(self.maze).astype(np.float64)             # (2,)
            self.goal = self.fixed_goal.copy()
            self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float64)
            self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
            self.elapsed = 0
            self._needs_reset = True
            self._renderer = None

        # -- state ---------------------------------------------------------------------------
        def observation(self) -> np.ndarray:
            """``(4,)`` float64 ``(x, y, vx, vy)``."""
            return np.concatenate([self.data.qpos, self.data.qvel])

        def set_state(self, qpos: Any, qvel: Any = (0.0, 0.0)) -> np.ndarray:
            """Place the ball at ``qpos`` ``(2,)`` with velocity ``qvel`` ``(2,)``; returns the observation."""
            self.data.qpos[:] = qpos
            self.data.qvel[:] = qvel
            self._mj.mj_forward(self.model, self.data)
            return self.observation()

        def set_goal(self, goal: Any) -> None:
            """Use ``goal`` ``(2,)`` (observation coordinates) for the reward until the next reset."""
            self.goal = np.asarray(goal, dtype=np.float64).reshape(2).copy()

        def random_cell_position(self, rng: np.random.Generator) -> np.ndarray:
            """D4RL's draw: a uniform open cell plus U(-0.1, 0.1) noise, ``(2,)``."""
            cell = self.cells[rng.integers(len(self.cells))]
            return cell + rng.uniform(-RESET_NOISE, RESET_NOISE, size=2)

        # -- gymnasium API ---------------------------------------------------------------------
        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            options = dict(options or {})
            unknown = set(options) - {"start", "goal"}
            if unknown:
                raise ValueError(f"unknown reset options {sorted(unknown)}; allowed: ['goal', 'start']")
            rng = self.np_random
            self._mj.mj_resetData(self.model, self.data)
            if "start" in options:
                self.set_state(np.asarray(options["start"], dtype=np.float64).reshape(2), (0.0, 0.0))
            else:
                qpos = self.random_cell_position(rng)
                self.set_state(qpos, rng.normal(0.0, RESET_NOISE, size=2))
            if "goal" in options:
                self.set_goal(options["goal"])
            elif self.multi:
                self.set_goal(self.random_cell_position(rng))
            else:
                self.set_goal(self.fixed_goal)
            self.elapsed, self._needs_reset = 0, False
            return self.observation(), {"goal": self.goal.copy()}

        def advance(self, ax: float, ay: float) -> tuple[float, float, float, float]:
            """One physics step with actions already in [-1, 1]; no reward or time bookkeeping (fast path).

            Returns the new ``(x, y, vx, vy)`` as Python floats.
            """
            d = self.data
            qvel = d.qvel
            qvel[0] = min(max(qvel[0], -MAX_SPEED), MAX_SPEED)   # D4RL clips the velocity before stepping
            qvel[1] = min(max(qvel[1], -MAX_SPEED), MAX_SPEED)
            d.ctrl[0], d.ctrl[1] = ax, ay
            self._mj.mj_step(self.model, d)
            qpos, qvel = d.qpos, d.qvel
            return float(qpos[0]), float(qpos[1]), float(qvel[0]), float(qvel[1])

        def step(self, action):
            if self._needs_reset:
                raise RuntimeError("call reset() before step()")
            a = np.asarray(action, dtype=np.float64).reshape(2)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"action must be finite, got {a}")
            x, y, vx, vy = self.advance(min(max(a[0], -1.0), 1.0), min(max(a[1], -1.0), 1.0))
            reward = 1.0 if math.hypot(x - self.goal[0], y - self.goal[1]) <= GOAL_RADIUS else 0.0
            self.elapsed += 1
            truncated = self.elapsed >= self.max_episode_steps
            return np.array([x, y, vx, vy]), reward, False, truncated, {"goal": self.goal.copy()}

        def render(self):
            if self.render_mode is None:
                return None
            if self._renderer is None:
                try:
                    self._renderer = self._mj.Renderer(self.model, self.render_size[0], self.render_size[1])
                except Exception:   # no usable GL backend: draw it ourselves
                    self._renderer = False
            if self._renderer is False:
                return _raster(self.maze, self.data.qpos[:2], self.goal, self.render_size)
            self.data.mocap_pos[0] = (self.goal[0] + BODY_POS, self.goal[1] + BODY_POS, 0.0)   # marker only
            self._mj.mj_forward(self.model, self.data)
            self._renderer.update_scene(self.data, camera="top")
            return self._renderer.render().copy()

        def close(self):
            if self._renderer:
                self._renderer.close()
            self._renderer = None

        def _seed_rng(self, seed: int) -> None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)

    return Maze2DEnv


def _raster(maze: str, position: Any, goal: Any, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """Top-down drawing without OpenGL, ``(H, W, 3)`` uint8 for ``size = (H, W)``: walls, goal (red), ball (green).

    Framed like the MuJoCo ``top`` camera: rows of the maze downwards, columns to the right, aspect kept.
    """
    layout = maze_layout(maze)
    rows, cols = layout.shape
    height, width = size
    scale = (max(rows, cols) + 0.2) / min(height, width)                        # maze units per pixel
    xs = (rows - 1) / 2 + WALL_SHIFT + (np.arange(height) + 0.5 - height / 2) * scale   # (H,) observation x
    ys = (cols - 1) / 2 + WALL_SHIFT + (np.arange(width) + 0.5 - width / 2) * scale     # (W,) observation y
    i, j = np.floor(xs - WALL_SHIFT + 0.5).astype(int), np.floor(ys - WALL_SHIFT + 0.5).astype(int)
    inside = (i[:, None] >= 0) & (i[:, None] < rows) & (j[None, :] >= 0) & (j[None, :] < cols)
    wall = inside & (layout[i.clip(0, rows - 1)][:, j.clip(0, cols - 1)] == "#")
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (25, 38, 51)
    img[inside] = (40, 60, 80)
    img[wall] = (178, 128, 76)
    for centre, radius, colour in ((goal, 0.2, (153, 76, 76)), (position, 0.2, (76, 153, 76))):
        disc = (xs[:, None] - centre[0]) ** 2 + (ys[None, :] - centre[1]) ** 2 <= radius ** 2
        img[disc] = colour
    return img


# ``Maze2DEnv`` is built on first access so that importing this module does not import gymnasium.
__getattr__ = module_getattr(__name__, {"Maze2DEnv": _build_env_class})


def make(name: str = "maze2d-umaze", multi: bool | None = None, seed: int | None = None, **kwargs: Any):
    """A ``Maze2DEnv`` for ``maze2d-{umaze,medium,large}`` (``-v1`` optional; ``multi2d-*`` means ``multi=True``).

    ``seed`` seeds the environment's generator so that ``reset()`` without a seed is reproducible.
    """
    maze, multi_from_name = parse_name(name)
    env = __getattr__("Maze2DEnv")(maze, multi=multi_from_name if multi is None else multi, **kwargs)
    if seed is not None:
        env._seed_rng(seed)
    return env


def make_batch(name: str, n: int, multi: bool | None = None, seed: int | None = None, **kwargs: Any) -> list:
    """``n`` independent environments (seeds ``seed, seed + 1, ...``); step them in a loop."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [make(name, multi, None if seed is None else seed + i, **kwargs) for i in range(n)]
