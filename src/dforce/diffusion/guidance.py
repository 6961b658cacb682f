"""Guidance: steering samples toward low cost, toward known tokens, or away from no-history.

* :class:`CostGuidance` pushes the x0 estimate of every token down the gradient of a
  differentiable cost of the predicted clean sequence with respect to the noisy
  tokens (classifier guidance, Dhariwal & Nichol 2021, written in x0 space).
* :class:`MonteCarloGuidance` (paper, section 3.4) averages that gradient over
  several sampled futures: tokens that have not started denoising (pure noise) are
  redrawn for every sample, so a near token is guided by the *expected* cost over
  the futures the model considers possible, not by one arbitrary draw.
* :class:`Inpaint` fixes known tokens.
* :class:`HistoryGuidance` is classifier-free guidance over the context (DFoT,
  arXiv 2502.06764): predictions with the history combined with predictions with the
  history dropped (``level=None``) or noised to ``level`` (fractional).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Cost = Callable[[Tensor], Tensor]  # x0_hat (B, H, *D) -> cost (B,)


@dataclass(frozen=True)
class CostGuidance:
    """Guide by ``cost(x0_hat) -> (B,)``: x0_hat <- x0_hat - scale * d cost / d x_k."""

    cost: Cost
    scale: float
    samples: int = 1

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    def guided_x0(
        self,
        denoise: Callable[[Tensor], Tensor],
        x: Tensor,
        fresh: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Guided x0 estimate (B, H, *D), detached.

        denoise: x_k (B, H, *D) -> x0_hat, differentiable. fresh: (B, H) bool, tokens that
        are still pure noise and are redrawn for every Monte Carlo sample after the first.
        Samples run one after another so memory stays that of a single pass.
        """
        leaf = x.detach().requires_grad_(True)
        redraw = fresh.reshape(*fresh.shape, *([1] * (x.ndim - 2)))
        grad = torch.zeros_like(x)
        first = None
        for i in range(self.samples):
            with torch.enable_grad():  # callers usually sample under no_grad
                x_i = leaf if i == 0 else torch.where(redraw, _randn_like(x, generator), leaf)
                x0_hat = denoise(x_i)
                cost = self.cost(x0_hat)
                if cost.shape != x.shape[:1]:
                    raise ValueError(f"cost must return shape {tuple(x.shape[:1])}, got {tuple(cost.shape)}")
                (g,) = torch.autograd.grad(cost.sum(), leaf)
            grad += g / self.samples
            if first is None:
                first = x0_hat.detach()
        return first - self.scale * grad


class MonteCarloGuidance(CostGuidance):
    """Cost guidance averaged over ``samples`` redraws of the not-yet-denoised future (default 8)."""

    def __init__(self, cost: Cost, scale: float, samples: int = 8):
        super().__init__(cost, scale, samples)


@dataclass(frozen=True)
class Inpaint:
    """Known tokens ``values`` (B, H, *D) where ``mask`` (B, H) is True.

    Diffusion Forcing conditions natively: known tokens are fed clean (level 0) at
    every step and never updated. ``relabel=False`` gives classic replacement
    instead: known tokens are re-noised to the current row's level with fresh noise.
    """

    values: Tensor
    mask: Tensor
    relabel: bool = True


@dataclass(frozen=True)
class HistoryGuidance:
    """pred = pred_nohist + scale * (pred_hist - pred_nohist); scale 1 = no guidance.

    ``level=None`` drops the history (vanilla); an int noises it to that level (fractional).
    """

    scale: float
    level: int | None = None


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
