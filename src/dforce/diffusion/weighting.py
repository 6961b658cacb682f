"""Per-token loss weights, expressed for whichever target the network predicts.

All weights are written as a weight on the x0-space error and converted: an error
in eps is ``snr`` times smaller than in x0, an error in v is ``snr + 1`` times smaller
(Hang et al. 2023, "Min-SNR", section 3.4).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from .parameterization import Target, check_target

Weighting = Literal["uniform", "min_snr", "fused_snr"]

# SNR at the clean level is infinite; a large finite cap keeps 0 * inf out of the algebra.
_SNR_CAP = 1e8


def _to_target_space(w_x0: Tensor, snr: Tensor, target: Target) -> Tensor:
    """Convert a weight on the x0 error into the same weight on the target's error."""
    match check_target(target):
        case "x0":
            return w_x0
        case "eps":
            return w_x0 / snr
        case "v":
            return w_x0 / (snr + 1)


def min_snr_weight(snr: Tensor, target: Target, gamma: float = 5.0) -> Tensor:
    """min(snr, gamma) on the x0 error (Hang et al. 2023). snr: (B, T) -> (B, T)."""
    snr = snr.clamp(max=_SNR_CAP)
    return _to_target_space(snr.clamp(max=gamma), snr, target)


def cumulative_snr(snr_norm: Tensor, decay: float) -> Tensor:
    """Exponentially decayed running mean over *earlier* tokens: c_t = sum_{j<t} (1-d) d^(t-1-j) n_j.

    snr_norm: (B, T) -> (B, T), c_0 = 0. Computed as one matmul with a (T, T) lower
    triangular kernel instead of a loop over time.
    """
    T = snr_norm.shape[-1]
    t = torch.arange(T, device=snr_norm.device)
    lag = t[:, None] - 1 - t[None, :]                                   # (T, T): t-1-j
    kernel = torch.where(lag >= 0, (1 - decay) * decay ** lag.clamp(min=0).to(snr_norm.dtype), 0.0)
    return snr_norm @ kernel.T


def fused_snr_weight(snr: Tensor, target: Target, gamma: float = 5.0, decay: float = 0.9) -> Tensor:
    """The paper's fused SNR weighting (Diffusion Forcing, App. B.2).

    A token is as informative as its own SNR combined with what the (noisy) past
    already reveals: with n_t = min(snr_t, gamma) / gamma and c_t the decayed running
    mean of n over earlier tokens, the fused normalized SNR is
    ``1 - (1 - d c_t)(1 - n_t)``; the x0 weight is that (clipped) times gamma.
    snr: (B, T) -> (B, T).
    """
    snr = snr.clamp(max=_SNR_CAP)
    clipped = snr.clamp(max=gamma) / gamma
    past = 1 - decay * cumulative_snr(clipped, decay)
    fused_clipped = (1 - past * (1 - clipped)) * gamma                 # min-SNR style weight, x0 space
    fused = (1 - past * (1 - snr / gamma)) * gamma                     # the fused SNR itself
    return _to_target_space(fused_clipped, fused.clamp(min=1e-12), target)


def loss_weight(
    snr: Tensor, target: Target, weighting: Weighting = "min_snr", gamma: float = 5.0, decay: float = 0.9
) -> Tensor:
    """Per-token loss weight (B, T) for the named weighting; ``uniform`` is all ones."""
    match weighting:
        case "uniform":
            return torch.ones_like(snr)
        case "min_snr":
            return min_snr_weight(snr, target, gamma)
        case "fused_snr":
            return fused_snr_weight(snr, target, gamma, decay)
        case _:
            raise ValueError(f"weighting must be one of {get_args(Weighting)}, got {weighting!r}")
