"""Noise schedules with one integer level space: level 0 is clean, level K the noisiest.

``x_k = a_k * x0 + s_k * eps`` with ``a_k = sqrt(alphas_cumprod[k])`` and
``s_k = sqrt(1 - alphas_cumprod[k])`` (DDPM, Ho et al. 2020, eq. 4).
``alphas_cumprod`` has K + 1 entries; entry 0 is exactly 1.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

BetaSchedule = Literal["linear", "cosine", "sigmoid", "log_snr"]


def linear_betas(levels: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """(K,) betas spaced linearly (Ho et al. 2020), rescaled by 1000/K so that any K
    ends as noisy as the original 1000-level schedule (Nichol & Dhariwal 2021)."""
    scale = 1000 / levels
    return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), levels, dtype=torch.float64)


def cosine_betas(levels: int, offset: float = 0.008) -> Tensor:
    """(K,) betas of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), capped at 0.999."""
    t = torch.linspace(0, levels, levels + 1, dtype=torch.float64) / levels
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(0, 0.999)


def sigmoid_betas(levels: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    """(K,) betas whose alphas_cumprod follows a sigmoid in t (Jabri et al. 2022), capped at 0.999."""
    t = torch.linspace(0, levels, levels + 1, dtype=torch.float64) / levels
    lo, hi = torch.sigmoid(torch.tensor(start / tau)), torch.sigmoid(torch.tensor(end / tau))
    ac = (hi - torch.sigmoid((t * (end - start) + start) / tau)) / (hi - lo)
    return (1 - ac[1:] / ac[:-1]).clamp(0, 0.999)


def log_snr_betas(levels: int, hi: float = 8.0, lo: float = -8.0) -> Tensor:
    """(K,) betas whose levels 1..K are evenly spaced in log SNR from ``hi`` (level 1) to ``lo`` (level K).

    alphas_cumprod[k] = sigmoid(log SNR(k)), so SNR(1) = e^8 and SNR(K) = e^-8 by default.
    Even spacing in log SNR keeps the discrete-time ELBO tight (dforce.diffusion.likelihood):
    with an exact denoiser its gap is ~0.02 nats/dim at K = 1000, against ~0.45 for linear.
    """
    if not hi > lo:
        raise ValueError(f"log_snr needs hi > lo, got hi={hi}, lo={lo}")
    if levels == 1:
        ac = torch.sigmoid(torch.tensor([hi], dtype=torch.float64))
    else:
        ac = torch.sigmoid(torch.linspace(hi, lo, levels, dtype=torch.float64))
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    return 1 - ac / prev


def zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Shift and scale sqrt(alphas_cumprod[1:]) so the last level is pure noise (Lin et al. 2024, Alg. 1).

    alphas_cumprod: (K + 1,) with entry 0 = 1 (clean, left untouched). Returns the same shape.
    """
    root = alphas_cumprod[1:].sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return torch.cat([alphas_cumprod[:1], root**2])


class NoiseSchedule:
    """``alphas_cumprod`` over levels 0..K (0 = clean) and the per-token noising it implies."""

    def __init__(self, alphas_cumprod: Tensor):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ac.ndim != 1 or len(ac) < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with at least 2 entries, got shape {tuple(ac.shape)}")
        if ac[0] != 1 or (ac < 0).any() or (ac[1:] > ac[:-1]).any():
            raise ValueError("alphas_cumprod must start at 1 (clean), stay in [0, 1] and never increase")
        self.alphas_cumprod = ac

    @classmethod
    def make(
        cls,
        levels: int = 1000,
        beta_schedule: BetaSchedule = "linear",
        zero_terminal: bool = False,
        **kwargs: float,
    ) -> "NoiseSchedule":
        """Build a schedule of ``levels`` noisy levels from a named beta family.

        ``kwargs`` go to the family (``beta_start``/``beta_end`` for linear, ``offset`` for
        cosine, ``start``/``end``/``tau`` for sigmoid, ``hi``/``lo`` for log_snr).
        """
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        families = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas,
                    "log_snr": log_snr_betas}
        if beta_schedule not in families:
            raise ValueError(f"beta_schedule must be one of {get_args(BetaSchedule)}, got {beta_schedule!r}")
        betas = families[beta_schedule](levels, **kwargs)
        ac = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        return cls(zero_terminal_snr(ac) if zero_terminal else ac)

    @property
    def levels(self) -> int:
        """K, the noisiest level."""
        return len(self.alphas_cumprod) - 1

    def alpha_bar(self, k: Tensor, like: Tensor) -> Tensor:
        """alphas_cumprod at levels ``k`` (B, T), float64, shaped (B, T, 1, ..., 1) to broadcast against ``like``."""
        if k.dtype != torch.int64:
            raise TypeError(f"noise levels must be int64, got {k.dtype}")
        if k.numel() and (k.min() < 0 or k.max() > self.levels):
            raise ValueError(f"noise levels must lie in [0, {self.levels}], got [{int(k.min())}, {int(k.max())}]")
        ac = self.alphas_cumprod.to(k.device)[k]
        return ac.reshape(*k.shape, *([1] * (like.ndim - k.ndim)))

    def coefficients(self, k: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(a_k, s_k) for levels ``k`` (B, T), shaped (B, T, 1, ..., 1), in ``like``'s dtype."""
        ac = self.alpha_bar(k, like)
        return ac.sqrt().to(like.dtype), (1 - ac).sqrt().to(like.dtype)

    def snr(self, k: Tensor) -> Tensor:
        """Signal-to-noise ratio a_k^2 / s_k^2 per level, float64, +inf at level 0."""
        ac = self.alphas_cumprod.to(k.device)[k]
        return ac / (1 - ac)

    def add_noise(self, x0: Tensor, k: Tensor, noise: Tensor) -> Tensor:
        """Noise every token to its own level: x0 and noise (B, T, *D), k (B, T) -> x_k (B, T, *D)."""
        a, s = self.coefficients(k, x0)
        return a * x0 + s * noise
