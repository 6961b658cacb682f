import pytest
import torch

from dforce.diffusion import NoiseSchedule, diffusion_forcing_loss, loss_weight, training_levels
from dforce.diffusion.weighting import cumulative_snr


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_independent_levels_cover_range_per_token():
    k = training_levels(256, 16, 10, "independent", generator=gen())
    assert k.min() == 1 and k.max() == 10
    assert (k != k[:, :1]).any(1).float().mean() > 0.9, "levels should differ within a sequence"


def test_full_sequence_shares_one_level():
    k = training_levels(64, 8, 10, "full_sequence", generator=gen())
    assert (k == k[:, :1]).all() and k.min() >= 1


def test_teacher_forcing_noises_exactly_one_real_token_anywhere():
    mask = torch.ones(512, 6, dtype=torch.bool)
    mask[:, 4:] = False
    k = training_levels(512, 6, 10, "teacher_forcing", mask=mask, generator=gen())
    real = k[:, :4]
    assert ((real > 0).sum(1) == 1).all()
    assert (k[:, 4:] == 10).all(), "padding is pure noise"
    positions = (real > 0).float().argmax(1)
    assert set(positions.tolist()) == {0, 1, 2, 3}


def test_padding_gets_top_level_and_same_seed_same_levels():
    mask = torch.tensor([[True, True, False]])
    for mode in ("independent", "full_sequence", "teacher_forcing"):
        a = training_levels(1, 3, 7, mode, mask=mask, generator=gen(3))
        assert a[0, 2] == 7 and torch.equal(a, training_levels(1, 3, 7, mode, mask=mask, generator=gen(3)))
    with pytest.raises(ValueError, match="forcing"):
        training_levels(1, 3, 7, "diffusion")


def test_loss_ignores_padding_and_clean_tokens():
    sched = NoiseSchedule.make(50)
    x0, noise = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    k = torch.tensor([[5, 0, 7, 50], [9, 9, 0, 50]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    calls = []

    def model(x, kk, cond):
        calls.append(x)
        return torch.zeros_like(x)

    base = diffusion_forcing_loss(model, sched, x0, k, noise, target="eps", weighting="uniform", mask=mask)
    x0_changed = x0.clone()
    x0_changed[0, 1] += 100  # a clean token: its own error is not counted
    x0_changed[:, 3] += 100  # padding
    changed = diffusion_forcing_loss(model, sched, x0_changed, k, noise, target="eps", weighting="uniform", mask=mask)
    assert torch.equal(base, changed)
    assert torch.equal(calls[0][:, 3], noise[:, 3]), "padding enters as pure noise"
    torch.testing.assert_close(base, noise[k.gt(0) & mask].pow(2).mean(-1).mean())


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_min_snr_weights_are_bounded_and_uniform_is_one(target):
    snr = NoiseSchedule.make(100).snr(torch.arange(1, 101)[None]).float()
    w = loss_weight(snr, target, "min_snr", gamma=5.0)
    assert torch.isfinite(w).all() and (w > 0).all()
    w_x0 = {"x0": w, "eps": w * snr, "v": w * (snr + 1)}[target]
    torch.testing.assert_close(w_x0, snr.clamp(max=5.0))
    assert torch.equal(loss_weight(snr, target, "uniform"), torch.ones_like(snr))


def test_fused_snr_running_mean_and_weights():
    n = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    c = cumulative_snr(n, decay=0.5)
    torch.testing.assert_close(c, torch.tensor([[0.0, 0.5, 0.25, 0.125]]))
    snr = torch.tensor([[0.1, 0.1, 100.0, 0.1]])
    w = loss_weight(snr, "x0", "fused_snr", gamma=5.0, decay=0.5)
    assert torch.isfinite(w).all()
    # after a high-SNR token, the next low-SNR token counts as more informative than before it
    assert w[0, 3] > w[0, 1]


def test_clean_prob_makes_tokens_clean_independently_and_keeps_the_stream_without_it():
    g = lambda: torch.Generator().manual_seed(3)                                 # noqa: E731
    assert torch.equal(training_levels(4, 9, 100, generator=g()), training_levels(4, 9, 100, generator=g(), clean_prob=0.0))
    k = training_levels(4000, 16, 100, generator=g(), clean_prob=0.3)
    clean = k == 0
    assert abs(clean.float().mean() - 0.3) < 0.01
    assert k[~clean].min() >= 1 and k[~clean].max() == 100
    # independent per token: the chance that two neighbours are both clean is the product
    assert abs((clean[:, 1:] & clean[:, :-1]).float().mean() - 0.09) < 0.01
    mask = torch.ones(4000, 16, dtype=torch.bool)
    mask[:, 12:] = False
    assert (training_levels(4000, 16, 100, mask=mask, generator=g(), clean_prob=0.3)[:, 12:] == 100).all()
    for bad, forcing in ((1.0, "independent"), (-0.1, "independent"), (0.2, "teacher_forcing")):
        with pytest.raises(ValueError, match="clean_prob"):
            training_levels(2, 3, 10, forcing, clean_prob=bad)


def test_teacher_forcing_token_positions_weight_every_real_token_alike():
    """With padded sequences of lengths 2 and 8, a draw among real tokens trains position 1 of the short
    ones far more often; a draw among all positions trains every real token equally often."""
    mask = torch.zeros(8000, 8, dtype=torch.bool)
    mask[:4000, :2] = True
    mask[4000:] = True
    g = torch.Generator().manual_seed(0)
    for position, expected_short_share in (("real", 0.5), ("token", 2 / 10)):
        k = training_levels(8000, 8, 100, "teacher_forcing", mask, g, tf_position=position)
        trained = (k > 0) & mask                                                   # (B, T)
        assert (trained.sum(1) <= 1).all()
        short_share = trained[:4000].sum() / trained.sum()
        assert abs(float(short_share) - expected_short_share) < 0.02
        if position == "token":
            per_token = trained.sum(0).float() / mask.sum(0)                          # rate per real token
            assert torch.allclose(per_token, torch.full((8,), 1 / 8), atol=0.02)
    with pytest.raises(ValueError, match="tf_position"):
        training_levels(2, 3, 10, "teacher_forcing", tf_position="first")
