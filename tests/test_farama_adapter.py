"""The Farama PointMaze adapter: frames map cell onto cell and wall onto wall, actions push the same way,
the physics agrees with dforce's D4RL Maze2D, and the shipped U-Maze planner acts through it."""

import os
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")

import mujoco  # noqa: E402

from dforce.envs import maze2d as M  # noqa: E402
from dforce.planning import farama as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3"}


@pytest.fixture(scope="module", params=sorted(IDS))
def wrapped(request):
    env = F.make_pointmaze(IDS[request.param])
    yield request.param, env
    env.close()


def test_env_ids_name_the_dforce_mazes():
    assert F.dforce_maze("PointMaze_UMaze-v3") == "umaze"
    assert F.dforce_maze("PointMaze_Medium_Diverse_GR-v3") == "medium"
    assert F.dforce_maze("PointMaze_LargeDense-v3") == "large"
    for bad in ("PointMaze_Open-v3", "AntMaze_UMaze-v4", "PointMaze_UMaze-v2", "maze2d-umaze"):
        with pytest.raises(ValueError, match="not a PointMaze maze the dforce planners know") as e:
            F.dforce_maze(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not a PointMaze maze"):
        F.make_pointmaze("PointMaze_Open-v3")


def test_a_maze_map_with_other_walls_is_refused():
    F.register_pointmaze()
    import gymnasium as gym

    env = gym.make("PointMaze_UMaze-v3", maze_map=[[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="walls of none of the dforce mazes"):
        F.D4RLFrame(env)
    env.close()


def test_cell_centres_and_walls_map_onto_d4rl(wrapped):
    maze, env = wrapped
    farama = env.unwrapped.maze
    layout = M.maze_layout(maze)
    assert env.maze == maze and env.offset.shape == (2,)
    cells = np.argwhere(np.ones(layout.shape, bool))                                   # every (i, j)
    xy = np.stack([farama.cell_rowcol_to_xy(c) for c in cells])                        # (N, 2) Farama
    np.testing.assert_allclose(F.position_to_d4rl(xy, env.offset), cells + M.WALL_SHIFT, atol=1e-12)
    np.testing.assert_allclose(F.position_to_farama(F.position_to_d4rl(xy, env.offset), env.offset), xy, atol=1e-12)
    model = env.unwrapped.point_env.model
    boxes = [model.geom_pos[g, :2] for g in range(model.ngeom) if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX]
    squares = M.wall_squares(maze)                                                       # (W, 4) D4RL frame
    got = np.array(sorted(map(tuple, np.round(F.position_to_d4rl(np.array(boxes), env.offset), 9))))
    want = np.array(sorted(map(tuple, np.round((squares[:, :2] + squares[:, 2:]) / 2, 9))))
    np.testing.assert_allclose(got, want, atol=1e-9)                                     # wall onto wall


def test_goal_and_start_cells_land_in_the_same_d4rl_cells(wrapped):
    maze, env = wrapped
    goal, start = M.goal_cell(maze), M.open_cells(maze)[0]
    obs, info = env.reset(seed=3, options={"goal_cell": goal, "reset_cell": start})
    assert obs.shape == (4,) and info["goal"].shape == (2,) and env.observation_space.contains(obs)
    # Farama adds U(-0.25, 0.25) noise to the cell centre, which D4RL centres at (i, j) + WALL_SHIFT
    assert np.abs(info["goal"] - (goal + M.WALL_SHIFT)).max() <= 0.25
    assert np.abs(obs[:2] - (start + M.WALL_SHIFT)).max() <= 0.25 and np.allclose(obs[2:], 0)
    assert [M.cell_of(p - M.WALL_SHIFT) for p in (info["goal"], obs[:2])] == [tuple(goal), tuple(start)]
    np.testing.assert_allclose(info["goal"], F.position_to_d4rl(env.unwrapped.goal, env.offset))


@pytest.mark.parametrize("action", [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0), (0.6, -0.3)])
def test_actions_move_the_ball_alike_in_both_envs(wrapped, action):
    """Farama through the adapter and dforce's Maze2D, same start, same D4RL-frame action: same path."""
    maze, env = wrapped
    centre = np.array([3, 3]) if maze == "medium" else np.array([3, 2])    # open cells with open neighbours
    obs, _ = env.reset(seed=0, options={"reset_cell": centre, "goal_cell": M.goal_cell(maze)})
    d4rl = M.make(maze, render_mode=None)
    d4rl.reset(seed=0)
    d4rl.set_state(obs[:2], obs[2:])
    start = obs.copy()
    for _ in range(8):                                          # 8 full pushes travel < 0.1: no wall reached
        obs, *_ = env.step(np.array(action))
        ref, *_ = d4rl.step(np.array(action))
        np.testing.assert_allclose(obs, ref, atol=1e-7)
    moved = obs[:2] - start[:2]
    assert moved @ np.array(action) > 0.9 * np.linalg.norm(moved) * np.linalg.norm(action)   # along the push
    assert env.unwrapped.point_env.dt == M.TIMESTEP                                            # no time scaling
    # the bare Farama frame: the same push is rotated (+x in D4RL is -y in Farama)
    np.testing.assert_allclose(F.action_to_farama([1.0, 0.0]), [0.0, -1.0])
    np.testing.assert_allclose(F.action_to_d4rl(F.action_to_farama(action)), action)


def test_shipped_umaze_planner_acts_through_the_adapter():
    from dforce.planning import Planner

    env = F.make_pointmaze("PointMaze_UMaze-v3")
    planner = Planner.from_pretrained(ROOT / "checkpoints" / "maze2d_umaze", "df_no_mcg", mcg_samples=1, steps=2,
                                      horizon=3, replan_every=6, episode_length=env.spec.max_episode_steps)
    obs, info = env.reset(seed=1000)
    planner.reset()
    for _ in range(12):
        action = planner.act(obs, info["goal"])
        assert action.shape == (2,) and np.isfinite(action).all() and np.abs(action).max() <= 1
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.shape == (4,) and np.isfinite(obs).all() and info["goal"].shape == (2,)
        assert isinstance(info["success"], bool) and not terminated
    env.close()
