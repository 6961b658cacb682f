import importlib.util

import pytest

from dforce.cli import main
from helpers import DATA, TINY


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "sample", "schedule", "show-config", "demo"):
        assert command in out


def test_schedule_prints_matrix_and_plots(capsys, tmp_path):
    assert main(["schedule", "pyramid", "--horizon", "3", "--steps", "2", "--plot", str(tmp_path / "s.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:6] == ["2 2 2", "1 2 2", "0 1 2", "0 0 1", "0 0 0"]
    assert (tmp_path / "s.png").stat().st_size > 0


def test_show_config_applies_overrides(capsys):
    assert main(["show-config", "default", "model.width=7", "sampling.scheduling=trapezoid"]) == 0
    out = capsys.readouterr().out
    assert "width: 7" in out and "scheduling: trapezoid" in out


@pytest.mark.parametrize("argv, message", [
    (["show-config", "default", "model.widht=3"], "model.widht"),
    (["show-config", "default", "model.backbone=lstm"], "rnn, transformer, frames"),
    (["show-config", "default", "train.steps=-4"], "train.steps=-4 must be > 0"),
    (["show-config", "no/such.yaml"], "does not exist"),
    (["schedule", "zigzag"], "scheduling must be one of"),
    (["sample", "no/such/model"], "not a dforce model directory"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_yaml_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("model: [1, 2\n")
    assert main(["show-config", str(tmp_path / "c.yaml")]) == 2
    (tmp_path / "d.yaml").write_text("model:\n  depth: 3\n")
    assert main(["show-config", str(tmp_path / "d.yaml")]) == 0
    assert "depth: 3" in capsys.readouterr().out


def test_train_then_sample_in_process(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "default", *TINY, "train.steps=10", "train.eval_every=5", "--out", str(run),
                 "--no-progress"]) == 0
    assert (run / "model" / "model.safetensors").is_file()
    evals = [line for line in (run / "metrics.jsonl").read_text().splitlines() if "eval/" in line]
    assert len(evals) == 2 and '"eval/finite": true' in evals[0]
    assert main(["train", "default", *TINY, "train.steps=10", "--out", str(run), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    out = tmp_path / "samples"
    assert main(["sample", str(run / "model"), "--length", "10", "--batch", "2", "--context", "3",
                 "--scheduling", "autoregressive", "--out", str(out)]) == 0
    assert (out / "samples.safetensors").is_file() and (out / "samples.png").stat().st_size > 0


def test_shipped_presets_load():
    from pathlib import Path

    from dforce.config import load_config

    presets = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert presets, "configs/ should hold presets"
    for preset in presets:
        load_config(preset)


def test_demo_end_to_end_with_few_steps(tmp_path, capsys):
    import json

    out = tmp_path / "demo"
    for skipped in ("planning", "video"):          # outputs of earlier runs of the skipped steps stay
        (out / skipped).mkdir(parents=True)
        (out / skipped / "earlier.txt").write_text("kept")
    exchange = DATA / "timeseries" / "exchange_rate_nips.tar.gz"
    forecasts = exchange.is_file() and importlib.util.find_spec("gluonts") is not None   # else the step is skipped
    extra = ["--exchange-data", str(exchange)] if forecasts else []
    assert main(["demo", "--out", str(out), "--steps", "20", "--no-progress", "--results", str(tmp_path / "r.json"),
                 "--skip", "planning", "video", *extra]) == 0       # slow; tested apart
    printed = capsys.readouterr().out
    assert (out / "planning" / "earlier.txt").read_text() == (out / "video" / "earlier.txt").read_text() == "kept"
    for name in ("schedules.png", "rollout_stabilized.png", "rollout_no_stabilization.png", "loss.png", "index.html"):
        assert (out / name).stat().st_size > 0 and name in printed
    page = (out / "index.html").read_text()
    assert '<img src="schedules.png"' in page and "Planning: Maze2D U-Maze</h2>\n<p><em>skipped" in page
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["metrics"]["rollout"]["stabilized"]["finite"] is True
    assert summary["rollout_length"] == 10 * summary["training_length"]
    assert summary["command"].startswith("dforce demo") and summary["git_commit"]
    assert summary["metrics"]["planning"] is None and summary["metrics"]["video"] is None
    if extra:  # the forecast step with the shipped checkpoint
        assert (out / "forecast" / "fan_window4.png").stat().st_size > 0
        assert '<img src="forecast/fan_window4.png"' in page
        assert 0 < summary["metrics"]["forecast_exchange"]["crps_sum"] < 0.05


@pytest.mark.slow
def test_demo_planning_step_reaches_the_goal_in_one_umaze_episode_with_the_shipped_planner(tmp_path):
    pytest.importorskip("mujoco")
    from dforce.tasks.demo import planning_step

    info, files = planning_step(tmp_path, ["test"])
    assert info["env"] == "maze2d-umaze" and info["reached_goal_fraction"] == 1.0 and info["score_mean"] > 0
    assert {f.suffix for f in files} >= {".json", ".png", ".gif"}
