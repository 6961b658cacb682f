"""Synthetic generators, the Normalizer and the PNG plotting helpers."""

import numpy as np
import pytest
import torch

from dforce.data import Normalizer
from dforce.synthetic.data import GENERATORS, MU_RANGE, cross, generate, oscillators


# ---------------------------------------------------------------- generators

@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_seeded_shapes_dtype(name):
    a = generate(name, 4, 16, seed=1)
    assert a.shape == (4, 16, 2) and a.dtype == torch.float32
    assert torch.equal(a, generate(name, 4, 16, seed=1))
    assert not torch.allclose(a, generate(name, 4, 16, seed=2))


@pytest.mark.parametrize("kwargs", [dict(n=0, length=8), dict(n=2, length=1), dict(n=2, length=8, noise=-0.1)])
@pytest.mark.parametrize("fn", [oscillators, cross])
def test_generators_validate(fn, kwargs):
    with pytest.raises(ValueError):
        fn(**kwargs)


def test_generate_unknown_name():
    with pytest.raises(ValueError, match="nope.*cross.*oscillators"):
        generate("nope", 2, 8)


def test_generate_noise_override():
    clean = generate("cross", 3, 5, seed=0, noise=0.0)
    corners = clean[:, 0]
    assert torch.equal(corners.abs(), torch.ones_like(corners))


def _upward_crossings(x: np.ndarray) -> np.ndarray:
    return np.where((x[:-1] < 0) & (x[1:] >= 0))[0]


def test_oscillators_on_limit_cycle_with_varying_period():
    x = oscillators(12, 160, seed=0, noise=0.0)[..., 0].numpy()     # ~5-6 periods each
    # Van der Pol's limit cycle has amplitude ~2 for every mu, from the first step on
    assert np.all((np.abs(x).max(1) > 1.5) & (np.abs(x).max(1) < 2.5))
    assert np.all(np.abs(x[:, :40]).max(1) > 1.5)
    periods = np.array([np.diff(_upward_crossings(s)).mean() for s in x])
    # mu in [0.5, 2] gives periods ~6.4..7.6 time units = ~25..31 steps at dt=0.25
    assert np.all((periods > 24) & (periods < 32))
    assert periods.max() - periods.min() > 1.5
    # random phase: start states spread around the cycle, not one point
    assert oscillators(12, 2, seed=0, noise=0.0)[:, 0, 0].std() > 0.5


def test_oscillators_period_grows_with_mu():
    g = torch.Generator().manual_seed(3)      # oscillators draws mu first from its generator
    lo, hi = MU_RANGE
    mu = (lo + (hi - lo) * torch.rand(8, generator=g, dtype=torch.float64)).numpy()
    x = oscillators(8, 160, seed=3, noise=0.0)[..., 0].numpy()
    periods = np.array([np.diff(_upward_crossings(s)).mean() for s in x])
    assert np.corrcoef(mu, periods)[0, 1] > 0.9


def test_oscillator_features_similar_scale_and_noise_std():
    clean = oscillators(8, 64, seed=0, noise=0.0)
    noisy = oscillators(8, 64, seed=0, noise=0.05)
    scale = clean.abs().amax(dim=(0, 1))
    assert scale.max() / scale.min() < 2
    assert abs((noisy - clean).std().item() - 0.05) < 0.005


def test_cross_corner_to_opposite_corner_on_diagonal():
    x = cross(64, 20, seed=0)
    start, end = x[:, 0], x[:, -1]
    assert torch.allclose(start.abs(), torch.ones_like(start), atol=0.05)
    assert torch.allclose(end, -start, atol=0.1)
    assert torch.allclose(x[..., 0].abs(), x[..., 1].abs(), atol=0.06)
    # constant speed: equal steps along the path
    step = (x[:, 1:] - x[:, :-1]).norm(dim=-1)
    assert torch.allclose(step, torch.full_like(step, 2 * 2**0.5 / 19), atol=0.06)
    # all four corners occur
    assert len({tuple(c) for c in start.sign().int().tolist()}) == 4


# ---------------------------------------------------------------- normalizer

def test_normalizer_vectors_round_trip_and_moments():
    x = torch.randn(6, 10, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -3.0, 10.0])
    norm = Normalizer((3,))
    assert norm.fit(x) is norm
    z = norm.normalize(x)
    assert torch.allclose(z.mean(dim=(0, 1)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 1), correction=0), torch.ones(3), atol=1e-4)
    assert torch.allclose(norm.unnormalize(z), x, atol=1e-5)
    # any leading dims broadcast
    assert torch.allclose(norm.unnormalize(norm.normalize(x[0, 0])), x[0, 0], atol=1e-5)
    # statistics are buffers: they land in the state dict and load back
    fresh = Normalizer((3,))
    fresh.load_state_dict(norm.state_dict())
    assert torch.equal(fresh.normalize(x), z)


def test_normalizer_frames_per_channel_and_constant_feature():
    x = torch.randn(2, 3, 2, 4, 4)
    x[:, :, 1] = 7.0                                             # constant channel
    norm = Normalizer((2, 4, 4)).fit(x)
    assert norm.mean.shape == (2, 1, 1) and norm.std.shape == (2, 1, 1)
    z = norm.normalize(x)
    assert torch.isfinite(z).all() and torch.allclose(z[:, :, 1], torch.zeros(1))
    assert torch.allclose(norm.unnormalize(z), x, atol=1e-5)


def test_normalizer_shape_errors():
    norm = Normalizer((3,))
    with pytest.raises(ValueError, match=r"\(4, 5, 2\).*\(3,\)"):
        norm.fit(torch.randn(4, 5, 2))
    with pytest.raises(ValueError):
        norm.fit(torch.randn(5, 3))                             # missing the time dim
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        norm.normalize(torch.randn(2, 4))
    with pytest.raises(ValueError):
        norm.unnormalize(torch.randn(2, 4))
    with pytest.raises(ValueError):
        Normalizer(())


# ---------------------------------------------------------------- plotting

def _png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    # two calls only (matplotlib is slow on a shared CPU): the rollout plot is the most
    # involved, plot_schedules shares its heatmap and colorbar code with plot_schedule
    from dforce.plotting import plot_rollout, plot_schedules

    gen, real = oscillators(2, 60, seed=1), oscillators(2, 60, seed=2)
    _png(plot_rollout(gen, real, tmp_path / "a" / "rollout.png", context=8, train_length=16, title="t"))
    levels = torch.arange(4)[:, None].expand(4, 5).flip(0)
    _png(plot_schedules({"full": levels, "pyramid": levels}, tmp_path / "sched.png"))


def test_random_windows_are_seeded_contiguous_crops():
    import torch

    from dforce.data.sequences import random_windows

    x = torch.arange(5 * 10, dtype=torch.float32).reshape(5, 10, 1)
    a = random_windows(x, 4, torch.Generator().manual_seed(0))
    b = random_windows(x, 4, torch.Generator().manual_seed(0))
    assert a.shape == (5, 4, 1) and torch.equal(a, b)
    steps = a[:, 1:, 0] - a[:, :-1, 0]
    assert (steps == 1).all() and ((a[:, 0, 0] % 10) <= 6).all()
    with pytest.raises(ValueError, match="window"):
        random_windows(x, 11)
