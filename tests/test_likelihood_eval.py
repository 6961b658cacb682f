"""`dforce eval likelihood` end to end on tiny models trained for a few steps."""

import json

import pytest
import torch
from helpers import TINY

from dforce.cli import main
from dforce.synthetic.linear_gaussian import LinearGaussian, linear_gaussian

LENGTH = 8  # TINY's data.length


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny linear-Gaussian models (Diffusion Forcing and teacher forcing), a few steps each."""
    root = tmp_path_factory.mktemp("likelihood")
    runs = {}
    for name, forcing in [("df", "independent"), ("tf", "teacher_forcing")]:
        run = root / name
        assert main(["train", "default", *TINY, "data.name=linear_gaussian", "diffusion.beta_schedule=log_snr",
                     f"diffusion.forcing={forcing}", "train.steps=5", "--out", str(run), "--no-progress"]) == 0
        runs[name] = run / "model"
    return root, runs


def test_eval_likelihood_writes_json_and_plot(tiny_runs, capsys):
    root, runs = tiny_runs
    out = root / "lik" / "linear_gaussian.json"
    argv = ["eval", "likelihood", "--checkpoints", f"df={runs['df']}", str(runs["tf"].parent), "--sequences", "6",
            "--lengths", "1,3,8", "--draws", "2", "--out", str(out.parent)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert out.with_suffix(".png").is_file() and record["plot"] == str(out.with_suffix(".png"))
    for key in ("command", "git_commit", "hardware", "wall_time_s", "seeds", "settings", "models"):
        assert key in record
    assert record["command"].startswith("dforce eval likelihood")
    metrics = record["metrics"]
    assert metrics["lengths"] == [1, 3, 8] and set(metrics["models"]) == {"df", "tf"}
    assert record["models"]["tf"]["forcing"] == "teacher_forcing" and record["models"]["df"]["train_steps"] == 5

    # the exact entries are the process's own per-token conditionals, summed, per dimension
    held = record["settings"]["held_out"]
    assert held["seed"] != record["seeds"]["training_data"]
    x = linear_gaussian(6, LENGTH, held["seed"])
    exact = LinearGaussian.default().exact_log_likelihood(x)
    want = [exact[:, :L].sum(1).mean().item() / (2 * L) for L in (1, 3, 8)]
    assert metrics["exact_by_length"] == pytest.approx(want, rel=1e-9)
    assert metrics["exact_per_token"] == pytest.approx((exact.mean(0) / 2).tolist(), rel=1e-9)
    for model in metrics["models"].values():
        assert [r["length"] for r in model["by_length"]] == [1, 3, 8] and len(model["per_token"]) == LENGTH
        for row in model["by_length"]:
            assert set(row) >= {"elbo", "elbo_se", "exact", "gap", "gap_se"}
            assert row["gap"] == pytest.approx(row["exact"] - row["elbo"], abs=1e-9)
            assert all(map(torch.isfinite, map(torch.tensor, (row["elbo"], row["gap_se"]))))
        assert [r["exact"] for r in model["by_length"]] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("extra, message", [
    (["--lengths", "0,2"], "out of range"),
    (["--lengths", "9"], "out of range"),
    (["--lengths", "a"], "comma list"),
    (["--draws", "0"], "--draws"),
    (["--sequences", "1"], "--sequences"),
])
def test_eval_likelihood_bad_input_exits_2(tiny_runs, tmp_path, capsys, extra, message):
    _, runs = tiny_runs
    argv = ["eval", "likelihood", "--checkpoints", str(runs["df"]), "--out", str(tmp_path / "r.json"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_likelihood_missing_checkpoint_exits_2(tmp_path, capsys):
    argv = ["eval", "likelihood", "--checkpoints", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    assert "not found" in capsys.readouterr().err


def test_eval_likelihood_rejects_other_datasets(tmp_path, capsys):
    run = tmp_path / "osc"
    assert main(["train", "default", *TINY, "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    argv = ["eval", "likelihood", "--checkpoints", str(run / "model"), "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    assert "linear_gaussian" in capsys.readouterr().err
