"""Video: Moving MNIST and Atari generators, rollouts and GIFs, metrics against independent references, CLI."""

import gzip
import json
import math

import numpy as np
import pytest
import torch

from dforce.cli import main
from dforce.config import DataConfig, DiffusionConfig, ModelConfig, SamplingConfig, VideoConfig
from dforce.data import moving_mnist as mm
from dforce.pipeline import DiffusionForcingModel
from dforce.tasks import video_metrics as vm
from dforce.tasks.video import VideoRollout, held_out, tile_frames, write_gif
from helpers import DATA

MNIST = DATA / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"no MNIST in {MNIST}")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Caches (rendered videos, encoders, recordings) go to a temporary directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# ---- data ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_plain_and_gzipped(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">i4").tobytes() + images.tobytes()
    path = tmp_path / ("x-idx3-ubyte.gz" if compress else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(mm.read_idx(path), images)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="idx"):
        mm.read_idx(tmp_path / "bad")


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_write_idx_round_trips_and_the_stand_in_renders(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(mm.read_idx(mm.write_idx(tmp_path / name, images)), images)
    stand_in = mm.read_idx(mm.write_stand_in(tmp_path / "mnist", n=10_000))
    assert stand_in.shape == (10_000, 28, 28) and stand_in.max() == 255 and 0 < stand_in.mean() < 128
    video = mm.MovingMNIST(2, 3, 32, 0, "test", tmp_path / "mnist").array()
    assert video.shape == (2, 3, 1, 32, 32) and video.max() > 0.5


def test_bounce_stays_inside_and_reflects():
    start, velocity = np.array([0.0, 5.0, 9.0]), np.array([3.3, -1.7, 2.0])
    p = mm.bounce(start, velocity, 200, 10)                                          # (3, 200)
    assert p.min() >= 0 and p.max() <= 10
    assert np.abs(np.diff(p, axis=1)).max() <= 4                                      # never jumps
    assert (np.diff(p[0]) < 0).any() and (np.diff(p[0]) > 0).any()                   # came back


@needs_mnist
@pytest.mark.parametrize("size", [32, 64])
def test_moving_mnist_is_seeded_and_digits_stay_inside(size):
    a = mm.MovingMNIST(6, 20, size, seed=3, split="test", mnist_dir=MNIST)
    videos = a.array()
    assert videos.shape == (6, 20, 1, size, size) and videos.dtype == np.float32
    assert videos.min() >= 0 and videos.max() <= 1 and videos.max() > 0.5
    np.testing.assert_array_equal(videos, mm.MovingMNIST(6, 20, size, 3, "test", MNIST).array())
    np.testing.assert_array_equal(a[4].numpy(), videos[4])
    assert not np.array_equal(videos, mm.MovingMNIST(6, 20, size, 4, "test", MNIST).array())
    d = mm.digit_size_for(size)
    assert a.positions.min() >= 0 and a.positions.max() <= size - d
    # one digit: every frame holds the whole digit, so its total ink never changes
    one = mm.MovingMNIST(4, 30, size, seed=0, split="train", mnist_dir=MNIST, digits=1)
    ink = one.array().sum(axis=(2, 3, 4))                                             # (4, 30)
    np.testing.assert_allclose(ink, ink[:, :1].repeat(30, 1), rtol=1e-5)


@needs_mnist
def test_splits_use_disjoint_digits_and_cache_round_trips(tmp_path):
    assert mm.load_digits(MNIST, "train", 16).shape == (8000, 16, 16)
    assert mm.load_digits(MNIST, "test", 28).shape == (2000, 28, 28)
    x = mm.load_or_generate(5, 8, 32, seed=1, mnist_dir=MNIST, data_dir=tmp_path)
    assert mm.cache_path(5, 8, 32, 1, "train", tmp_path).is_file()
    np.testing.assert_array_equal(x, mm.load_or_generate(5, 8, 32, seed=1, mnist_dir=MNIST, data_dir=tmp_path))
    with pytest.raises(FileNotFoundError, match="no MNIST images"):
        mm.find_images(tmp_path / "empty")


def test_atari_recording_is_seeded_and_clips_carry_actions():
    pytest.importorskip("ale_py")
    from dforce.data.atari import clips, record, split_episodes

    a, b = record("breakout", 300, 32, seed=5), record("breakout", 300, 32, seed=5)
    np.testing.assert_array_equal(a["frames"], b["frames"])
    np.testing.assert_array_equal(a["actions"], b["actions"])
    assert a["frames"].shape == (300, 32, 32) and a["frames"].dtype == np.uint8
    assert 0 <= a["actions"].min() and a["actions"].max() < int(a["n_actions"])
    x, cond = clips(a, 8, "train")
    assert x.shape[1:] == (8, 1, 32, 32) and cond.shape == (len(x), 8, int(a["n_actions"]))
    assert torch.all(cond.sum(-1) == 1) and 0 <= x.min() and x.max() <= 1
    assert not (split_episodes(a["episode"], "train") & split_episodes(a["episode"], "test")).any()


# ---- rollouts -----------------------------------------------------------------------------------

def tiny_video_model(extra=None, cond_dim=0):
    torch.manual_seed(0)
    return DiffusionForcingModel((1, 32, 32), cond_dim, ModelConfig(backbone="frames", width=8),
                                 DiffusionConfig(levels=100), SamplingConfig(steps=3, chunk=4, stabilization=5),
                                 extra=extra)


def test_tiny_rollout_streams_like_recompute_and_writes_gif(tmp_path):
    model = tiny_video_model().eval()
    context = torch.rand(2, 3, 1, 32, 32)
    roll = VideoRollout(model)
    fast = roll(context, 10, generator=torch.Generator().manual_seed(0))
    slow = roll(context, 10, generator=torch.Generator().manual_seed(0), recompute=True)
    assert fast.shape == (2, 10, 1, 32, 32) and 0 <= fast.min() and fast.max() <= 1
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    wide = roll(context, 10, generator=torch.Generator().manual_seed(0), recompute=True, recompute_window=13)
    short = roll(context, 10, generator=torch.Generator().manual_seed(0), recompute=True, recompute_window=2)
    torch.testing.assert_close(wide, fast, atol=1e-4, rtol=1e-4)       # a window holding everything changes nothing
    assert (short - fast).abs().max() > 1e-3                           # a short one forgets (ConvGRU memory cut)
    frames = tile_frames([torch.cat([context, fast], 1), context], scale=2)
    assert frames.shape == (13, 2 * (2 * 33 - 1), 2 * (2 * 33 - 1)) and frames.dtype == np.uint8
    import imageio

    path = write_gif(tmp_path / "roll.gif", frames)
    assert len(imageio.mimread(path)) == 13


@needs_mnist
def test_sample_command_writes_gif_for_a_video_checkpoint(tmp_path, capsys):
    extra = {"data": {"name": "moving_mnist", "length": 8}, "video": {"size": 32, "mnist_dir": str(MNIST)}}
    tiny_video_model(extra).save_pretrained(tmp_path / "model")
    gif = tmp_path / "out.gif"
    assert main(["sample", str(tmp_path / "model"), "--frames", "10", "--context", "2", "--batch", "2",
                 "--gif", str(gif), "--out", str(tmp_path / "s")]) == 0
    import imageio

    assert len(imageio.mimread(gif)) == 12
    with np.load(tmp_path / "s" / "samples.npz") as f:
        assert f["generated"].shape == (2, 12, 1, 32, 32)


@needs_mnist
def test_demo_video_step_rolls_the_zoo_model_out_ten_training_lengths(tmp_path, monkeypatch):
    from dforce import zoo
    from dforce.tasks import demo

    extra = {"data": {"name": "moving_mnist", "length": 2}, "video": {"size": 32, "mnist_dir": str(MNIST)}}
    tiny_video_model(extra).save_pretrained(tmp_path / "model")
    entry = zoo.Entry(demo.VIDEO_MODEL, tmp_path / "model", "video", "dforce train ...")
    monkeypatch.setattr(zoo, "entries", lambda: {demo.VIDEO_MODEL: entry})
    info, files = demo.video_step(tmp_path / "video")
    import imageio

    assert info["frames"] == 20 and files == [tmp_path / "video" / "rollout.gif"]
    assert len(imageio.mimread(files[0])) == 4 + 20                    # context + 10x the training length
    monkeypatch.setattr(zoo, "entries", lambda: {})
    assert demo.video_step(tmp_path / "none") == (None, [])             # nothing shipped: skipped, no error


@needs_mnist
def test_train_and_eval_video_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "configs/video_mnist32.yaml", f"video.mnist_dir={MNIST}", "model.width=8",
                 "diffusion.levels=100", "data.sequences=8", "data.length=4", "train.batch_size=4", "train.steps=2",
                 "train.warmup=1", "sampling.steps=2", "sampling.stabilization=5", "--out", str(run),
                 "--no-progress"]) == 0
    out = tmp_path / "results"
    assert main(["eval", "video", "--checkpoint", str(run / "model"), "--method", "df_nostab",
                 "--horizon-multiples", "1,2", "--rollouts", "2", "--calibration", "4", "--speed-frames", "6",
                 "--encoder", str(tmp_path / "enc"), "--encoder-steps", "5", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "moving_mnist32-df_nostab.json").read_text())
    m = record["metrics"]
    assert set(m["horizons"]) == {"1x", "2x"} and len(m["per_frame"]["ssim"]) == 8
    assert record["protocol"]["stabilization"] == 0 and m["speed"]["streaming_frames_per_s"] > 0
    assert m["speed"]["frames"] == 6 and m["speed"]["recompute_window"] == 4        # the training length
    assert (out / "moving_mnist32-df_nostab.png").stat().st_size > 0


# ---- metrics ------------------------------------------------------------------------------------

def test_mse_and_psnr_by_hand():
    x = torch.zeros(1, 2, 1, 4, 4)
    y = x + 0.1
    torch.testing.assert_close(vm.mse(x, y), torch.full((1, 2), 0.01))
    torch.testing.assert_close(vm.psnr(x, y), torch.full((1, 2), 20.0))


def test_ssim_identity_and_constant_frames_by_hand():
    x = torch.rand(2, 3, 1, 16, 16)
    torch.testing.assert_close(vm.ssim(x, x), torch.ones(2, 3))
    # constant frames a, b: sigmas vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.7, 0.01**2
    got = vm.ssim(torch.full((1, 1, 1, 12, 12), a), torch.full((1, 1, 1, 12, 12), b))
    assert math.isclose(float(got), (2 * a * b + c1) / (a * a + b * b + c1), rel_tol=1e-5)


def test_ssim_matches_an_independent_scipy_implementation():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = np.random.default_rng(0)
    x = g.random((24, 24))
    y = np.clip(x + 0.2 * g.standard_normal((24, 24)), 0, 1)

    def blur(img):  # skimage's recipe: Gaussian filter (sigma 1.5, radius 5), then crop the border
        return ndimage.gaussian_filter(img, 1.5, truncate=3.5)[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    got = vm.ssim(torch.tensor(x)[None, None, None], torch.tensor(y)[None, None, None])
    assert math.isclose(float(got), ref, rel_tol=1e-5)


def test_frechet_distance_of_two_gaussians_has_the_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    d1, d2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(d1) - sqrt(d2))^2
    want = 5.0 + float(((d1.sqrt() - d2.sqrt()) ** 2).sum())
    assert math.isclose(vm.frechet_distance(mu1, torch.diag(d1), mu2, torch.diag(d2)), want, rel_tol=1e-9)
    assert abs(vm.frechet_distance(mu1, torch.diag(d1), mu1, torch.diag(d1))) < 1e-9


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64), b @ b.T
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    cross = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    want = float(((mu1 - mu2) ** 2).sum()) + float(np.trace(s1.numpy() + s2.numpy() - 2 * cross))
    assert math.isclose(vm.frechet_distance(mu1, s1, mu2, s2), want, rel_tol=1e-7)
    feats = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0])
    assert vm.frechet_features(feats[:10000], feats[10000:]) < 0.05


def test_running_mean_and_first_divergence():
    d = torch.tensor([[1.0, 3.0, 5.0, 7.0]])
    torch.testing.assert_close(vm.running_mean(d, 2), torch.tensor([[1.0, 2.0, 4.0, 6.0]]))
    assert vm.first_divergence(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]), 1.0).tolist() == [1, 3]
    assert vm.stable_fraction(torch.tensor([1, 3]), 2) == 0.5
    with pytest.raises(ValueError, match="threshold is 0"):   # real frames that repeat training frames exactly
        vm.divergence_threshold(torch.zeros(16))


@needs_mnist
def test_divergence_score_separates_real_frames_from_noise():
    real_train = torch.from_numpy(mm.MovingMNIST(100, 10, 32, 0, "train", MNIST).array())
    real_test = torch.from_numpy(mm.MovingMNIST(40, 20, 32, 1, "test", MNIST).array())
    noise = torch.rand(8, 20, 1, 32, 32)

    def features(v):  # 8x8 average-pooled pixels: the metric works in any feature space
        return torch.nn.functional.avg_pool2d(v.flatten(0, 1), 4).flatten(1).unflatten(0, v.shape[:2])

    ref = features(real_train).flatten(0, 1)

    def scores(v):
        return vm.running_mean(vm.nearest_distance(features(v).flatten(0, 1), ref).reshape(len(v), -1), 4)

    threshold = vm.divergence_threshold(scores(real_test[:30]).amax(1), 0.99)
    assert vm.first_divergence(scores(noise), threshold).tolist() == [0] * 8
    assert vm.stable_fraction(vm.first_divergence(scores(real_test[30:]), threshold), 20) >= 0.8


@needs_mnist
def test_held_out_moving_mnist_has_the_requested_length():
    real, cond = held_out(DataConfig(name="moving_mnist", length=8), VideoConfig(mnist_dir=str(MNIST)), 3, 25)
    assert real.shape == (3, 25, 1, 32, 32) and cond is None


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["eval", "video", "--checkpoint", "x", "--method", "df", "--horizon-multiples", "1,a"], "--horizon-multiples"),
    (["eval", "video", "--checkpoint", "no/such", "--method", "df"], "not a dforce model directory"),
    (["eval", "video", "--checkpoint", "x", "--method", "df", "--rollouts", "0"], "--rollouts must be >= 1"),
    (["eval", "video", "--checkpoint", "x", "--method", "df", "--speed-window", "0"], "--speed-window >= 1"),
    (["data", "atari", "--frames", "0"], "--frames must be >= 1"),
    (["show-config", "configs/video_mnist32.yaml", "model.backbone=rnn"], "cannot take video frames"),
    (["show-config", "configs/video_atari32.yaml", "video.size=48"], "video.size=48"),
    (["show-config", "configs/video_atari32.yaml", "video.sticky=1.5"], "video.sticky"),
])
def test_bad_video_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_eval_video_rejects_a_non_video_checkpoint(tmp_path, capsys):
    model = DiffusionForcingModel((2,), 0, ModelConfig(width=8, depth=1), DiffusionConfig(levels=100))
    model.save_pretrained(tmp_path / "m")
    assert main(["eval", "video", "--checkpoint", str(tmp_path / "m"), "--method", "df"]) == 2
    assert "not trained on video data" in capsys.readouterr().err


def test_methods_figure_reads_every_record_of_the_dataset(tmp_path):
    from dforce.tasks.video_eval import plot_methods

    def record(method, frames):
        per = {k: [0.1] * frames for k in ("mse", "psnr", "ssim", "mean", "saturated", "score")}
        per.update({f"{k}_real": [0.2] * frames for k in ("mean", "saturated", "score")})
        return {"dataset": "toy32", "method": method, "metrics": {
            "per_frame": per, "fd": {"per_bin": [1.0] * math.ceil(frames / 4), "bin": 4, "real": 0.5},
            "divergence": {"threshold": 0.3}}}

    with pytest.raises(ValueError, match="no video records of toy32"):
        plot_methods(tmp_path, "toy32")
    for method, frames in (("df", 40), ("tf", 10)):
        (tmp_path / f"toy32-{method}.json").write_text(json.dumps(record(method, frames)))
    (tmp_path / "other32-df.json").write_text(json.dumps({**record("df", 8), "dataset": "other32"}))
    assert plot_methods(tmp_path, "toy32") == tmp_path / "toy32-methods.png"
    assert (tmp_path / "toy32-methods.png").stat().st_size > 10_000
    assert not (tmp_path / "other32-methods.png").exists()
