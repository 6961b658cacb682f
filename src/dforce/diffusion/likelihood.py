"""The variational lower bound (ELBO) on log p(x) of a sequence and of its subsequences.

Diffusion Forcing's objective is a reweighted ELBO on the likelihood of every
subsequence (paper, App. A). For a causal model the autoregressive factorisation
gives ``log p(x_{1:T}) = sum_t log p(x_t | x_{<t})``, and each factor is bounded by
the discrete-time DDPM bound of token t with the *clean* past x_{<t} (level 0) as
context (Ho et al. 2020, eq. 5; Kingma et al. 2021, "VDM", discrete form)::

    -log p(x_t | x_{<t}) <= L_prior + L_dec + sum_{k=2}^{K} L_k

    L_prior = KL(q(x_K | x0) || N(0, I))                         (closed form)
    L_dec   = -log N(x0; x0_hat(x_1), sigma_1^2 I)                 (decoder, level 1)
    L_k     = KL(q(x_{k-1} | x_k, x0) || p(x_{k-1} | x_k))
            = (SNR(k-1) - SNR(k)) / 2 * ||x0 - x0_hat(x_k)||^2     (VDM eq. 13, discrete)

with x_k = a_k x0 + s_k eps, p(x_{k-1} | x_k) the DDPM posterior q(x_{k-1} | x_k, x0_hat)
with its own variance beta_tilde_k, so only the means differ and the KL is the
squared x0 error weighted by the SNR drop.

Choices, documented because the bound depends on them:

* Decoder: data are continuous (no discretisation is assumed), so the decoder is a
  Gaussian with mean x0_hat(x_1) and variance ``sigma_1^2 = s_1^2 / a_1^2`` =
  beta_1 / (1 - beta_1), the variance of x0 given x_1 under a flat prior. (The DDPM
  posterior variance beta_tilde_1 is 0 at level 1 and cannot serve.) The result is a
  bound on a *density*, in nats, and may be positive.
* Monte Carlo: the decoder is evaluated at level 1 on every draw (its own stratum,
  weight 1), and the KL sum over k = 2..K is estimated from one level per draw,
  ``k ~ U{2..K}`` importance-weighted by ``K - 1`` (``proposal="uniform"``) or drawn
  with probability proportional to ``log(1 + SNR(k-1)) - log(1 + SNR(k))`` and
  weighted by its inverse (``proposal="snr"``, much lower variance: for data of
  unit scale and a good denoiser the weighted term is nearly constant in k).
  Folding the decoder into the uniform draw over 1..K would multiply its (large)
  log-density by K on one draw in K and make the estimate useless at K = 1000.
  Each token gets ``draws`` independent (level, noise) draws; the estimate is
  unbiased for the bound and its error falls as 1/sqrt(draws).
* Tightness: the bound is a Riemann sum over levels; it is tight only when the log
  SNR changes little between neighbouring levels. With an exact denoiser on a
  Gaussian AR(1) process (tests/test_likelihood.py) the gap to the exact
  log-likelihood is ~0.02 nats/dim for K = 1000 levels evenly spaced in log SNR over
  [8, -8], but ~0.45 nats/dim for the linear beta schedule at K = 1000, whose
  noise variance grows like k near level 0 (SNR halves from level 1 to 2).
* Units: everything is in nats per token (summed over the token's dimensions) in
  the units of ``x0`` as given; divide by the number of dimensions for nats/dim
  (:func:`nats_per_dim`). Data that were normalised before the model need the
  log-Jacobian of the normalisation added to compare with data-space densities.

Cost: ``T`` steps of ``2 x forward_chunk`` plus one ``append`` each, on a batch of
``B * draws`` rows (draws are laid out with ``repeat_interleave``: row ``b * draws + n``
is draw n of sequence b).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from .noise import multinomial, randn
from .parameterization import Target, x0_from
from .sampler import require_streaming
from .schedule import NoiseSchedule

Proposal = Literal["uniform", "snr"]


def prior_kl(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """KL(q(x_K | x0) || N(0, I)) per token, (B, T, *D) -> (B, T) float64 nats.

    Per dimension 0.5 * (a_K^2 x0^2 + s_K^2 - 1 - log s_K^2) (two Gaussians, closed form).
    """
    ac = schedule.alphas_cumprod[-1].item()
    var = 1 - ac
    x = x0.double().flatten(2)
    log_var = math.log(var) if var > 0 else -math.inf
    return 0.5 * (ac * x.pow(2) + var - 1 - log_var).sum(-1)


def decoder_variance(schedule: NoiseSchedule) -> float:
    """sigma_1^2 = s_1^2 / a_1^2, the decoder's variance at level 1 (see module docstring)."""
    ac1 = schedule.alphas_cumprod[1].item()
    if not 0 < ac1 < 1:
        raise ValueError(f"the decoder needs 0 < alphas_cumprod[1] < 1, got {ac1}")
    return (1 - ac1) / ac1


def kl_weights(schedule: NoiseSchedule) -> Tensor:
    """(K + 1,) float64: entry k (k >= 2) is (SNR(k-1) - SNR(k)) / 2; entries 0 and 1 are 0."""
    snr = schedule.snr(torch.arange(schedule.levels + 1))
    w = torch.zeros_like(snr)
    w[2:] = (snr[1:-1] - snr[2:]) / 2
    return w


def proposal_probs(schedule: NoiseSchedule, proposal: Proposal) -> Tensor:
    """(K + 1,) float64 probabilities of drawing level k for the KL sum; zero at k = 0, 1."""
    K = schedule.levels
    p = torch.zeros(K + 1, dtype=torch.float64)
    if K < 2:
        return p
    match proposal:
        case "uniform":
            p[2:] = 1.0 / (K - 1)
        case "snr":
            log_noise = torch.log1p(-schedule.alphas_cumprod)          # log(1 - ac) = -log(1 + SNR)
            p[2:] = (log_noise[2:] - log_noise[1:-1]).clamp(min=0)
            if not p.sum() > 0:
                raise ValueError("proposal='snr' needs a schedule whose noise grows over levels 2..K")
            p = p / p.sum()
        case _:
            raise ValueError(f"proposal must be one of {get_args(Proposal)}, got {proposal!r}")
    return p


def elbo(
    model: Any,
    schedule: NoiseSchedule,
    x0: Tensor,
    *,
    cond: Tensor | None = None,
    context: Tensor | None = None,
    target: Target = "v",
    draws: int = 16,
    proposal: Proposal = "uniform",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-token lower bounds on log p(x_t | context, x_{<t}), (B, T) float64 nats.

    model: a causal denoiser with the streaming protocol (``init_state``,
    ``forward_chunk``, ``append``) predicting ``target``. x0: (B, T, *D) clean tokens.
    context: (B, C, *D) clean tokens committed (at level 0) before x0, or None for a
    fresh start. cond: (B, C + T, Cc) per-token conditioning covering context and x0,
    or None. draws: Monte Carlo (level, noise) draws per token; proposal: how the KL
    level is drawn (see module docstring).

    ``elbo(...).sum(1)`` bounds log p(x_{1:T}); ``[:, :t].sum(1)`` bounds any prefix and
    ``[:, i:j].sum(1)`` bounds x_{i:j} given its clean past x_{<i}. Gradients flow
    through the model; call it under ``torch.no_grad()`` to evaluate.
    """
    require_streaming(model)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if x0.ndim < 3:
        raise ValueError(f"x0 must be (B, T, *D), got shape {tuple(x0.shape)}")
    B, T = x0.shape[:2]
    n_ctx = 0 if context is None else context.shape[1]
    if context is not None and (context.shape[0] != B or context.shape[2:] != x0.shape[2:]):
        raise ValueError(f"context must be (B, C, *D) = ({B}, C, {', '.join(map(str, x0.shape[2:]))}), "
                         f"got {tuple(context.shape)}")
    if cond is not None and tuple(cond.shape[:2]) != (B, n_ctx + T):
        raise ValueError(f"cond must be (B, C + T, Cc) = ({B}, {n_ctx + T}, Cc), got {tuple(cond.shape)}")
    K, dev = schedule.levels, x0.device
    probs = proposal_probs(schedule, proposal).to(dev)
    weights = kl_weights(schedule).to(dev)
    dec_var = decoder_variance(schedule)

    def rep(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.repeat_interleave(draws, 0)

    def cond_at(lo: int, hi: int) -> Tensor | None:
        return None if cond is None else rep(cond[:, lo:hi])

    rows = B * draws
    x = rep(x0)
    state = model.init_state(rows)
    if context is not None and n_ctx:
        k0 = torch.zeros(rows, n_ctx, dtype=torch.long, device=dev)
        state = model.append(rep(context), k0, cond_at(0, n_ctx), state)

    def x0_error(x_t: Tensor, k: Tensor, c: Tensor | None) -> Tensor:
        """||x0 - x0_hat(x_k)||^2 per row (rows,) float64, for one token x_t (rows, 1, *D)."""
        eps = randn(x_t.shape, generator, dev, x_t.dtype)
        a, s = schedule.coefficients(k, x_t)
        x_k = a * x_t + s * eps
        x0_hat = x0_from(model.forward_chunk(x_k, k, c, state), x_k, a, s, target)
        return (x_t - x0_hat).double().pow(2).flatten(1).sum(-1)

    out = []
    for t in range(T):
        x_t, c_t = x[:, t : t + 1], cond_at(n_ctx + t, n_ctx + t + 1)
        dims = x_t[0].numel()
        ones = torch.ones(rows, 1, dtype=torch.long, device=dev)
        decoder = 0.5 * (dims * math.log(2 * math.pi * dec_var) + x0_error(x_t, ones, c_t) / dec_var)
        loss = decoder + prior_kl(schedule, x_t)[:, 0]
        if K >= 2:
            k = multinomial(probs, rows, generator).unsqueeze(1)
            loss = loss + (weights[k] / probs[k])[:, 0] * x0_error(x_t, k, c_t)
        out.append(-loss.reshape(B, draws).mean(1))
        if t + 1 < T:
            state = model.append(x_t, torch.zeros(rows, 1, dtype=torch.long, device=dev), c_t, state)
    return torch.stack(out, 1)


def subsequence_elbo(
    model: Any,
    schedule: NoiseSchedule,
    x0: Tensor,
    start: int,
    stop: int,
    *,
    given_past: bool = False,
    cond: Tensor | None = None,
    **kwargs: Any,
) -> Tensor:
    """Lower bound on log p(x_{start:stop}) (B,) float64 nats, from tokens x0 (B, T, *D).

    ``given_past=False`` bounds the subsequence on its own (a fresh state at ``start``,
    the past ignored); ``given_past=True`` bounds log p(x_{start:stop} | x_{<start}) with
    the clean past as context. cond: (B, T, Cc) or None, indexed like x0. ``kwargs``
    go to :func:`elbo` (target, draws, proposal, generator).
    """
    T = x0.shape[1]
    if not 0 <= start < stop <= T:
        raise ValueError(f"need 0 <= start < stop <= {T}, got start={start}, stop={stop}")
    lo = 0 if given_past else start
    context = x0[:, lo:start] if start > lo else None
    c = None if cond is None else cond[:, lo:stop]
    return elbo(model, schedule, x0[:, start:stop], cond=c, context=context, **kwargs).sum(1)


def nats_per_dim(per_token: Tensor, token_shape: tuple[int, ...]) -> Tensor:
    """Per-token bounds (B, T) in nats -> (B,) mean nats per dimension over the sequence."""
    return per_token.sum(1) / (per_token.shape[1] * math.prod(token_shape))
