"""Training noise levels and the Diffusion Forcing loss.

Diffusion Forcing draws an independent level per token (paper, Alg. 1); the two
ablations every domain compares against share the same loss:

* ``independent``: k_t ~ U{1..K} for every token (Diffusion Forcing); with
  ``clean_prob`` > 0 each token is instead clean (k_t = 0, no loss) with that probability,
  still independently, so the clean context that sampling conditions on (committed at
  level 0) is part of the training distribution rather than an extrapolation from level 1;
* ``full_sequence``: one k ~ U{1..K} shared by all tokens of a sequence (causal
  full-sequence diffusion);
* ``teacher_forcing``: one real token per sequence, at a uniformly drawn position, is
  noised and every other token is clean (next-token diffusion trained on ground-truth
  context). Tokens after the noised one are clean and carry no loss; the causal network
  never lets them reach it, so each sequence is a teacher-forced window cut at a random
  length and every position gets trained. With padded sequences of different lengths a
  draw among each sequence's real tokens favours the positions of short sequences;
  ``tf_position="token"`` draws among all T positions instead, so every real token of the
  data is equally likely to be trained (as under ``independent``), and a draw that lands
  on padding carries no loss.

Padding tokens (``mask`` False) are set to pure noise at level K and left out of the loss.
"""

from __future__ import annotations

from typing import Callable, Literal, get_args

import torch
from torch import Tensor

from .parameterization import Target, prediction_from
from .schedule import NoiseSchedule
from .weighting import Weighting, loss_weight

Forcing = Literal["independent", "full_sequence", "teacher_forcing"]


def training_levels(
    batch: int,
    horizon: int,
    levels: int,
    forcing: Forcing = "independent",
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    clean_prob: float = 0.0,
    tf_position: str = "real",
) -> Tensor:
    """Draw training noise levels (B, T) int64 in [0, K]; padding (mask False) gets K.

    mask: (B, T) bool, True = real token. For ``teacher_forcing`` the noised token is
    drawn uniformly among the real tokens of each sequence. ``clean_prob`` (``independent``
    only): the probability that a token is clean, drawn per token. ``tf_position``
    (``teacher_forcing`` only): ``real`` or ``token``, see the module docstring.
    """
    if tf_position not in ("real", "token"):
        raise ValueError(f"tf_position must be 'real' or 'token', got {tf_position!r}")
    if not 0 <= clean_prob < 1:
        raise ValueError(f"clean_prob must lie in [0, 1), got {clean_prob}")
    if clean_prob and forcing != "independent":
        raise ValueError(f"clean_prob applies to independent forcing only, got forcing={forcing!r}")
    def uniform(*shape: int) -> Tensor:
        return torch.randint(1, levels + 1, shape, generator=generator, device=device)

    match forcing:
        case "independent":
            k = uniform(batch, horizon)
            if clean_prob:   # drawn only when asked, so runs without it keep their random stream
                clean = torch.rand(batch, horizon, generator=generator, device=device) < clean_prob
                k = torch.where(clean, 0, k)
        case "full_sequence":
            k = uniform(batch, 1).expand(batch, horizon).clone()
        case "teacher_forcing":
            real = torch.ones(batch, horizon, device=device)
            if mask is not None and tf_position == "real":
                real = mask.float()
            position = torch.multinomial(real, 1, generator=generator).squeeze(1)          # (B,)
            k = torch.zeros(batch, horizon, dtype=torch.long, device=device)
            k[torch.arange(batch, device=device), position] = uniform(batch)
        case _:
            raise ValueError(f"forcing must be one of {get_args(Forcing)}, got {forcing!r}")
    if mask is not None:
        k = torch.where(mask, k, levels)
    return k


def noised_inputs(schedule: NoiseSchedule, x0: Tensor, k: Tensor, noise: Tensor, mask: Tensor | None) -> Tensor:
    """x_k (B, T, *D); padding tokens are pure noise regardless of the schedule's last level."""
    x_k = schedule.add_noise(x0, k, noise)
    if mask is None:
        return x_k
    return torch.where(mask.reshape(*mask.shape, *([1] * (x0.ndim - 2))), x_k, noise)


def diffusion_forcing_loss(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    x0: Tensor,
    k: Tensor,
    noise: Tensor,
    *,
    target: Target = "v",
    weighting: Weighting = "min_snr",
    snr_gamma: float = 5.0,
    fused_decay: float = 0.9,
    mask: Tensor | None = None,
    cond: Tensor | None = None,
    observed: Tensor | None = None,
) -> Tensor:
    """Weighted denoising loss over every noisy, real token (scalar).

    model(x_k, k, cond) -> raw prediction (B, T, *D); x0, noise: (B, T, *D); k: (B, T)
    int64; mask: (B, T) bool or None. Tokens at level 0 (a teacher-forced clean past)
    carry no denoising signal and are left out, as is padding. ``observed`` (B, T, *D)
    bool: only observed entries of a token count (a missing value is never a target);
    x0 must hold finite placeholders there.
    """
    x_k = noised_inputs(schedule, x0, k, noise, mask)
    pred = model(x_k, k, cond)
    a, s = schedule.coefficients(k, x0)
    sq = (pred - prediction_from(x0, noise, a, s, target)).pow(2)
    if observed is None:
        err = sq.flatten(2).mean(-1)                                                     # (B, T)
    else:
        seen = observed.to(sq.dtype).flatten(2)
        err = (sq.flatten(2) * seen).sum(-1) / seen.sum(-1).clamp(min=1)
        mask = observed.flatten(2).any(-1) if mask is None else mask & observed.flatten(2).any(-1)
    snr = schedule.snr(k).to(err.dtype)
    weight = loss_weight(snr, target, weighting, snr_gamma, fused_decay)
    use = k > 0 if mask is None else mask & (k > 0)
    return (err * weight * use).sum() / use.sum().clamp(min=1)
