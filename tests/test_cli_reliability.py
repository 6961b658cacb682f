"""One regression test per failure the adversarial evaluation found in the CLI: each bad input is
one line on stderr (``dforce <command>: ...``) and exit 2, never a traceback or a silent default."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from dforce import cli
from dforce.cli import main
from helpers import TINY, train_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny") / "run")


def broken_copy(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def one_error_line(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err
    assert code == expected, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("dforce")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    return lines[0]


# ---- 1. model files --------------------------------------------------------------------------

def _truncate(p: Path): p.write_bytes(p.read_bytes()[:100])
def _zero(p: Path): p.write_bytes(bytes(p.stat().st_size))
def _random(p: Path): p.write_bytes(torch.randint(0, 256, (p.stat().st_size,), dtype=torch.uint8).numpy().tobytes())
def _empty(p: Path): p.write_bytes(b"")


@pytest.mark.parametrize("corrupt", [_truncate, _zero, _random, _empty], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("command", ["sample", "forecast", "eval"])
def test_corrupt_safetensors_names_the_file(model_dir, tmp_path, capsys, corrupt, command):
    model = broken_copy(model_dir, tmp_path)
    corrupt(model / "model.safetensors")
    argv = {"sample": ["sample", str(model), "--out", str(tmp_path / "o")],
            "forecast": ["forecast", str(model), "--out", str(tmp_path / "o")],
            "eval": ["eval", "likelihood", "--checkpoints", str(model), "--out", str(tmp_path / "o")]}[command]
    line = one_error_line(capsys, main(argv))
    assert "model.safetensors" in line and "internal error" not in line


def test_weights_that_do_not_match_config_json(model_dir, tmp_path, capsys):
    model = broken_copy(model_dir, tmp_path)
    meta = json.loads((model / "config.json").read_text())
    meta["model"]["width"] = 32
    (model / "config.json").write_text(json.dumps(meta))
    line = one_error_line(capsys, main(["sample", str(model), "--out", str(tmp_path / "o")]))
    assert "model.safetensors" in line and "shape" in line


@pytest.mark.parametrize("change, message", [
    (lambda m: [1, 2], "top level must be an object"),
    (lambda m: "text", "top level must be an object"),
    (lambda m: None, "top level must be an object"),
    (lambda m: {k: v for k, v in m.items() if k != "token_shape"}, "missing key 'token_shape'"),
    (lambda m: {k: v for k, v in m.items() if k != "cond_dim"}, "missing key 'cond_dim'"),
    (lambda m: {k: v for k, v in m.items() if k != "model"}, "missing key 'model'"),
    (lambda m: {**m, "format_version": 99}, "format_version 99"),
    (lambda m: {**m, "format_version": 0}, "format_version 0"),
    (lambda m: {**m, "format_version": "two"}, "format_version 'two'"),
    (lambda m: {k: v for k, v in m.items() if k != "format_version"}, "format_version None"),
    (lambda m: {**m, "token_shape": [10**12]}, "parameters"),
    (lambda m: {**m, "model": {**m["model"], "width": 100000}}, "parameters"),
    (lambda m: {**m, "sampling": {**m["sampling"], "slope": float("nan")}}, "sampling.slope=nan"),
    (lambda m: {**m, "extra": {**m["extra"], "data": {**m["extra"]["data"], "colour": 1}}}, "unknown keys ['colour']"),
], ids=["list", "string", "null", "no-token-shape", "no-cond-dim", "no-model", "version-99", "version-0",
        "version-two", "no-version", "huge-token", "huge-width", "nan-slope", "unknown-data-key"])
def test_bad_config_json_names_the_file(model_dir, tmp_path, capsys, change, message):
    model = broken_copy(model_dir, tmp_path)
    meta = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(change(meta)))
    line = one_error_line(capsys, main(["sample", str(model), "--out", str(tmp_path / "o")]))
    assert "config.json" in line and message in line


def test_config_json_that_is_not_json(model_dir, tmp_path, capsys):
    model = broken_copy(model_dir, tmp_path)
    (model / "config.json").write_text("{")
    line = one_error_line(capsys, main(["sample", str(model), "--out", str(tmp_path / "o")]))
    assert "config.json: is not valid JSON" in line


def test_nan_weights_are_refused_at_load(model_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model = broken_copy(model_dir, tmp_path)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k, t in state.items() if t.is_floating_point())
    state[name][...] = math.nan
    save_file(state, str(model / "model.safetensors"))
    line = one_error_line(capsys, main(["sample", str(model), "--out", str(tmp_path / "o")]))
    assert "model.safetensors" in line and name in line and "NaN" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("override", ["model.depth=@x", "model.depth=\t3", "model.depth=*a"])
def test_yaml_syntax_error_in_override_names_it(capsys, override):
    line = one_error_line(capsys, main(["show-config", "default", override]))
    assert repr(override) in line and "not valid YAML" in line


# Every command that trains, samples or evaluates takes --device; a device that cannot run here is refused
# while the command line is parsed, before a model is loaded or a file written.
DEVICE_COMMANDS = {
    "train": ["train", "default"], "sample": ["sample", "x"], "forecast": ["forecast", "x"], "demo": ["demo"],
    "eval planning": ["eval", "planning", "--env", "maze2d-umaze", "--checkpoint", "x"],
    "eval imitation": ["eval", "imitation"], "eval video": ["eval", "video", "--checkpoint", "x", "--method", "df"],
    "eval likelihood": ["eval", "likelihood", "--checkpoints", "x"],
    "eval compositional": ["eval", "compositional", "--checkpoints", "x"],
    "eval forecasting": ["eval", "forecasting", "--dataset", "exchange_rate_nips"],
}
TRAINS = ("train", "demo", "eval forecasting")   # these take a train.device value: auto, cpu or cuda


@pytest.mark.parametrize("device", ["bogus", "cuda:99", "meta", ""] + ([] if torch.cuda.is_available() else ["cuda"]))
@pytest.mark.parametrize("command", list(DEVICE_COMMANDS))
def test_bad_device(capsys, tmp_path, monkeypatch, device, command):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, main([*DEVICE_COMMANDS[command], "--device", device]))
    assert line.startswith(f"dforce {command}: error: argument --device") and repr(device) in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", TRAINS)
def test_training_commands_take_train_device_values_only(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, main([*DEVICE_COMMANDS[command], "--device", "cpu:0"]))
    assert "must be one of auto, cpu, cuda" in line


def test_device_auto_resolves_to_what_is_here():
    from dforce import devices

    assert devices.resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cli._parse(["sample", "x"]).device == devices.resolve("auto")
    assert cli._parse(["train", "default"]).device is None             # the config's train.device decides
    assert cli._parse(["train", "default", "--device", "cpu"]).device == "cpu"


def test_train_device_flag_wins_over_the_override(tmp_path, capsys):
    from dforce.config import load_config

    run = tmp_path / "run"
    assert main(["train", "default", *TINY, "train.steps=1", "train.device=auto", "--device", "cpu",
                 "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "run.json").read_text())["config"]["train"]["device"] == "cpu"
    assert load_config("configs/video_mnist64.yaml", []).train.device == "auto"   # GPU presets pick, not demand


def test_generators_live_on_the_device_and_match_the_cpu_stream():
    from dforce import devices

    g = devices.generator(7, "cpu")
    assert g.device.type == "cpu"
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=torch.Generator().manual_seed(7)))


def test_huge_batch_is_refused_with_the_bound(model_dir, capsys):
    line = one_error_line(capsys, main(["sample", str(model_dir), "--batch", "99999999999999999999"]))
    assert "--batch" in line and "4096" in line


@pytest.mark.parametrize("where", ["parse", "command"])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, where):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    if where == "parse":
        monkeypatch.setattr(cli, "_parser", interrupt)
    else:
        monkeypatch.setitem(cli.COMMANDS, "schedule", interrupt)
    line = one_error_line(capsys, main(["schedule", "pyramid"]), expected=130)
    assert "interrupted" in line


def test_unexpected_error_is_still_one_line(monkeypatch, capsys):
    def crash(args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setitem(cli.COMMANDS, "schedule", crash)
    line = one_error_line(capsys, main(["schedule", "pyramid"]))
    assert "internal error: RuntimeError: boom second line" in line


# ---- 2. config validation ----------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("sampling.slope=nan", "sampling.slope=nan must be finite and >= 0"),
    ("train.lr=inf", "train.lr=inf must be finite and > 0"),
    ("diffusion.snr_gamma=inf", "diffusion.snr_gamma=inf must be finite and > 0"),
    ("data.noise=-inf", "data.noise=-inf must be finite"),
    ("sampling.eta=1.5", "sampling.eta=1.5 must lie in [0, 1]"),
    ("sampling.eta=-0.1", "sampling.eta=-0.1 must lie in [0, 1]"),
    ("sampling.steps=1001", "sampling.steps=1001 exceeds diffusion.levels=1000"),
    (f"train.steps={2**64}", f"train.steps={2**64} is out of range"),
    ("model.width=100000", "parameters; the limit is 1e+09"),
    ("diffusion.levels=10000000", "diffusion.levels=10000000 exceeds the limit of 100000"),
    ("sampling.slope=1e9", "exceeds the limit of 1000"),
    ("data.sequences=100000000", "exceeds the limit of"),
])
def test_config_check_refuses(capsys, override, message):
    line = one_error_line(capsys, main(["show-config", "default", override]))
    assert message in line


def test_eta_one_is_allowed(capsys):
    assert main(["show-config", "default", "sampling.eta=1"]) == 0


def test_parameter_estimate_is_within_2x_of_the_real_count():
    from dforce.config import ModelConfig, parameter_estimate
    from dforce.pipeline import build_backbone

    for backbone, shape in [("rnn", (2,)), ("transformer", (6,)), ("frames", (1, 32, 32))]:
        for width, depth in [(16, 1), (64, 3)]:
            cfg = ModelConfig(backbone=backbone, width=width, depth=depth)
            with torch.device("meta"):
                real = sum(p.numel() for p in build_backbone(cfg, shape, 3, 100).parameters())
            assert 0.5 < parameter_estimate(cfg, shape, 3) / real < 2, (backbone, width, depth)


# ---- 3. numeric flags --------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--length", "0"], "--length/--frames: must be an integer in [1,"),
    (["--steps", "0"], "--steps: must be an integer in [1,"),
    (["--scheduling", ""], "--scheduling: invalid choice: ''"),
    (["--slope", "inf"], "--slope: must be a finite number in [0, 1000]"),
    (["--slope", "nan"], "--slope: must be a finite number in [0, 1000]"),
    (["--slope", "1e9"], "--slope: must be a finite number in [0, 1000]"),
    (["--batch", "0"], "--batch: must be an integer in [1, 4096]"),
    (["--steps", "100000"], "steps=100000 exceeds the model's diffusion levels (100)"),
    (["--context", "abc"], "--context: must be an integer"),
])
def test_sample_flags(model_dir, tmp_path, capsys, flags, message):
    line = one_error_line(capsys, main(["sample", str(model_dir), "--out", str(tmp_path / "o"), *flags]))
    assert message in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["forecast", "exchange", "--samples", "0"], "--samples: must be an integer in [1,"),
    (["demo", "--steps", "0"], "--steps: must be an integer in [1,"),
    (["schedule", "pyramid", "--horizon", "0"], "--horizon: must be an integer"),
    (["schedule", "pyramid", "--slope", "nan"], "--slope: must be a finite number"),
    (["eval", "compositional", "--checkpoints", "x", "--end-tol", "nan"], "--end-tol: must be a finite number"),
    (["eval", "video", "--checkpoint", "x", "--method", "df", "--window", "0"], "--window: must be an integer"),
])
def test_other_numeric_flags(capsys, argv, message):
    line = one_error_line(capsys, main(argv))
    assert message in line


def test_explicit_zero_steps_is_not_the_default(model_dir):
    from dforce.pipeline import DiffusionForcingModel

    model = DiffusionForcingModel.from_pretrained(model_dir)
    with pytest.raises(ValueError):
        model.scheduling_matrix(steps=0)
    with pytest.raises(ValueError, match="scheduling must be one of"):
        model.scheduling_matrix(name="")


# ---- 4. argument order -------------------------------------------------------------------------

def test_overrides_after_a_flag_are_accepted(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "default", "--no-progress", *TINY[:6], "--out", str(run), *TINY[6:], "train.steps=3"]) == 0
    assert json.loads((run / "model" / "config.json").read_text())["model"]["width"] == 16
    assert main(["show-config", "default", "model.depth=3"]) == 0


def test_unknown_argument_after_overrides_is_one_line(capsys):
    line = one_error_line(capsys, main(["show-config", "default", "model.width=7", "--bogus"]))
    assert "unrecognized arguments: --bogus" in line


def test_zoo_name_of_a_video_model_takes_the_video_path():
    from dforce.zoo import entries

    zoo = entries()
    if "video-mnist32" not in zoo or not zoo["video-mnist32"].directory.is_dir():
        pytest.skip("video-mnist32 is not shipped here")
    assert cli._is_video_checkpoint(Path("video-mnist32"))
    assert cli._is_video_checkpoint(zoo["video-mnist32"].directory)
    assert not cli._is_video_checkpoint(Path("no/such/model"))


# ---- 5. evals write under outputs/ unless --record ---------------------------------------------

@pytest.mark.parametrize("argv, out, record", [
    (["eval", "planning", "--env", "maze2d-umaze", "--checkpoint", "x"], "outputs/planning", "results/planning"),
    (["eval", "video", "--checkpoint", "x", "--method", "df"], "outputs/video", "results/video"),
    (["eval", "likelihood", "--checkpoints", "x"], "outputs/likelihood", "results/likelihood"),
    (["eval", "compositional", "--checkpoints", "x"], "outputs/compositional", "results/compositional"),
    (["data", "maze2d", "--check"], "outputs/maze2d_data", "results/maze2d_data"),
])
def test_evals_default_to_outputs_and_record_only_when_asked(argv, out, record):
    from dforce.results import destination

    assert destination(cli._parse(argv)) == Path(out)
    assert destination(cli._parse([*argv, "--record"])) == Path(record)


def test_no_eval_defaults_to_the_shipped_results():
    """Every --out default of every eval/data subcommand lies outside results/."""
    parser = cli._parser()
    for action in parser._subparsers._group_actions[0].choices["eval"]._subparsers._group_actions[0].choices.values():
        for a in action._actions:
            if "--out" in a.option_strings and a.default is not None:
                assert not str(a.default).startswith("results"), (action.prog, a.default)


def test_resume_on_another_device_needs_no_force(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "default", *TINY, "train.checkpoint_every=2", "--out", str(run), "--no-progress"]
    assert main([*base, "train.steps=2", "--device", "cpu"]) == 0
    assert main([*base, "train.steps=4", "--resume", "--device", "auto"]) == 2     # steps changed: refused
    assert "train.steps" in capsys.readouterr().err
    assert main([*base, "train.steps=2", "--resume", "--device", "auto"]) == 0     # only the device: resumes
