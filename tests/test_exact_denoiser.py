"""The sampler against an exact denoiser and an independent reference loop.

The exact denoiser of Gaussian AR(1) tokens (``dforce.synthetic.exact_denoiser``) is the
Bayes-optimal model of Diffusion Forcing training, so with it the sampler's only errors are
its own:

* the library rollout equals a textbook per-token DDIM/DDPM loop (below: recomputes the whole
  sequence at every row, no streaming, no pruning) draw for draw, for every scheduling;
* with the autoregressive schedule the sample covariance approaches the true AR(1)
  covariance as the steps grow;
* with full-sequence scheduling a *causal* exact denoiser converges to a different joint (it
  never sees the noisy future tokens), while the same denoiser allowed to see the whole chunk
  converges: the gap is causality, not the sampler.
"""

import math
from typing import get_args

import pytest
import torch

from dforce.diffusion import NoiseSchedule, by_name, rollout, sample
from dforce.diffusion.scheduling import Scheduling
from dforce.synthetic.exact_denoiser import ExactDenoiser, ar1

F64 = torch.float64


@pytest.fixture(autouse=True)
def float64_default():
    """The sampler draws its noise in the default dtype; float64 keeps both sides exact to 1e-10."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


# ---- the independent reference ---------------------------------------------------------------

def _x0_eps(pred, x, ac, target):
    """(x0, eps) from a raw prediction at alphas_cumprod ``ac`` (a float), x = a x0 + s eps."""
    a, s = math.sqrt(ac), math.sqrt(1 - ac)
    if target == "eps":
        return (x - s * pred) / a, pred
    if target == "x0":
        return pred, (x - a * pred) / s
    return a * x - s * pred, s * x + a * pred                   # v = a eps - s x0


def reference_rollout(model, alphas_cumprod, levels, length, context, *, target, step, eta, stabilization,
                      noise_context, generator):
    """A per-token DDIM (Song et al. eq. 12) / DDPM posterior (Ho et al. eq. 7) loop over the rows of
    ``levels`` (grid units), chunk after chunk, recomputing ``model.forward`` over the whole
    sequence at every row. Draws: per chunk its initial noise, per row that changes something
    one noise tensor for the chunk (stochastic steps), then the committed context's noise."""
    ac = alphas_cumprod.tolist()
    K, steps, H = len(ac) - 1, int(levels[0, 0]), levels.shape[1]
    B, D = context.shape[0], context.shape[2]
    seq, seq_k, out = context, torch.zeros(B, context.shape[1], dtype=torch.long), []
    for start in range(0, length, H):
        h = min(H, length - start)
        rows = [[(g * K + steps // 2) // steps for g in row[:h]] for row in levels.tolist()]
        rows = [r for i, r in enumerate(rows) if i == 0 or r != rows[i - 1]]   # an idle row is no step
        x = torch.randn((B, h, D), generator=generator)
        for now, nxt in zip(rows[:-1], rows[1:]):
            pred = model.forward(torch.cat([seq, x], 1), torch.cat([seq_k, torch.tensor([now] * B)], 1))[:, -h:]
            noise = torch.randn((B, h, D), generator=generator) if step == "ddpm" or eta > 0 else None
            new = x.clone()
            for i, (kf, kt) in enumerate(zip(now, nxt)):
                if kt == kf:
                    continue
                af, at = ac[kf], ac[kt]
                x0, eps = _x0_eps(pred[:, i], x[:, i], af, target)
                if step == "ddim":
                    sigma = eta * math.sqrt((1 - at) / (1 - af) * (1 - af / at))
                    new[:, i] = math.sqrt(at) * x0 + math.sqrt(max(1 - at - sigma**2, 0.0)) * eps
                    if noise is not None:
                        new[:, i] += sigma * noise[:, i]
                else:
                    beta = 1 - af / at                                   # the jump's beta
                    mean = math.sqrt(at) * beta / (1 - af) * x0 + math.sqrt(1 - beta) * (1 - at) / (1 - af) * x[:, i]
                    new[:, i] = mean + math.sqrt((1 - at) / (1 - af) * beta) * noise[:, i]
            x = new
        out.append(x)
        if start + h < length:
            a, s = math.sqrt(ac[stabilization]), math.sqrt(1 - ac[stabilization])
            committed = a * x + (s * torch.randn((B, h, D), generator=generator) if noise_context else 0)
            seq = torch.cat([seq, committed], 1)
            seq_k = torch.cat([seq_k, torch.full((B, h), stabilization)], 1)
    return torch.cat(out, 1)


# ---- the exact denoiser itself -------------------------------------------------------------

def test_exact_denoiser_is_the_markov_posterior_after_a_clean_past():
    """Clean past: x_t | x_{t-1} ~ N(c x_{t-1}, 1 - c^2), so E[x_t | x_{t-1}, y_t] = m + g (y_t - a m)
    with g = a S / (a^2 S + s^2) (scalar Gaussian conditioning)."""
    c, schedule = 0.8, NoiseSchedule.make(50, "cosine")
    model = ExactDenoiser(ar1(c), schedule, "x0")
    x = torch.randn(5, 4, 1)
    for k_now in (1, 20, 50):
        k = torch.tensor([[0, 0, 0, k_now]] * 5)
        ac = float(schedule.alphas_cumprod[k_now])
        m, S = c * x[:, 2, 0], 1 - c**2
        g = math.sqrt(ac) * S / (ac * S + 1 - ac)
        expected = m + g * (x[:, 3, 0] - math.sqrt(ac) * m)
        torch.testing.assert_close(model.forward(x, k)[:, 3, 0], expected)
        torch.testing.assert_close(model.forward(x, k)[:, :3], x[:, :3])      # clean tokens are known


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_exact_denoiser_is_causal_and_streams(target):
    schedule = NoiseSchedule.make(50)
    model = ExactDenoiser(ar1(0.9), schedule, target)
    x, k = torch.randn(3, 6, 1), torch.randint(0, 51, (3, 6))
    full = model.forward(x, k)
    state = model.append(x[:, :2], k[:, :2], None, model.init_state(3))
    torch.testing.assert_close(model.forward_chunk(x[:, 2:], k[:, 2:], None, state), full[:, 2:])
    changed = x.clone()
    changed[:, 4:] += 1.0
    torch.testing.assert_close(model.forward(changed, k)[:, :4], full[:, :4])       # the future is unseen
    seeing = ExactDenoiser(ar1(0.9), schedule, target, causal=False)
    k_noisy = k.clamp(min=1)                                                         # a clean token hides nothing
    assert not torch.allclose(seeing.forward(changed, k_noisy)[:, :4], seeing.forward(x, k_noisy)[:, :4])


# ---- the sampler equals the reference loop draw for draw -----------------------------------

STEPS = [("ddim", 0.0, False), ("ddim", 0.6, True), ("ddpm", 0.0, True)]   # (step, eta, noise_context)


@pytest.mark.parametrize("step,eta,noise_context", STEPS)
@pytest.mark.parametrize("scheduling", get_args(Scheduling))
@pytest.mark.parametrize("target,schedule", [("v", NoiseSchedule.make(50, "sigmoid", zero_terminal=True)),
                                             ("eps", NoiseSchedule.make(50, "linear")),
                                             ("x0", NoiseSchedule.make(50, "cosine"))], ids=["v-zt", "eps", "x0"])
def test_sampler_equals_reference_loop(scheduling, step, eta, noise_context, target, schedule):
    """Two chunks (the second partial) after a clean context, stabilized at level 5."""
    model = ExactDenoiser(ar1(0.9), schedule, target)
    levels, context = by_name(scheduling, 4, 3, 1.0), torch.randn(3, 2, 1)
    kw = dict(target=target, step=step, eta=eta, stabilization=5, noise_context=noise_context)
    got = rollout(model, schedule, levels, 7, context=context, generator=torch.Generator().manual_seed(0), **kw)
    want = reference_rollout(model, schedule.alphas_cumprod, levels, 7, context,
                             generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ---- what the discretized sampler converges to ----------------------------------------------

N, T = 4000, 4          # Monte Carlo: the sample covariance of N exact AR(1) draws is off by ~0.05


def _cov_error(model, schedule, scheduling, steps, seed=0):
    """Frobenius distance (T x T) of the sample covariance of N draws from the true AR(1) covariance."""
    out = sample(model, schedule, by_name(scheduling, T, steps), batch=N, token_shape=(1,), target=model.target,
                 generator=torch.Generator().manual_seed(seed))
    return torch.linalg.norm(torch.cov(out[..., 0].T) - model.process.joint_covariance(T)).item()


def test_autoregressive_converges_and_causal_full_sequence_does_not():
    """Exact errors (T = 4, K = 100 sigmoid, DDIM): autoregressive 1.47 at 5 steps, 0.21 at 50;
    full sequence 1.59 at 50 steps (and 1.55 at 100: its limit is a different joint)."""
    schedule = NoiseSchedule.make(100, "sigmoid")
    causal = ExactDenoiser(ar1(0.9), schedule, "v")
    few, many = _cov_error(causal, schedule, "autoregressive", 5), _cov_error(causal, schedule, "autoregressive", 50)
    assert few > 1.2 and many < 0.35, (few, many)
    full = _cov_error(causal, schedule, "full_sequence", 50)
    assert full > 1.3 and full > 4 * many, (full, many)
    seeing = ExactDenoiser(ar1(0.9), schedule, "v", causal=False)
    assert _cov_error(seeing, schedule, "full_sequence", 50) < 0.5


# ---- eps with a zero-terminal-SNR schedule --------------------------------------------------

def test_eps_with_zero_terminal_snr_loses_the_past_and_is_refused():
    """At the pure-noise level a = 0 and x_k = eps: the exact eps prediction is x_k itself, and the
    x0 it implies is 0/0 (0 here) instead of E[x_t | past] = c x_{t-1}. No conversion can recover it."""
    from dforce.config import load_config
    from dforce.diffusion import x0_from

    schedule = NoiseSchedule.make(50, zero_terminal=True)
    x, k = torch.randn(2, 2, 1), torch.tensor([[0, 50]] * 2)
    eps = ExactDenoiser(ar1(0.9), schedule, "eps").forward(x, k)[:, 1:]
    torch.testing.assert_close(eps, x[:, 1:])
    a, s = schedule.coefficients(k[:, 1:], eps)
    assert (x0_from(eps, x[:, 1:], a, s, "eps") == 0).all()
    torch.testing.assert_close(ExactDenoiser(ar1(0.9), schedule, "x0").forward(x, k)[:, 1:], 0.9 * x[:, :1])

    with pytest.raises(ValueError, match="diffusion.target=eps.*diffusion.zero_terminal=true.*target=v or x0"):
        load_config(None, ["diffusion.target=eps", "diffusion.zero_terminal=true"])
    load_config(None, ["diffusion.target=v", "diffusion.zero_terminal=true"])
    load_config(None, ["diffusion.target=eps"])
    with pytest.raises(ValueError, match="zero-terminal"):
        sample(ExactDenoiser(ar1(0.9), schedule, "eps"), schedule, by_name("autoregressive", 2, 2), batch=1,
               token_shape=(1,), target="eps")
