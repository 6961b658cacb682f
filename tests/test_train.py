import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from dforce import DiffusionForcingModel
from dforce.config import load_config
from dforce.synthetic.train import build_model, training_data
from dforce.train import TrainingDiverged, learning_rate, train
from dforce.train.checkpoint import latest
from helpers import ROOT, TINY, dforce, env


def _tiny(*extra):
    cfg = load_config(None, TINY + list(extra))
    data = training_data(cfg.data)
    return cfg, data, build_model(cfg, data)


def test_pretrained_round_trip_is_bit_exact(tmp_path):
    cfg, data, model = _tiny()
    model.normalizer.fit(data.x)
    torch.nn.init.normal_(next(model.parameters()))
    model.save_pretrained(tmp_path / "m")
    loaded = DiffusionForcingModel.from_pretrained(tmp_path / "m")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.config_dict() == model.config_dict()
    run = (lambda m: m.rollout(6, data.x[:2, :3], generator=torch.Generator().manual_seed(0)))
    assert torch.equal(run(model.eval()), run(loaded))


def test_from_pretrained_rejects_non_model_directory(tmp_path):
    with pytest.raises(ValueError, match="not a dforce model directory"):
        DiffusionForcingModel.from_pretrained(tmp_path)


def test_training_lowers_loss_and_writes_everything(tmp_path):
    cfg, data, model = _tiny("train.steps=60", "train.checkpoint_every=20", "train.lr=3e-3")
    ema = train(model, data, cfg.train, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 60 and sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3])
    assert latest(tmp_path).name == "step-00000060"
    assert len(list((tmp_path / "checkpoints").glob("step-*"))) == cfg.train.keep_checkpoints
    loaded = DiffusionForcingModel.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.normalizer.mean, ema.normalizer.mean)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(model, data, cfg.train, tmp_path, progress=False)


def test_nan_loss_stops_and_leaves_last_checkpoint_untouched(tmp_path, monkeypatch):
    cfg, data, model = _tiny("train.steps=30", "train.checkpoint_every=5")
    calls = {"n": 0}
    real_forward = DiffusionForcingModel.forward

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        loss = real_forward(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] >= 8 else loss

    monkeypatch.setattr(DiffusionForcingModel, "forward", flaky)
    with pytest.raises(TrainingDiverged, match="step 8"):
        train(model, data, cfg.train, tmp_path, progress=False)
    good = latest(tmp_path)
    assert good.name == "step-00000005"
    weights = load_file(str(good / "weights.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (tmp_path / "model").exists()


def test_learning_rate_warmup_then_decay():
    cfg = load_config(None, ["train.steps=100", "train.warmup=10", "train.lr=1.0"]).train
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a training process mid-run, resume it, and compare with a run that never stopped."""
    args = ["train", "default", *TINY, "train.steps=400", "train.checkpoint_every=10", "--no-progress"]
    whole = dforce(*args, "--out", str(tmp_path / "whole"))
    killed = dforce(*args, "--out", str(tmp_path / "killed"))
    deadline = time.time() + 120
    while time.time() < deadline:
        found = latest(tmp_path / "killed")
        if found is not None and int(found.name.split("-")[1]) >= 30:
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    stopped_at = int(latest(tmp_path / "killed").name.split("-")[1])
    assert stopped_at < 400, "the run finished before it could be killed; the test proves nothing"
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    resumed = dforce(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    for name in ("weights.safetensors", "model.safetensors"):
        a = load_file(str(latest(tmp_path / "whole") / name))
        b = load_file(str(latest(tmp_path / "killed") / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "the resumed run repeated or lost metric rows"


def test_ddp_two_processes_keep_replicas_identical_and_lower_loss(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    init = load_file(str(tmp_path / "init0.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], init[k]) for k in a), "weights never changed"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert all(map(math.isfinite, losses)) and sum(losses[-5:]) < sum(losses[:5])
    batches = [json.loads((tmp_path / f"batches{r}.json").read_text()) for r in (0, 1)]
    assert not set(batches[0]) & set(batches[1]), "the two processes saw the same sequences"


def test_model_rollout_accepts_guidance_under_no_grad():
    """rollout() runs without autograd; guidance must still get its gradients."""
    from dforce.diffusion import MonteCarloGuidance

    cfg, data, model = _tiny()
    model.normalizer.fit(data.x)
    model.eval()
    cost = (lambda x0: (x0[:, -1, 0] - 2.0) ** 2)
    run = (lambda g: model.rollout(4, data.x[:4, :3], guidance=g, generator=torch.Generator().manual_seed(0)))
    plain, guided = run(None), run(MonteCarloGuidance(cost, 1.0, samples=2))
    assert cost(model.normalizer.normalize(guided)).mean() < cost(model.normalizer.normalize(plain)).mean()


@pytest.mark.parametrize("preset", ["oscillators_transformer.yaml", "cross_df.yaml", "cross_tf.yaml", "cross_fs.yaml",
                                    "likelihood_df.yaml", "likelihood_tf.yaml"])
def test_presets_train_a_few_steps(tmp_path, preset):
    """Each shipped preset builds, trains and samples (at a tiny size)."""
    cfg = load_config(ROOT / "configs" / preset, TINY + ["train.steps=6", "train.checkpoint_every=3", "model.heads=2"])
    data = training_data(cfg.data)
    model = train(build_model(cfg, data), data, cfg.train, tmp_path, progress=False)
    out = model.rollout(5, data.x[:2, :2], generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 5, 2) and torch.isfinite(out).all()


def test_model_rollout_recompute_path_equals_streaming():
    cfg, data, model = _tiny()
    model.normalizer.fit(data.x)
    model.eval()
    run = (lambda recompute: model.rollout(9, data.x[:2, :3], recompute=recompute,
                                           generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(run(True), run(False), rtol=1e-4, atol=1e-5)
