"""The faster training paths: fused EMA, device-side batches and noise, bf16 on CPU, sized presets."""

import copy
import json
from pathlib import Path

import pytest
import torch

from dforce.config import DiffusionConfig, ModelConfig, TrainConfig, load_config
from dforce.data.sequences import Sequences
from dforce.pipeline import DiffusionForcingModel
from dforce.train import train
from dforce.train.ema import EMA
from dforce.train.loop import BatchSource, mixed_precision, step_generator

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("maze2d", "video", "forecast", "imitation")


def _model(width=16):
    return DiffusionForcingModel((3,), 0, ModelConfig(backbone="rnn", width=width, depth=1), DiffusionConfig(levels=50))


def test_fused_ema_equals_a_per_tensor_lerp():
    model = _model()
    ema = EMA(model, decay=0.9)
    reference = copy.deepcopy(ema.model)
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.normalizer.mean.add_(1.0)
        ema.update(model, step)
        d = min(0.9, (1 + step) / (10 + step))
        for r, p in zip(reference.parameters(), model.parameters()):
            r.data = r.data + (1 - d) * (p.data - r.data)
    for (name, a), b in zip(ema.model.state_dict().items(), reference.state_dict().values()):
        if name.startswith("normalizer"):
            assert torch.equal(a, model.state_dict()[name]), name      # buffers are copied, not averaged
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


def test_cpu_step_stream_is_the_host_generator_stream():
    """Levels and noise drawn on the CPU are the same numbers as ever, so CPU runs reproduce."""
    model, x0 = _model(), torch.randn(4, 6, 3)
    seed = (7 * 1_000_003 + 0) * 10_000_019 + 11
    k1, n1 = model.draw_levels_and_noise(x0, None, step_generator(7, 0, 11))
    k2, n2 = model.draw_levels_and_noise(x0, None, torch.Generator().manual_seed(seed))
    assert torch.equal(k1, k2) and torch.equal(n1, n2)


def test_batch_source_on_cpu_gathers_the_dataset_rows():
    data = Sequences(torch.randn(10, 5, 3), torch.randn(10, 5, 2), torch.rand(10, 5) > 0.2)
    index = torch.tensor([3, 1, 7])
    for got, want in zip(BatchSource(data, torch.device("cpu"))(index), data.batch(index)):
        assert torch.equal(got, want)


def test_mixed_precision_runs_matrix_products_in_bf16_on_cpu():
    with mixed_precision(True, torch.device("cpu")):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.bfloat16
    with mixed_precision(False, torch.device("cpu")):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.float32


def test_bf16_on_cpu_trains_like_fp32(tmp_path):
    """Same weights, batches and noise: bf16 autocast ends within a few percent of fp32's loss."""
    t = torch.linspace(0, 6.28, 12)
    x = torch.stack([torch.sin(t + p) for p in torch.rand(256) * 6.28])[..., None].repeat(1, 1, 3)
    losses = {}
    for bf16 in (False, True):
        cfg = TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup=10, log_every=10, checkpoint_every=150,
                          tensorboard=False, bf16=bf16, device="cpu")
        torch.manual_seed(0)
        run = tmp_path / f"bf16-{bf16}"
        train(_model(32), Sequences(x), cfg, run, progress=False)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[bf16] = [row["loss"] for row in rows if "loss" in row]
    assert losses[True][-1] < 0.6 * losses[True][0]          # it learns
    assert abs(sum(losses[True][-5:]) / sum(losses[False][-5:]) - 1) < 0.1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_preset_can_start_from_a_base_preset(tmp_path):
    _write(tmp_path / "base.yaml", "model:\n  width: 64\n  depth: 3\ntrain:\n  steps: 100\n")
    child = _write(tmp_path / "child.yaml", "base: base.yaml\nmodel:\n  width: 32\ntrain:\n  bf16: true\n")
    cfg = load_config(child, ["train.steps=7"])
    assert (cfg.model.width, cfg.model.depth, cfg.train.steps, cfg.train.bf16) == (32, 3, 7, True)


@pytest.mark.parametrize("text, message", [
    ("base: loop.yaml\n", "cycle"),
    ("base: 3\n", "file name of another preset"),
    ("base: missing.yaml\n", "does not exist"),
])
def test_bad_base_presets_are_one_line_errors(tmp_path, text, message):
    preset = _write(tmp_path / "loop.yaml", text)
    with pytest.raises(ValueError, match=message):
        load_config(preset)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_has_a_cpu_and_a_gpu_preset(domain):
    cpu, gpu = (load_config(ROOT / "configs" / f"{domain}_{size}.yaml") for size in ("cpu", "gpu"))
    assert cpu.train.bf16 and cpu.train.device in ("auto", "cpu")
    assert gpu.train.device == "auto" and gpu.train.bf16
    assert gpu.train.batch_size * gpu.train.steps > 4 * cpu.train.batch_size * cpu.train.steps
    assert cpu.data.name == gpu.data.name


@pytest.mark.slow
def test_compiled_training_saves_the_plain_model(tmp_path):
    cfg = TrainConfig(steps=3, batch_size=8, warmup=1, log_every=1, checkpoint_every=3, tensorboard=False,
                      compile=True, device="cpu")
    model = train(_model(), Sequences(torch.randn(16, 6, 3)), cfg, tmp_path / "run", progress=False)
    again = DiffusionForcingModel.from_pretrained(tmp_path / "run" / "model")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
