"""The cued Maze2D memory task: expert, demos, cue visibility, corrupted commits, policies end to end, CLI errors."""

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from dforce.cli import main  # noqa: E402
from dforce.config import DiffusionConfig, ModelConfig, SamplingConfig  # noqa: E402
from dforce.data.imitation import (  # noqa: E402
    COND_DIM, expert_episode, generate_demos, memory_sequences, memoryless_windows,
)
from dforce.envs.cued_maze import EPISODE_LIMIT, CuedMaze, goal_of, start_position  # noqa: E402
from dforce.pipeline import DiffusionForcingModel  # noqa: E402
from dforce.tasks.imitation import METHODS, Corruption, ImitationPolicy, commit_levels  # noqa: E402
from dforce.tasks.imitation_eval import run_episodes  # noqa: E402

K = 5


@pytest.fixture(scope="module")
def demos():
    return generate_demos(4, seed=3)


def test_expert_is_deterministic_and_reaches_the_cued_goal():
    for cue in (1, -1):
        obs, act = expert_episode(cue, np.random.default_rng(7))
        again, act_again = expert_episode(cue, np.random.default_rng(7))
        np.testing.assert_array_equal(obs, again)
        np.testing.assert_array_equal(act, act_again)
        assert np.linalg.norm(obs[-1, :2] - goal_of(cue)) <= 0.5
        assert np.linalg.norm(obs[:, :2] - goal_of(-cue), axis=1).min() > 0.5   # never near the other goal
        assert len(act) * 1.5 <= EPISODE_LIMIT and np.abs(act).max() <= 1


def test_demos_are_deterministic_for_a_seed(demos):
    again = generate_demos(4, seed=3)
    for key in demos:
        np.testing.assert_array_equal(demos[key], again[key])
    assert demos["cues"].tolist() == [1, -1, 1, -1]
    assert not np.array_equal(generate_demos(1, seed=4)["observations"], demos["observations"][:1])
    np.testing.assert_array_equal(generate_demos(1, seed=3)["actions"][0, :demos["lengths"][0]],
                                  demos["actions"][0, :demos["lengths"][0]])   # demo i does not depend on n


def test_cue_is_visible_at_t0_only(demos):
    maze = CuedMaze(2, limit=5)
    rng = np.random.default_rng(0)
    obs = maze.reset([1, -1], np.stack([start_position(rng) for _ in range(2)]))
    assert obs[:, 4].tolist() == [1.0, -1.0]
    for _ in range(3):
        assert (maze.step(np.ones((2, 2)))[:, 4] == 0).all()
    memory = memory_sequences(demos, K, 60)
    assert memory.cond.shape == (4, 60, COND_DIM)
    assert memory.cond[:, 0, 4].tolist() == [1.0, -1.0, 1.0, -1.0] and (memory.cond[:, 1:] == 0).all()
    windows = memoryless_windows(demos, K)
    first = torch.cat([torch.tensor([0]), torch.as_tensor(demos["lengths"] - K + 1).cumsum(0)[:-1]])
    cue = windows.cond[:, 0, 4]
    assert (cue[first] != 0).all() and (cue != 0).sum() == len(first)


def test_corruption_flags_steps_after_the_first_only():
    flags, noise = Corruption(0.5).draw(np.random.default_rng(0), 400)
    assert not flags[0] and 0.4 < flags[1:].mean() < 0.6 and noise.shape == (401, 4)
    obs = np.arange(10.0).reshape(2, 5)
    seen = Corruption(0.5, "zeros").apply(obs, np.array([True, False]), np.ones((2, 4)))
    assert seen[0].tolist() == [0, 0, 0, 0, 4] and seen[1].tolist() == obs[1].tolist()
    with pytest.raises(ValueError, match="corruption mode"):
        Corruption(0.3, "blur")


def test_commit_levels_are_positive_for_flagged_tokens_only():
    flags = torch.tensor([[False] * K, [False, True, False, False, False], [True] * K])
    assert commit_levels(flags, 400).squeeze(1).tolist() == [0, 400, 400]
    assert commit_levels(flags, 0).squeeze(1).tolist() == [0, 0, 0]


def tiny_model(method: str) -> DiffusionForcingModel:
    mode, forcing = METHODS[method].mode, METHODS[method].forcing
    torch.manual_seed(0)
    return DiffusionForcingModel((6 * K,), COND_DIM, ModelConfig(width=16, depth=1), DiffusionConfig(levels=100, forcing=forcing),
                                 SamplingConfig(steps=3, scheduling="autoregressive", chunk=1),
                                 extra={"imitation": {"mode": mode, "frame_stack": K}}).eval()


@pytest.mark.parametrize("method", list(METHODS))
def test_tiny_untrained_policy_runs_episodes(method):
    policy = ImitationPolicy(tiny_model(method), method, corrupt_level=60, seed=0)
    out = run_episodes(policy, episodes=3, batch=2, seed=5, corruption=Corruption(0.5), limit=12, progress=False)
    assert len(out["outcomes"]) == 3 and set(out["outcomes"]) <= {"success", "wrong_goal", "timeout"}
    assert out["cues"].tolist() == [1, -1, 1] and (out["steps"] <= 15).all()
    assert out["recorded"][0]["path"].shape[1] == 2
    if method == "memoryless":
        assert policy.committed_levels == []
        return
    levels = torch.cat(policy.committed_levels, 1)                   # (b, tokens) of the last batch
    assert set(levels.unique().tolist()) <= ({0, 60} if method == "df" else {0})


def test_committed_levels_follow_the_flags():
    policy = ImitationPolicy(tiny_model("df"), "df", corrupt_level=70, seed=0)
    obs = np.zeros((3, 5))
    obs[:, 4] = [1, -1, 1]
    policy.reset(obs)
    act = policy.actions()
    assert act.shape == (3, K, 2) and np.abs(act).max() <= 1
    flags = np.zeros((3, K), bool)
    flags[1, 2] = True
    policy.observe(np.zeros((3, K, 5)), act, flags)
    assert policy.committed_levels[-1].squeeze(1).tolist() == [0, 70, 0]
    told_nothing = ImitationPolicy(tiny_model("df"), "df", corrupt_level=0, seed=0)
    told_nothing.reset(obs)
    told_nothing.observe(np.zeros((3, K, 5)), act, flags)
    assert told_nothing.committed_levels[-1].squeeze(1).tolist() == [0, 0, 0]


def test_policy_refuses_a_model_trained_for_another_method():
    with pytest.raises(ValueError, match="teacher_forcing"):
        ImitationPolicy(tiny_model("df"), "teacher_forcing")


def test_eval_cli_writes_results(tmp_path, capsys):
    ckpt = tiny_model("memoryless").save_pretrained(tmp_path / "model")
    out = tmp_path / "r.json"
    assert main(["eval", "imitation", "--method", "memoryless", "--checkpoint", str(ckpt), "--episodes", "2",
                 "--limit", "10", "--corrupt", "0.3", "--out", str(out), "--no-progress"]) == 0
    import json

    record = json.loads(out.read_text())
    assert record["metrics"]["episodes"] == 2 and record["protocol"]["corruption"]["p"] == 0.3
    assert "success" in capsys.readouterr().out and out.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--method", "bc"], "--method must be one of"),
    (["--method", "df", "--corrupt", "1.5"], "--corrupt must lie in [0, 1]"),
    (["--method", "df", "--episodes", "0"], "--episodes must be >= 1"),
    (["--method", "memoryless", "--corrupt-level", "300"], "--corrupt-level applies to --method df only"),
    (["--method", "df", "--corrupt-level", "-1"], "--corrupt-level must be >= 0"),
    (["--method", "df"], "model directory"),
])
def test_eval_bad_input_is_one_line_and_exit_2(capsys, tmp_path, extra, message):
    assert main(["eval", "imitation", "--checkpoint", str(tmp_path / "none"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_train_rejects_a_window(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "imitation_df.yaml"
    assert main(["train", str(config), "data.window=4", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "data.window" in capsys.readouterr().err
