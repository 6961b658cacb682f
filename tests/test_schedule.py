import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from dforce.diffusion import NoiseSchedule, ddim_step, ddpm_step, prediction_from, x0_eps_from
from dforce.diffusion.parameterization import eps_from_x0, x0_from


@pytest.fixture(autouse=True)
def float64_default():
    """float64 by default inside this module only (a global set at import leaked into later tests)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_alphas_cumprod_match_diffusers_families():
    for ours, theirs in [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]:
        sched = NoiseSchedule.make(1000, ours)
        ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs).alphas_cumprod.double()
        assert sched.alphas_cumprod[0] == 1
        torch.testing.assert_close(sched.alphas_cumprod[1:], ref, rtol=1e-5, atol=1e-7)


def test_zero_terminal_snr_matches_diffusers_and_ends_at_pure_noise():
    sched = NoiseSchedule.make(1000, "linear", zero_terminal=True)
    ref = DDPMScheduler(num_train_timesteps=1000, rescale_betas_zero_snr=True).alphas_cumprod.double()
    assert sched.alphas_cumprod[-1] == 0
    torch.testing.assert_close(sched.alphas_cumprod[1:], ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("family", ["linear", "cosine", "sigmoid"])
def test_schedule_monotone_from_clean(family):
    ac = NoiseSchedule.make(50, family).alphas_cumprod
    assert ac[0] == 1 and (ac[1:] <= ac[:-1]).all() and ac[-1] < 0.05


def test_bad_schedules_rejected():
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseSchedule.make(10, "quadratic")
    with pytest.raises(ValueError, match="start at 1"):
        NoiseSchedule(torch.tensor([0.9, 0.5]))
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        NoiseSchedule.make(10).add_noise(torch.zeros(1, 1, 2), torch.tensor([[11]]), torch.zeros(1, 1, 2))


def test_add_noise_identity_at_level_zero_and_per_token():
    sched = NoiseSchedule.make(100)
    x0, eps = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    k = torch.tensor([[0, 10, 50, 100, 0], [3, 0, 0, 7, 99]])
    x = sched.add_noise(x0, k, eps)
    clean = k == 0
    torch.testing.assert_close(x[clean], x0[clean])
    b, t = 1, 3
    ac = sched.alphas_cumprod[7]
    torch.testing.assert_close(x[b, t], math.sqrt(ac) * x0[b, t] + math.sqrt(1 - ac) * eps[b, t])


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_parameterization_round_trip(target):
    sched = NoiseSchedule.make(100)
    x0, eps = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    k = torch.randint(1, 101, (3, 4))
    a, s = sched.coefficients(k, x0)
    x_k = a * x0 + s * eps
    pred = prediction_from(x0, eps, a, s, target)
    x0_hat, eps_hat = x0_eps_from(pred, x_k, a, s, target)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(x0_from(pred, x_k, a, s, target), x0)
    torch.testing.assert_close(eps_from_x0(x0, x_k, a, s), eps)
    with pytest.raises(ValueError, match="target"):
        prediction_from(x0, eps, a, s, "score")


def _diffusers_pairs(K, n):
    """(t, prev_t) pairs a diffusers scheduler visits with n inference steps."""
    sch = DDIMScheduler(num_train_timesteps=K, clip_sample=False, set_alpha_to_one=True)
    sch.set_timesteps(n)
    return [(int(t), int(t) - K // n) for t in sch.timesteps]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("target", ["eps", "v"])
def test_ddim_step_matches_diffusers_per_token(eta, target):
    """Every token takes its own (t -> prev) jump; each must equal diffusers' DDIMScheduler.step.

    diffusers' timestep t is our level t + 1 (our level 0 is the clean data).
    """
    K, n = 1000, 20
    ref = DDIMScheduler(num_train_timesteps=K, clip_sample=False, set_alpha_to_one=True,
                        prediction_type="epsilon" if target == "eps" else "v_prediction")
    ref.set_timesteps(n)
    sched = NoiseSchedule(torch.cat([torch.ones(1), ref.alphas_cumprod.double()]))
    pairs = _diffusers_pairs(K, n)
    T = len(pairs)
    x_k, pred, noise = torch.randn(2, T, 3), torch.randn(2, T, 3), torch.randn(2, T, 3)
    k_from = torch.tensor([t + 1 for t, _ in pairs]).expand(2, T)
    k_to = torch.tensor([max(p + 1, 0) for _, p in pairs]).expand(2, T)
    a, s = sched.coefficients(k_from, x_k)
    x0_hat, eps_hat = x0_eps_from(pred, x_k, a, s, target)
    ours = ddim_step(x0_hat, eps_hat, sched.alpha_bar(k_from, x_k), sched.alpha_bar(k_to, x_k), eta, noise)
    for i, (t, _) in enumerate(pairs):
        theirs = ref.step(pred[:, i].float(), t, x_k[:, i].float(), eta=eta,
                          variance_noise=noise[:, i].float()).prev_sample
        torch.testing.assert_close(ours[:, i].float(), theirs, rtol=1e-4, atol=1e-4)


def test_ddpm_step_matches_diffusers_per_token():
    K, n = 1000, 25
    ref = DDPMScheduler(num_train_timesteps=K, clip_sample=False)
    ref.set_timesteps(n)
    sched = NoiseSchedule(torch.cat([torch.ones(1), ref.alphas_cumprod.double()]))
    ts = [int(t) for t in ref.timesteps]
    x_k, eps = torch.randn(2, len(ts), 3), torch.randn(2, len(ts), 3)
    for i, t in enumerate(ts):
        prev = t - K // n
        gen = torch.Generator().manual_seed(i)
        theirs = ref.step(eps[:, i].float(), t, x_k[:, i].float(), generator=gen).prev_sample
        noise = torch.randn(eps[:, i].shape, generator=torch.Generator().manual_seed(i), dtype=torch.float32)
        kf = torch.full((2, 1), t + 1)
        kt = torch.full((2, 1), max(prev + 1, 0))
        xi = x_k[:, i:i + 1]
        a, s = sched.coefficients(kf, xi)
        x0_hat = x0_from(eps[:, i:i + 1], xi, a, s, "eps")
        ours = ddpm_step(xi, x0_hat, sched.alpha_bar(kf, xi), sched.alpha_bar(kt, xi), noise[:, None].double())
        torch.testing.assert_close(ours[:, 0].float(), theirs, rtol=1e-4, atol=1e-4)


def test_ddpm_and_ddim_eta_one_share_the_posterior():
    sched = NoiseSchedule.make(100)
    x0, eps, z = torch.randn(4, 1, 2), torch.randn(4, 1, 2), torch.randn(4, 1, 2)
    kf, kt = torch.full((4, 1), 60), torch.full((4, 1), 35)
    x_k = sched.add_noise(x0, kf, eps)
    acf, act = sched.alpha_bar(kf, x0), sched.alpha_bar(kt, x0)
    torch.testing.assert_close(ddpm_step(x_k, x0, acf, act, z), ddim_step(x0, eps, acf, act, 1.0, z))


def test_ddpm_step_finite_from_zero_terminal_snr():
    sched = NoiseSchedule.make(10, zero_terminal=True)
    x0, x_k, z = torch.randn(1, 1, 2), torch.randn(1, 1, 2), torch.randn(1, 1, 2)
    kf, kt = torch.full((1, 1), 10), torch.full((1, 1), 5)
    out = ddpm_step(x_k, x0, sched.alpha_bar(kf, x0), sched.alpha_bar(kt, x0), z)
    assert torch.isfinite(out).all()


def test_log_snr_schedule_is_linear_in_log_snr_from_clean():
    K = 50
    sched = NoiseSchedule.make(K, "log_snr")
    ac = sched.alphas_cumprod
    assert ac[0] == 1 and (ac[1:] < ac[:-1]).all()
    log_snr = torch.log(sched.snr(torch.arange(1, K + 1)))
    torch.testing.assert_close(log_snr, torch.linspace(8.0, -8.0, K, dtype=torch.float64), rtol=0, atol=1e-9)
    custom = NoiseSchedule.make(10, "log_snr", hi=4.0, lo=-2.0)
    torch.testing.assert_close(torch.log(custom.snr(torch.tensor([1, 10]))), torch.tensor([4.0, -2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="hi > lo"):
        NoiseSchedule.make(10, "log_snr", hi=-1.0, lo=1.0)
