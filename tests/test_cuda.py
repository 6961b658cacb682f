"""The GPU path: training steps, streaming rollouts, guidance and every eval command on CUDA, tiny shapes.

Models run under bf16 autocast where they train or sample; the comparisons that must be exact
(streaming == full forward) run in fp32 with TF32 off, plus a loose check under bf16. Marked
``cuda`` and skipped without CUDA. ``DFORCE_TEST_DEVICE=cpu`` runs the same bodies on the CPU
(bf16 autocast there too), which is how they are checked on a machine without a GPU;
``scripts/gpu_check.sh`` runs them on one. Data comes from nowhere outside: Moving MNIST
renders from a stand-in digit file, forecasting reads a generated CSV, planning and
imitation use untrained models (they need MuJoCo, and are skipped without it).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from dforce import devices
from dforce.cli import main
from dforce.config import DiffusionConfig, ModelConfig, SamplingConfig, load_config
from dforce.diffusion import CostGuidance, HistoryGuidance, MonteCarloGuidance, NoiseSchedule, pyramid, sample
from dforce.models import CausalTransformer, FrameDenoiser, GRUDenoiser
from dforce.pipeline import DiffusionForcingModel
from helpers import TINY, NoRepeat

DEVICE = torch.device(os.environ.get("DFORCE_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                       reason="no CUDA here (DFORCE_TEST_DEVICE=cpu runs these tests on the CPU)"),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
]
DEV = ["--device", DEVICE.type]


def bf16():
    """bf16 autocast on the test device."""
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16)


@contextmanager
def no_tf32():
    """fp32 matmuls and convolutions in full precision: TF32 would make the fp32 comparisons approximate."""
    if DEVICE.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Caches (rendered videos, encoders, maze datasets) go to a temporary directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    from dforce.data.moving_mnist import write_stand_in

    directory = tmp_path_factory.mktemp("mnist")
    write_stand_in(directory)
    return directory


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def on_device(model: torch.nn.Module) -> bool:
    return all(p.device.type == DEVICE.type for p in model.parameters())


# ---- training ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["rnn", "transformer"])
def test_vector_training_steps_and_periodic_rollouts(backbone, tmp_path):
    from dforce.synthetic.train import train_run

    cfg = load_config(None, [*TINY, f"model.backbone={backbone}", "model.heads=2", "train.steps=4",
                             "train.eval_every=2", "train.bf16=true", f"train.device={DEVICE.type}"])
    model = train_run(cfg, tmp_path / "run", progress=False)
    assert on_device(model)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert [r["step"] for r in rows if "eval/finite" in r] == [2, 4]           # rolled out on the device
    assert all(r["eval/finite"] for r in rows if "eval/finite" in r)


@pytest.fixture(scope="module")
def video_model(tmp_path_factory, mnist) -> Path:
    """A tiny frame model trained on stand-in Moving MNIST with bf16 and a periodic rollout on the device."""
    from dforce.tasks.video import train_video

    root = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        cfg = load_config("configs/video_mnist32.yaml", [
            f"video.mnist_dir={mnist}", "model.width=8", "diffusion.levels=100", "data.sequences=8", "data.length=4",
            "train.batch_size=4", "train.steps=2", "train.warmup=1", "train.eval_every=2", "train.bf16=true",
            "train.tensorboard=false", f"train.device={DEVICE.type}", "sampling.steps=2", "sampling.stabilization=5"])
        model = train_video(cfg, root / "run", progress=False)
    assert on_device(model)
    rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/mse_first_window" in r for r in rows)
    return root / "run" / "model"


def test_frame_training_steps_and_periodic_rollout(video_model):
    assert (video_model / "model.safetensors").is_file()


def test_cli_train_maps_device_to_train_device(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "default", *TINY, "train.steps=2", "train.bf16=true", *DEV, "--out", str(run),
                 "--no-progress"]) == 0
    assert json.loads((run / "run.json").read_text())["config"]["train"]["device"] == DEVICE.type


# ---- streaming == full forward -------------------------------------------------------------------

BACKBONES = {
    "gru": lambda: GRUDenoiser(4, cond_dim=3, width=16, depth=2, levels=10),
    "transformer": lambda: CausalTransformer(4, cond_dim=3, width=16, depth=2, heads=2, window=None, levels=10),
    "transformer_w3": lambda: CausalTransformer(4, cond_dim=3, width=16, depth=2, heads=2, window=3, levels=10),
    "frames": lambda: FrameDenoiser(2, 8, cond_dim=3, width=8, levels=10),
}


def _inputs(name: str, t: int = 8):
    g = torch.Generator().manual_seed(1)
    shape = (2, 8, 8) if name == "frames" else (4,)
    x = torch.randn(2, t, *shape, generator=g)
    k = torch.randint(0, 11, (2, t), generator=g)
    c = torch.randn(2, t, 3, generator=g)
    return x.to(DEVICE), k.to(DEVICE), c.to(DEVICE)


def _streamed(net, x, k, c, bounds):
    state, out = net.init_state(x.shape[0]), []
    for lo, hi in bounds:
        out.append(net.forward_chunk(x[:, lo:hi], k[:, lo:hi], c[:, lo:hi], state))
        state = net.append(x[:, lo:hi], k[:, lo:hi], c[:, lo:hi], state)
    return torch.cat(out, 1)


@pytest.mark.parametrize("name", list(BACKBONES))
@torch.no_grad()
def test_streaming_equals_forward_on_device(name):
    torch.manual_seed(0)
    net = BACKBONES[name]().to(DEVICE).eval()
    x, k, c = _inputs(name, t=10)                     # longer than transformer_w3's window: its cache is trimmed
    bounds = [(0, 3), (3, 4), (4, 7), (7, 10)]
    with no_tf32():
        full = net(x, k, c)
        torch.testing.assert_close(_streamed(net, x, k, c, bounds), full, atol=1e-4, rtol=1e-4)
    with bf16():
        full16, streamed16 = net(x, k, c), _streamed(net, x, k, c, bounds)
    assert torch.isfinite(streamed16).all() and relative_error(streamed16, full16) < 0.05
    assert relative_error(full16, full) < 0.05       # bf16 stays near fp32


def tiny_model(backbone: str = "rnn", shape: tuple[int, ...] = (3,), cond_dim: int = 0, **sampling) -> DiffusionForcingModel:
    torch.manual_seed(0)
    model = DiffusionForcingModel(shape, cond_dim, ModelConfig(backbone=backbone, width=16, depth=1, heads=2),
                                  DiffusionConfig(levels=50),
                                  SamplingConfig(steps=4, chunk=3, stabilization=3, **sampling))
    return model.to(DEVICE).eval()


@pytest.mark.parametrize("backbone, shape", [("rnn", (3,)), ("transformer", (4,)), ("frames", (1, 8, 8))])
@pytest.mark.parametrize("step", ["ddim", "ddpm"])
def test_streaming_rollout_equals_recompute_rollout_on_device(backbone, shape, step):
    model = tiny_model(backbone, shape, step=step)
    context = torch.rand(2, 2, *shape)                                      # on the CPU: rollout moves it

    def run(recompute: bool) -> torch.Tensor:
        return model.rollout(7, context, recompute=recompute, generator=devices.generator(0, DEVICE))
    with no_tf32():
        fast, slow = run(False), run(True)
    assert fast.device.type == DEVICE.type and fast.shape == (2, 7, *shape)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    with bf16():
        fast16 = run(False)
    assert torch.isfinite(fast16).all() and fast16.shape == fast.shape
    torch.testing.assert_close(run(False), fast)                       # same seed on the device, same samples


def test_a_cpu_generator_drives_a_model_on_the_device():
    model = tiny_model(step="ddpm")
    out = model.rollout(5, torch.zeros(2, 1, 3), generator=torch.Generator().manual_seed(0))
    again = model.rollout(5, torch.zeros(2, 1, 3), generator=torch.Generator().manual_seed(0))
    assert out.device.type == DEVICE.type and torch.equal(out, again)


# ---- guidance ------------------------------------------------------------------------------------

def _goal_cost(x0_hat: torch.Tensor) -> torch.Tensor:
    """Squared distance of the last token's first feature to 3, (B,)."""
    return (x0_hat[:, -1, 0].float() - 3.0) ** 2


@pytest.mark.parametrize("guidance", [CostGuidance(_goal_cost, 2.0), MonteCarloGuidance(_goal_cost, 2.0, 4),
                                      MonteCarloGuidance(_goal_cost, 2.0, 4, weighting="variance")])
def test_guidance_lowers_the_cost_under_bf16(guidance):
    torch.manual_seed(0)
    net, schedule = GRUDenoiser(3, width=16, depth=1, levels=100).to(DEVICE).eval(), NoiseSchedule.make(100)
    context = torch.randn(4, 2, 3, device=DEVICE)

    def run(g):
        return sample(net, schedule, pyramid(6, 8, 1), context=context, guidance=g,
                      generator=devices.generator(0, DEVICE))
    with bf16():
        plain, guided = run(None), run(guidance)
    assert guided.device.type == DEVICE.type and torch.isfinite(guided).all()
    assert _goal_cost(guided).mean() < 0.5 * _goal_cost(plain).mean()


def test_batched_monte_carlo_guidance_equals_sequential_on_device():
    torch.manual_seed(0)
    net, schedule = GRUDenoiser(3, width=16, depth=1, levels=100).to(DEVICE).eval(), NoiseSchedule.make(100)
    context = torch.randn(3, 2, 3, device=DEVICE)
    guidance = MonteCarloGuidance(_goal_cost, 2.0, 4)
    with no_tf32():
        batched, sequential = (sample(m, schedule, pyramid(6, 6, 1), context=context, guidance=guidance,
                                      generator=devices.generator(0, DEVICE)) for m in (net, NoRepeat(net)))
    torch.testing.assert_close(batched, sequential, atol=1e-4, rtol=1e-4)


def test_history_guidance_and_noised_context_on_device():
    model = tiny_model(step="ddpm", noise_context=True)
    with bf16():
        out = model.rollout(7, torch.randn(2, 3, 3), history=HistoryGuidance(2.0, level=20),
                            generator=devices.generator(0, DEVICE))
    assert out.device.type == DEVICE.type and torch.isfinite(out).all()


# ---- every eval command with --device ------------------------------------------------------------

@pytest.fixture(scope="module")
def vector_model(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vector") / "run"
    assert main(["train", "default", *TINY, "train.steps=3", *DEV, "--out", str(run), "--no-progress"]) == 0
    return run / "model"


def test_sample_command(vector_model, tmp_path):
    with bf16():
        assert main(["sample", str(vector_model), "--length", "6", "--batch", "2", "--out", str(tmp_path), *DEV]) == 0
    assert (tmp_path / "samples.safetensors").is_file() and (tmp_path / "samples.png").is_file()


def test_sample_and_eval_video(video_model, tmp_path):
    with bf16():
        assert main(["sample", str(video_model), "--frames", "4", "--context", "2", "--batch", "2",
                     "--out", str(tmp_path / "s"), *DEV]) == 0
        assert main(["eval", "video", "--checkpoint", str(video_model), "--method", "df", "--horizon-multiples", "1,2",
                     "--rollouts", "2", "--batch", "2", "--calibration", "2", "--speed-frames", "4",
                     "--encoder", str(tmp_path / "enc"), "--encoder-steps", "2", "--out", str(tmp_path / "r"),
                     "--no-progress", *DEV]) == 0
    assert (tmp_path / "s" / "samples.gif").is_file()
    record = json.loads((tmp_path / "r" / "moving_mnist32-df.json").read_text())
    assert record["metrics"]["speed"]["streaming_frames_per_s"] > 0 and len(record["metrics"]["per_frame"]["mse"]) == 8


def test_eval_likelihood(tmp_path):
    run = tmp_path / "lg"
    assert main(["train", "default", *TINY, "data.name=linear_gaussian", "diffusion.beta_schedule=log_snr",
                 "train.steps=3", *DEV, "--out", str(run), "--no-progress"]) == 0
    with bf16():
        assert main(["eval", "likelihood", "--checkpoints", str(run / "model"), "--sequences", "4", "--draws", "2",
                     "--lengths", "1,8", "--out", str(tmp_path / "out"), *DEV]) == 0
    metrics = json.loads((tmp_path / "out" / "linear_gaussian.json").read_text())["metrics"]
    assert np.isfinite(metrics["models"]["lg"]["by_length"][0]["elbo"])


def test_eval_compositional(tmp_path):
    run = tmp_path / "cross"
    assert main(["train", "configs/cross_df.yaml", *TINY, "data.length=9", "train.steps=3", *DEV,
                 "--out", str(run), "--no-progress"]) == 0
    with bf16():
        for conditioning in ("commit", "replacement"):
            assert main(["eval", "compositional", "--checkpoints", f"df={run / 'model'}", "--samples", "4",
                         "--context", "1", "--conditioning", conditioning, "--no-plot", "--out", str(tmp_path / "out"),
                         *DEV]) == 0
    assert json.loads((tmp_path / "out" / "cross-df-context1.json").read_text())["metrics"]["samples"] == 4


@pytest.fixture
def series_csv(tmp_path) -> Path:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("gluonts")
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(160, 3)).cumsum(0) + 10
    frame = pd.DataFrame(steps, columns=["a", "b", "c"])
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=160, freq="D"))
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data:\n  name: timeseries\nforecast:\n  dataset: {path}\n")
    return config


FORECAST = ["forecast.prediction_length=5", "forecast.context_length=5", "forecast.test_windows=2",
            "forecast.val_windows=2", "forecast.max_lag=0", "forecast.level_feature=false", "forecast.samples=3",
            "forecast.val_samples=2", "model.width=16", "model.depth=1", "diffusion.levels=20",
            "sampling.scheduling=autoregressive", "sampling.chunk=1", "sampling.steps=2", "sampling.stabilization=2",
            "train.steps=4", "train.eval_every=2", "train.checkpoint_every=2", "train.batch_size=8",
            "train.tensorboard=false", "train.bf16=true"]


def test_forecast_and_eval_forecasting(series_csv, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(series_csv), *FORECAST, *DEV, "--out", str(run), "--no-progress"]) == 0   # validates on the device
    with bf16():
        assert main(["forecast", str(run / "best"), "--samples", "3", "--out", str(tmp_path / "f"), *DEV]) == 0
        assert main(["eval", "forecasting", "--dataset", "tiny", "--config", str(series_csv), "--methods", "df,tf",
                     "--seeds", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "e"), "--no-progress",
                     *[a for o in FORECAST for a in ("--set", o)], *DEV]) == 0
    assert np.load(tmp_path / "f" / "samples.npz")["samples"].shape == (2, 3, 5, 3)
    assert json.loads((tmp_path / "e" / "tiny-df.json").read_text())["metrics"]["crps_sum"]["mean"] > 0


def test_eval_planning(tmp_path):
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium")
    K, H = 2, 4
    torch.manual_seed(0)
    model = DiffusionForcingModel((6 * K,), 5, ModelConfig(width=16, depth=1), DiffusionConfig(levels=20),
                                  SamplingConfig(steps=3, chunk=H, scheduling="pyramid"),
                                  extra={"data": {"length": H}, "planning": {
                                      "maze": "umaze", "frame_stack": K, "guidance_scale": 0.5, "mcg_samples": 2,
                                      "replan_every": 2}})
    model.save_pretrained(tmp_path / "planner")
    with bf16():
        for method in ("df", "diffuser_pd"):
            assert main(["eval", "planning", "--env", "maze2d-umaze", "--checkpoint", str(tmp_path / "planner"),
                         "--method", method, "--episodes", "2", "--batch", "2", "--max-steps", "4", "--no-pictures",
                         "--no-progress", "--out", str(tmp_path / "out"), *DEV]) == 0
    assert json.loads((tmp_path / "out" / "maze2d-umaze-df.json").read_text())["metrics"]["episodes"] == 2


def test_eval_imitation(tmp_path):
    pytest.importorskip("mujoco")
    from dforce.imitation.policy import METHODS
    from dforce.imitation.tokens import cond_dim

    K = 5
    for method in ("df", "memoryless"):
        torch.manual_seed(0)
        mode, forcing = METHODS[method].mode, METHODS[method].forcing
        DiffusionForcingModel((6 * K,), cond_dim(K, False), ModelConfig(width=16, depth=1),
                              DiffusionConfig(levels=100, forcing=forcing),
                              SamplingConfig(steps=3, scheduling="autoregressive", chunk=1),
                              extra={"imitation": {"mode": mode, "frame_stack": K, "unknown_steps": False}},
                              ).save_pretrained(tmp_path / method)
        with bf16():
            assert main(["eval", "imitation", "--method", method, "--checkpoint", str(tmp_path / method),
                         "--episodes", "2", "--limit", "10", "--corrupt", "0.5", "--no-plot", "--no-progress",
                         "--out", str(tmp_path / f"{method}.json"), *DEV]) == 0
    assert json.loads((tmp_path / "df.json").read_text())["metrics"]["episodes"] == 2


def test_demo_trains_and_samples_on_device(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "3", "--skip", "forecast", "planning", "video",
                 "--no-progress", *DEV]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["metrics"]["rollout"]["stabilized"]["finite"] is not None
