"""Per-feature (or per-channel) standardization whose statistics live in module buffers.

Because ``mean`` and ``std`` are buffers, they are saved in the model's state dict and
travel with the checkpoint: no statistics pasted on the command line.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

STD_FLOOR = 1e-6  # a constant feature must not divide by zero


class Normalizer(nn.Module):
    """Standardize tokens of shape ``token_shape`` with one mean/std per first token dim.

    Vector tokens (D,) get one statistic per feature; frames (C, H, W) one per channel.
    Buffers ``mean`` and ``std`` have shape (token_shape[0], 1, ..., 1), so they broadcast
    over the remaining token dims and over any leading (batch, time) dims.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, token_shape: tuple[int, ...]) -> None:
        super().__init__()
        token_shape = tuple(int(d) for d in token_shape)
        if len(token_shape) == 0 or any(d < 1 for d in token_shape):
            raise ValueError(f"token_shape must be a non-empty tuple of positive ints; got {token_shape}")
        self.token_shape = token_shape
        stat_shape = (token_shape[0],) + (1,) * (len(token_shape) - 1)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))

    def _check(self, x: Tensor, lead: int | None) -> None:
        """Trailing dims must equal token_shape; ``lead`` fixes the leading dim count if given."""
        n = len(self.token_shape)
        ok = x.dim() >= n and tuple(x.shape[x.dim() - n:]) == self.token_shape
        if lead is not None:
            ok = ok and x.dim() == lead + n
        if not ok:
            want = ("N", "T") if lead == 2 else ("...",)
            raise ValueError(
                f"tensor shape {tuple(x.shape)} does not match ({', '.join(want)}, *token_shape) "
                f"with token_shape={self.token_shape}"
            )

    @torch.no_grad()
    def fit(self, x: Tensor) -> Normalizer:
        """Set mean/std per first token dim from data x: (N, T, *token_shape). Returns self."""
        self._check(x, lead=2)
        per = x.detach().movedim(2, 0).reshape(self.token_shape[0], -1).double()  # (D or C, rest)
        self.mean.copy_(per.mean(1).reshape(self.mean.shape))
        # population std: the fitted data then has exactly unit std
        self.std.copy_(per.std(1, correction=0).clamp_min(STD_FLOOR).reshape(self.std.shape))
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """(x - mean) / std for x: (..., *token_shape); keeps x's dtype."""
        self._check(x, lead=None)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def unnormalize(self, x: Tensor) -> Tensor:
        """x * std + mean for x: (..., *token_shape); inverse of :meth:`normalize`."""
        self._check(x, lead=None)
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def extra_repr(self) -> str:
        return f"token_shape={self.token_shape}"
