"""D4RL Maze2D environment and dataset regeneration (dforce.envs.maze2d, dforce.data.maze2d)."""

import json
import os

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")    # before mujoco is first imported; render() falls back if it fails
pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")

from dforce.data import maze2d as data_mod  # noqa: E402
from dforce.envs import maze2d as M  # noqa: E402


# ---- layouts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("maze,shape,goal,n_open", [("umaze", (5, 5), (1, 1), 7), ("medium", (8, 8), (6, 6), 26),
                                                    ("large", (9, 12), (7, 9), 46)])
def test_layouts_and_goal_cells(maze, shape, goal, n_open):
    layout = M.maze_layout(maze)
    assert layout.shape == shape
    assert set(np.unique(layout)) == {"#", "O", "G"}
    assert (layout[0] == "#").all() and (layout[-1] == "#").all() and (layout[:, 0] == "#").all()
    assert tuple(M.goal_cell(maze)) == goal
    cells = M.open_cells(f"maze2d-{maze}-v1")
    assert len(cells) == n_open and all(layout[r, c] != "#" for r, c in cells)


def test_bad_names():
    for bad in ("maze2d-huge", "", "antmaze-umaze"):
        with pytest.raises(ValueError, match="allowed"):
            M.make(bad)
    with pytest.raises(ValueError, match="allowed"):
        data_mod.generate("tiny", 10)
    assert M.parse_name("multi2d-large") == ("large", True)
    assert M.parse_name("maze2d-medium-v1") == ("medium", False)


def test_shortest_path_waypoints():
    path = M.shortest_path_waypoints("umaze", (3, 1), (1, 1))
    assert path.tolist() == [[3, 2], [3, 3], [2, 3], [1, 3], [1, 2], [1, 1]]
    assert M.shortest_path_waypoints("umaze", (1, 1), (1, 1)).tolist() == [[1, 1]]
    layout = M.maze_layout("large")
    start, target = (1, 1), (7, 9)
    path = M.shortest_path_waypoints("large", start, target)
    steps = np.abs(np.diff(np.vstack([start, path]), axis=0)).sum(1)
    assert (steps == 1).all() and all(layout[r, c] != "#" for r, c in path) and tuple(path[-1]) == target
    assert len(path) == M._distances("large", target)[start]
    # a ball touching a wall can round into the wall cell: the path starts from there
    assert M.shortest_path_waypoints("umaze", (0, 1), (1, 3)).tolist() == [[1, 1], [1, 2], [1, 3]]
    with pytest.raises(ValueError):
        M.shortest_path_waypoints("umaze", (1, 1), (0, 0))


def test_normalized_score():
    for maze, (lo, hi) in M.REF_SCORES.items():
        assert M.normalized_score(f"maze2d-{maze}", lo) == pytest.approx(0.0)
        assert M.normalized_score(maze, hi) == pytest.approx(100.0)
    np.testing.assert_allclose(M.normalized_score("umaze", np.array([23.85, 161.86])), [0.0, 100.0])


# ---- physics -------------------------------------------------------------------------------------

def env_at(maze="umaze", start=(1.0, 1.0), **kwargs):
    env = M.make(maze, seed=0, render_mode=None, **kwargs)
    env.reset(options={"start": start})
    return env


def test_zero_action_keeps_resting_ball_still():
    env = env_at("medium", (3.0, 3.0))
    for _ in range(100):
        obs, *_ = env.step([0.0, 0.0])
    np.testing.assert_allclose(obs, [3.0, 3.0, 0.0, 0.0], atol=1e-9)


def test_action_accelerates_along_x_only():
    env = env_at("medium", (3.0, 3.0))
    obs, *_ = env.step([1.0, 0.0])
    mass = 1000 * 4 / 3 * np.pi * 0.1 ** 3
    assert obs[2] == pytest.approx(100 / mass * M.TIMESTEP, rel=0.02)       # F = gear * u, one Euler step
    assert obs[3] == 0.0 and obs[1] == 3.0
    obs2, *_ = env.step([5.0, 0.0])                                          # actions clip to 1
    assert obs2[2] > obs[2] and obs2[2] == pytest.approx(2 * obs[2], rel=0.02)


def test_velocity_clipped():
    env = env_at("large", (3.0, 1.0))       # row 3 of the large maze is open from col 1 to col 6
    one_step = 100 / (1000 * 4 / 3 * np.pi * 0.1 ** 3) * M.TIMESTEP
    speeds = []
    for _ in range(60):
        obs, *_ = env.step([0.0, 1.0])
        speeds.append(obs[3])
    assert max(speeds) <= M.MAX_SPEED + one_step + 1e-9      # clipped to 5 before each step (as D4RL)
    assert max(speeds) > M.MAX_SPEED                          # ... and the push does reach the limit
    assert env.data.qvel[1] <= M.MAX_SPEED + one_step


@pytest.mark.parametrize("action,axis,limit", [((1, 0), 0, 1.2), ((-1, 0), 0, 0.4), ((0, 1), 1, 3.2),
                                               ((0, -1), 1, 0.4)])
def test_walls_block(action, axis, limit):
    """Umaze cell (1, 1): in observation coordinates its square is [0.3, 1.3] (WALL_SHIFT), the ball has radius 0.1."""
    env = env_at("umaze", (1.0, 1.0))
    for _ in range(200):
        obs, *_ = env.step(action)
        assert (obs[axis] - limit) * np.sign(sum(action)) <= 0.05     # soft contact: a little penetration at impact, never through
    assert abs(obs[axis] - limit) < 0.01                               # pinned against it
    squares = M.wall_squares("umaze")
    inside = ((obs[0] > squares[:, 0]) & (obs[0] < squares[:, 2]) & (obs[1] > squares[:, 1]) & (obs[1] < squares[:, 3]))
    assert not inside.any()


def test_reward_radius():
    env = env_at("umaze", (1.0, 1.0))
    for offset, expected in ((0.0, 1.0), (0.45, 1.0), (0.55, 0.0)):
        env.set_state((1.0, 1.0 + offset))
        _, reward, terminated, truncated, info = env.step([0.0, 0.0])
        assert reward == expected and terminated is False and truncated is False
        np.testing.assert_array_equal(info["goal"], [1.0, 1.0])


@pytest.mark.parametrize("maze,length", [("umaze", 300), ("medium", 600)])
def test_truncation(maze, length):
    env = M.make(maze, seed=1, render_mode=None)
    env.reset()
    flags = [env.step(env.action_space.sample())[3] for _ in range(length)]
    assert not any(flags[:-1]) and flags[-1]
    with pytest.raises(RuntimeError):
        M.make(maze, render_mode=None).step([0, 0])


def test_reset_distribution():
    env = M.make("medium", seed=3, render_mode=None)
    free = {tuple(c) for c in M.open_cells("medium").tolist()}
    starts, velocities = [], []
    for _ in range(300):
        obs, info = env.reset()
        cell = M.cell_of(obs)
        assert cell in free and np.abs(obs[:2] - cell).max() <= 0.1
        np.testing.assert_array_equal(info["goal"], [6.0, 6.0])
        starts.append(cell)
        velocities.append(obs[2:])
    assert len(set(starts)) >= 20                               # all 26 open cells are candidates
    assert 0.07 < np.std(velocities) < 0.13                     # N(0, 0.1^2)
    again = M.make("medium", seed=3, render_mode=None)
    np.testing.assert_array_equal(again.reset()[0], M.make("medium", seed=3, render_mode=None).reset()[0])


def test_multi_goal():
    env = M.make("multi2d-umaze", seed=0, render_mode=None)
    free = {tuple(c) for c in M.open_cells("umaze").tolist()}
    goals = np.array([env.reset()[1]["goal"] for _ in range(100)])
    assert all(M.cell_of(g) in free for g in goals) and np.abs(goals - np.round(goals)).max() <= 0.1
    assert len({M.cell_of(g) for g in goals}) == 7
    _, info = env.reset(options={"goal": (3.0, 3.0)})
    np.testing.assert_array_equal(info["goal"], [3.0, 3.0])


def test_render():
    env = M.make("umaze", seed=0, render_size=(64, 64))
    env.reset()
    img = env.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 0
    env.close()
    raster = M._raster("large", (1.0, 1.0), (7.0, 9.0), (90, 120))
    assert raster.shape == (90, 120, 3) and raster.dtype == np.uint8
    assert (raster == (178, 128, 76)).all(-1).mean() > 0.3 and (raster == (76, 153, 76)).all(-1).any()


# ---- data ----------------------------------------------------------------------------------------

def test_controller_reaches_target_without_noise():
    """From the top-left corner of the large maze to the bottom-right goal cell, across the whole maze."""
    env = env_at("large", (1.0, 1.0))
    controller = data_mod.WaypointController("large", np.random.default_rng(0))
    x, y, vx, vy = 1.0, 1.0, 0.0, 0.0
    for t in range(1500):
        ax, ay, reached = controller.action(x, y, vx, vy, (7.0, 9.0))
        if reached:
            break
        x, y, vx, vy = env.advance(ax, ay)
    assert reached and np.hypot(x - 7, y - 9) < 0.1 and t > 50


def test_generate_deterministic_and_shaped():
    a = data_mod.generate("umaze", 2000, seed=5, progress=False)
    b = data_mod.generate("umaze", 2000, seed=5, progress=False)
    c = data_mod.generate("umaze", 2000, seed=6, progress=False)
    assert set(a) == set(data_mod.KEYS)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["observations"], c["observations"])
    assert a["observations"].shape == (2000, 4) and a["observations"].dtype == np.float32
    assert a["actions"].shape == (2000, 2) and np.abs(a["actions"]).max() <= 1.0
    assert a["rewards"].shape == (2000,) and set(np.unique(a["rewards"])) <= {0.0, 1.0}
    assert a["infos/goal"].shape == (2000, 2) and not a["terminals"].any()
    assert np.flatnonzero(a["timeouts"]).tolist() == [299, 599, 899, 1199, 1499, 1799]
    np.testing.assert_array_equal(a["rewards"], data_mod.sparse_rewards(a["observations"], "umaze"))
    # one continuous walk: consecutive positions are one physics step apart (<= 5.24 * 0.01, plus a stale repeat)
    jumps = np.linalg.norm(np.diff(a["observations"][:, :2], axis=0), axis=1)
    assert jumps.max() < 0.2
    stats = data_mod.dataset_stats(a)
    assert stats["steps"] == 2000 and len(stats["obs_mean"]) == 4


def test_check_rows():
    data = data_mod.generate("umaze", 500, seed=0, progress=False)
    rows = data_mod.check(data, "maze2d-umaze")
    assert len(rows) == 11 and all(set(r) == {"stat", "value", "reference", "tolerance", "pass"} for r in rows)
    ref = data_mod.REFERENCE_STATS["umaze"]
    fake = {"observations": np.tile(np.array(ref["obs_mean"], np.float32), (10, 1)),
            "actions": np.zeros((10, 2), np.float32), "rewards": np.zeros(10, np.float32)}
    by_stat = {r["stat"]: r["pass"] for r in data_mod.check(fake, "umaze")}
    assert by_stat["obs_mean[x]"] and not by_stat["obs_std[x]"] and not by_stat["reward_mean"]


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_mod.cache_dir() == tmp_path / "xdg" / "dforce" / "maze2d"
    first = data_mod.load_or_generate("umaze", steps=300, seed=1, progress=False)
    path = data_mod.cache_path("umaze", steps=300, seed=1)
    assert path.exists() and path.parent == data_mod.cache_dir()
    assert [p.name for p in path.parent.iterdir()] == [path.name]          # no temporary files left behind
    monkeypatch.setattr(data_mod, "generate", lambda *a, **k: pytest.fail("should load from the cache"))
    second = data_mod.load_or_generate("umaze", steps=300, seed=1)
    assert set(first) == set(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
        assert first[key].dtype == second[key].dtype


def test_load_hdf5_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError):
        data_mod.load_hdf5(tmp_path / "missing.hdf5")
    path = tmp_path / "d.hdf5"
    data = data_mod.generate("umaze", 50, progress=False)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
    loaded = data_mod.load_hdf5(path)
    np.testing.assert_array_equal(loaded["observations"], data["observations"])


def test_cli_data_maze2d_check_writes_result(tmp_path, capsys):
    from dforce.cli import main

    argv = ["data", "maze2d", "--maze", "umaze", "--steps", "400", "--data-dir", str(tmp_path / "cache"), "--check",
            "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    record = json.loads((tmp_path / "umaze.json").read_text())
    assert len(record["metrics"]["rows"]) == 11 and record["steps"] == 400
    assert record["command"].startswith("dforce data maze2d")
    out = capsys.readouterr().out
    assert "obs_mean[x]" in out and ("PASS" in out or "FAIL" in out)
    assert main(argv) == 0                                                # the second run loads the cache
    assert json.loads((tmp_path / "umaze.json").read_text())["loaded_from_cache"] is True
    capsys.readouterr()
    assert main(["data", "maze2d", "--maze", "huge"]) == 2               # argparse rejects an unknown maze, one line
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'huge'" in err and len(err.splitlines()) == 1


def test_cli_data_maze2d_bad_steps(capsys):
    from dforce.cli import main

    assert main(["data", "maze2d", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_load_hdf5_without_h5py(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        data_mod.load_hdf5(tmp_path / "x.hdf5")
