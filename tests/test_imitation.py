"""The cued Maze2D memory task: expert, demos, cue visibility, corrupted commits, policies end to end, CLI errors."""

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from dforce.cli import main  # noqa: E402
from dforce.config import DiffusionConfig, ModelConfig, SamplingConfig  # noqa: E402
from dforce.imitation.corruption import KINDS, Corruption, parse_kind  # noqa: E402
from dforce.imitation.demos import expert_episode, generate_demos  # noqa: E402
from dforce.imitation.episodes import run_episodes  # noqa: E402
from dforce.imitation.maze import EPISODE_LIMIT, CuedMaze, goal_of, start_position  # noqa: E402
from dforce.imitation.policy import METHODS, ImitationPolicy, commit_levels, hold_flagged  # noqa: E402
from dforce.imitation.tokens import BASE_COND_DIM, cond_dim, memory_sequences, memoryless_windows  # noqa: E402
from dforce.pipeline import DiffusionForcingModel  # noqa: E402

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
    assert memory.cond.shape == (4, 60, BASE_COND_DIM)
    assert memory.cond[:, 0, 4].tolist() == [1.0, -1.0, 1.0, -1.0] and (memory.cond[:, 1:] == 0).all()
    windows = memoryless_windows(demos, K)
    first = torch.cat([torch.tensor([0]), torch.as_tensor(demos["lengths"] - K + 1).cumsum(0)[:-1]])
    cue = windows.cond[:, 0, 4]
    assert (cue[first] != 0).all() and (cue != 0).sum() == len(first)


def test_corruption_flags_steps_after_the_first_only():
    draws = Corruption(0.5).draw(np.random.default_rng(0), 400)
    assert not draws.flags[0] and 0.4 < draws.flags[1:].mean() < 0.6 and draws.normal.shape == (401, 4)
    obs = np.arange(10.0).reshape(2, 5)
    seen = Corruption(0.5, "zeros").apply(obs, np.array([True, False]), np.ones((2, 4)), np.zeros((2, 4)), obs)
    assert seen[0].tolist() == [0, 0, 0, 0, 4] and seen[1].tolist() == obs[1].tolist()
    with pytest.raises(ValueError, match="corruption kind"):
        Corruption(0.3, "blur")


def test_every_kind_corrupts_the_same_steps_and_only_those():
    flags = {k: Corruption(0.3, k).draw(np.random.default_rng([7, 1]), 50).flags for k in KINDS}
    assert all(np.array_equal(f, flags["gaussian"]) for f in flags.values())
    obs = np.array([[1.0, 2.0, 0.5, -0.5, 0.0], [3.0, 4.0, 0.1, 0.2, 0.0]])
    previous = obs + 1.0
    hit = np.array([True, False])
    normal, uniform = np.full((2, 4), -0.5), np.full((2, 4), 0.25)
    seen = {k: Corruption(0.3, k, 2.0).apply(obs, hit, normal, uniform, previous) for k in KINDS}
    for k in KINDS:
        np.testing.assert_array_equal(seen[k][1], obs[1])                     # unflagged rows untouched
        assert seen[k][0, 4] == obs[0, 4]                                     # the cue column never
    np.testing.assert_allclose(seen["gaussian"][0, :4], obs[0, :4] - 1.0)    # std 2 x (-0.5)
    np.testing.assert_array_equal(seen["hold"][0, :4], previous[0, :4])
    np.testing.assert_allclose(seen["outlier"][0, :4], -12.5)                # -(10 + 10 x 0.25): outside the maze
    assert parse_kind("gaussian0.5").std == 0.5 and parse_kind("outlier").kind == "outlier"
    for bad in ("gaussian-1", "gaussianx", "snow", ""):
        with pytest.raises(ValueError, match="corruption kind"):
            parse_kind(bad)


def test_hold_flagged_repeats_the_last_good_observation():
    obs = np.arange(1.0, 31.0).reshape(2, 3, 5)
    flags = np.array([[False, True, True], [True, False, True]])
    held, last = hold_flagged(obs, flags, np.zeros((2, 5)))
    np.testing.assert_array_equal(held[0, 1, :4], obs[0, 0, :4])
    np.testing.assert_array_equal(held[0, 2, :4], obs[0, 0, :4])
    np.testing.assert_array_equal(held[1, 0, :4], np.zeros(4))                # before any good one: the previous
    np.testing.assert_array_equal(held[1, 2, :4], obs[1, 1, :4])
    np.testing.assert_array_equal(last, np.stack([obs[0, 0], obs[1, 1]]))


def test_commit_levels_are_positive_for_flagged_tokens_only():
    flags = torch.tensor([[False] * K, [False, True, False, False, False], [True] * K])
    assert commit_levels(flags, 400).squeeze(1).tolist() == [0, 400, 400]
    assert commit_levels(flags, 0).squeeze(1).tolist() == [0, 0, 0]


def tiny_model(method: str, unknown_steps: bool = False) -> DiffusionForcingModel:
    mode, forcing = METHODS[method].mode, METHODS[method].forcing
    torch.manual_seed(0)
    return DiffusionForcingModel((6 * K,), cond_dim(K, unknown_steps), ModelConfig(width=16, depth=1),
                                 DiffusionConfig(levels=100, forcing=forcing),
                                 SamplingConfig(steps=3, scheduling="autoregressive", chunk=1),
                                 extra={"imitation": {"mode": mode, "frame_stack": K, "unknown_steps": unknown_steps}}).eval()


@pytest.mark.parametrize("method", list(METHODS))
def test_tiny_untrained_policy_runs_episodes(method):
    policy = ImitationPolicy(tiny_model(method), method, corrupt_level=60 if method == "df" else None, seed=0)
    out = run_episodes(policy, episodes=3, batch=2, seed=5, corruption=Corruption(0.5), limit=12, progress=False)
    assert len(out.outcomes) == 3 and set(out.outcomes) <= {"success", "wrong_goal", "timeout"}
    assert out.cues.tolist() == [1, -1, 1] and (out.steps <= 15).all()
    assert out.recorded[0]["path"].shape[1] == 2
    summary = out.summary()
    assert summary["episodes"] == 3 and summary["ci95"][0] <= summary["success"] <= summary["ci95"][1]
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


# ---- unknown steps inside a token -------------------------------------------------------------

def test_blank_unknown_hides_only_the_observations_of_unknown_steps():
    from dforce.imitation.masking import blank_unknown, observation_columns, with_flags

    tokens = torch.arange(2 * 6 * K, dtype=torch.float32).reshape(2, 1, 6 * K)
    unknown = torch.zeros(2, 1, K, dtype=torch.bool)
    unknown[0, 0, 1] = unknown[1, 0, 4] = True
    out = blank_unknown(tokens, unknown, torch.full((6 * K,), -1.0))
    changed = (out != tokens).nonzero()[:, [0, 2]].tolist()
    assert changed == [[0, c] for c in range(6, 10)] + [[1, c] for c in range(24, 28)]   # obs columns, not actions
    assert observation_columns(K)[1].tolist() == [6, 7, 8, 9]
    cond = torch.ones(2, 1, BASE_COND_DIM + K)
    flagged = with_flags(cond, unknown)
    assert (flagged[..., :BASE_COND_DIM] == 1).all() and torch.equal(flagged[..., BASE_COND_DIM:].bool(), unknown)


def test_unknown_step_batches_are_seeded_blanked_and_flagged(demos):
    from dforce.data.normalizer import Normalizer
    from dforce.imitation.masking import UnknownStepSequences, observation_columns

    seqs = memory_sequences(demos, K, 60, unknown_steps=True)
    assert seqs.cond.shape == (4, 60, BASE_COND_DIM + K) and (seqs.cond[..., BASE_COND_DIM:] == 0).all()
    blank = Normalizer((6 * K,)).fit(seqs.x).mean.flatten()
    data = UnknownStepSequences(seqs.x, seqs.cond, seqs.mask, frame_stack=K, max_rate=0.8, clean_share=0.0,
                                blank=blank, seed=1)
    index = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    x, cond, mask = data.batch(index)
    again, _, _ = data.batch(index)
    assert torch.equal(x, again) and not torch.equal(x, data.batch(index.flip(0))[0])
    unknown = cond[..., BASE_COND_DIM:].bool()                               # (8, 60, K)
    assert 0.05 < unknown.float().mean() < 0.75
    cols = observation_columns(K)
    for j in range(K):
        hidden = x[..., cols[j]][unknown[..., j]]
        np.testing.assert_allclose(hidden, blank[cols[j]].expand_as(hidden))
        np.testing.assert_array_equal(x[..., cols[j]][~unknown[..., j]], seqs.x[index][..., cols[j]][~unknown[..., j]])
    assert torch.equal(x[..., 4::6], seqs.x[index][..., 4::6])             # actions are always known
    assert torch.equal(cond[..., :BASE_COND_DIM], seqs.cond[index][..., :BASE_COND_DIM]) and torch.equal(mask, seqs.mask[index])


@pytest.mark.parametrize("method, unknown_steps", [("df", True), ("teacher_forcing", False), ("memoryless", False)])
def test_flagged_values_never_reach_a_policy_that_hides_them(method, unknown_steps):
    """What the matrix relies on to run a flagged cell once per rate: with the flags told, the corrupted
    values cannot change the actions; not told, they do."""
    obs = np.zeros((2, 5))
    obs[:, 4] = [1, -1]
    seen = np.random.default_rng(0).normal(size=(2, K, 5))
    flags = np.zeros((2, K), bool)
    flags[:, 2:] = True                                                     # the last step too: memoryless sees only it
    other = seen.copy()
    other[flags, :4] += 50.0                                                 # corruption never touches the cue

    def next_actions(observed, told):
        policy = ImitationPolicy(tiny_model(method, unknown_steps), method, seed=3)
        policy.reset(obs)
        act = policy.actions()
        policy.observe(observed, act, told)
        return policy.actions()

    assert ImitationPolicy(tiny_model(method, unknown_steps), method).flag_use == ("blank" if unknown_steps else "hold")
    np.testing.assert_array_equal(next_actions(seen, flags), next_actions(other, flags))
    assert not np.array_equal(next_actions(seen, np.zeros_like(flags)), next_actions(other, np.zeros_like(flags)))


def test_flag_aware_df_commits_clean_tokens_by_default():
    policy = ImitationPolicy(tiny_model("df", unknown_steps=True), "df", seed=0)
    assert policy.corrupt_level == 0 and ImitationPolicy(tiny_model("df"), "df").corrupt_level == 15   # 150 of 1000
    obs = np.zeros((2, 5))
    obs[:, 4] = [1, -1]
    policy.reset(obs)
    flags = np.ones((2, K), bool)
    policy.observe(np.zeros((2, K, 5)), policy.actions(), flags)
    assert policy.committed_levels[-1].squeeze(1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="conditioning width"):
        model = tiny_model("df", unknown_steps=True)
        model.extra["imitation"]["unknown_steps"] = False
        ImitationPolicy(model, "df")
    with pytest.raises(ValueError, match="df only"):
        ImitationPolicy(tiny_model("teacher_forcing"), "teacher_forcing", corrupt_level=10)


def test_unknown_steps_config_needs_memory_mode(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "imitation_memoryless.yaml"
    assert main(["train", str(config), "imitation.unknown_steps=true", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "imitation.mode=memory" in capsys.readouterr().err


# ---- the matrix -------------------------------------------------------------------------------

def test_matrix_plan_shares_flagged_runs_only_where_values_are_hidden():
    from dforce.imitation.matrix import plan

    kinds = [parse_kind("zeros"), parse_kind("gaussian2")]
    hidden = plan(kinds, [0.3, 0.5], flag_hides_values=True)
    assert len(hidden) == 1 + 2 * 2 * 2 and hidden[0][0].p == 0
    run = {(c.label, c.p, f): s for c, f, s in hidden[1:]}
    assert run[("gaussian2", 0.3, True)] == Corruption(0.3, "zeros") and run[("zeros", 0.5, True)] == Corruption(0.5, "zeros")
    assert all(s == c for c, f, s in hidden if not f)                        # unflagged cells run themselves
    assert all(s == c for c, _, s in plan(kinds, [0.3], flag_hides_values=False))


def test_matrix_targets_need_separated_intervals():
    from dforce.imitation.matrix import targets

    def cell(method, rate, flagged, success, ci):
        return {"method": method, "kind": "zeros", "rate": rate, "flagged": flagged, "success": success, "ci95": ci}

    cells = [cell("df", 0.3, True, 0.95, [0.91, 0.97]), cell("df", 0.5, True, 0.70, [0.63, 0.76]),
             cell("teacher_forcing", 0.3, True, 0.5, [0.43, 0.57]), cell("teacher_forcing", 0.5, False, 0.7, [0.64, 0.77]),
             cell("memoryless", 0.1, True, 0.99, [0.9, 1.0])]
    verdict = targets(cells)
    assert [c["met"] for c in verdict["success"]] == [True, False] and verdict["all_success_met"] is False
    assert verdict["success"][1]["short_by"] == pytest.approx(0.05)
    assert [b["separated"] for b in verdict["beats"]] == [True, False]      # rate 0.1 is not compared
    assert verdict["all_separated"] is False


def test_matrix_cli_writes_cells_and_reuses_its_cache(tmp_path, capsys):
    import json

    paths = {m: tiny_model(m, m == "df").save_pretrained(tmp_path / m) for m in METHODS}
    out = tmp_path / "matrix"
    argv = ["eval", "imitation", "--matrix", "--checkpoints", *(f"{m}={p}" for m, p in paths.items()),
            "--episodes", "2", "--limit", "10", "--kinds", "zeros,outlier", "--rates", "0.5", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    record = json.loads((out / "matrix.json").read_text())
    cells = record["metrics"]["cells"]
    assert len(cells) == 3 * (1 + 2 * 2)
    assert {"kind", "rate", "flagged", "method", "success", "ci95", "episodes"} <= set(cells[0])
    shared = [c for c in cells if c["same_run_as"]]
    assert len(shared) == 3 and all(c["kind"] == "outlier" and c["flagged"] for c in shared)
    assert (out / "matrix.png").stat().st_size > 0 and record["seeds"]["episodes"] == 40000
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "matrix-cells").iterdir()}
    assert len(stamp) == 3 * 4
    assert main(argv) == 0                                                   # all cells from the cache
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (out / "matrix-cells").iterdir()}
    assert main([*argv, "--episodes", "3"]) == 0                             # other settings: run again
    assert stamp != {p.name: p.stat().st_mtime_ns for p in (out / "matrix-cells").iterdir()}


@pytest.mark.parametrize("extra, message", [
    (["--rates", "0.3,2"], "--rates must be numbers in (0, 1]"),
    (["--kinds", "snow"], "corruption kind"),
    (["--methods", "df,bc"], "--methods must be a comma list"),
    (["--checkpoints", "bc=x"], "--checkpoints takes METHOD=DIR"),
    (["--method", "df"], "--matrix takes --methods"),
    (["--out", "m.json"], "is a directory"),
    (["--corrupt", "0.3", "--unflagged"], "--corrupt, --unflagged set one cell"),
])
def test_matrix_bad_input_is_one_line_and_exit_2(capsys, extra, message):
    assert main(["eval", "imitation", "--matrix", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_single_eval_writes_under_outputs_by_default(tmp_path, monkeypatch):
    ckpt = tiny_model("memoryless").save_pretrained(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "imitation", "--method", "memoryless", "--checkpoint", str(ckpt), "--episodes", "2",
                 "--limit", "5", "--corrupt", "0.5", "--corrupt-mode", "hold", "--no-plot", "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "outputs" / "imitation").iterdir()] == ["memoryless-hold-p0.5.json"]
    assert not (tmp_path / "results").exists()
