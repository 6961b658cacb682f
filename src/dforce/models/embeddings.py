"""Noise-level embedding and the input checks every backbone shares."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Sinusoidal features are laid out for levels spread over [0, _SPAN], the range the
# classic DDPM timestep embedding was designed for (periods from 2*pi to 10000*2*pi).
_SPAN = 1000.0
_MAX_PERIOD = 10000.0


class LevelEmbedding(nn.Module):
    """Integer noise level k in [0, levels] -> a learned vector of size ``dim``.

    Sinusoidal features of ``k * 1000 / levels`` (so that K=10 and K=1000 see the
    same spread of frequencies) followed by Linear-SiLU-Linear.
    """

    def __init__(self, levels: int, dim: int):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim}")
        self.levels = levels
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(_MAX_PERIOD) * torch.arange(half) / half)  # (dim/2,)
        # Not persistent: a pure function of dim, so checkpoints need not carry it.
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, k: Tensor) -> Tensor:
        """k: (...) integer levels -> (..., dim)."""
        dtype = self.mlp[0].weight.dtype
        t = k.to(dtype) * (_SPAN / self.levels)                          # (...)
        angles = t[..., None] * self.freqs.to(dtype)                      # (..., dim/2)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))  # (..., dim)


def check_inputs(
    x: Tensor, k: Tensor, cond: Tensor | None, token_shape: tuple[int, ...], cond_dim: int
) -> None:
    """Raise ValueError/TypeError unless x is (B, T, *token_shape), k is (B, T) integer
    and cond is (B, T, cond_dim) when cond_dim > 0 and None otherwise."""
    want = "(B, T, " + ", ".join(map(str, token_shape)) + ")"
    if x.dim() != 2 + len(token_shape) or tuple(x.shape[2:]) != tuple(token_shape):
        raise ValueError(f"x must have shape {want}, got {tuple(x.shape)}")
    if tuple(k.shape) != tuple(x.shape[:2]):
        raise ValueError(f"k must have shape (B, T) = {tuple(x.shape[:2])}, got {tuple(k.shape)}")
    if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
        raise TypeError(f"k must hold integer noise levels, got dtype {k.dtype}")
    if cond_dim == 0:
        if cond is not None:
            raise ValueError(
                f"model was built with cond_dim=0 but got cond of shape {tuple(cond.shape)}; "
                "pass cond=None or build the model with cond_dim > 0"
            )
        return
    if cond is None:
        raise ValueError(f"model was built with cond_dim={cond_dim}: cond (B, T, {cond_dim}) is required, got None")
    if tuple(cond.shape) != (*x.shape[:2], cond_dim):
        raise ValueError(f"cond must have shape {(*x.shape[:2], cond_dim)}, got {tuple(cond.shape)}")
