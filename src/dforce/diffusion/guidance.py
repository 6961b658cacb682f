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

from .noise import randn_like

Cost = Callable[[Tensor], Tensor]  # x0_hat (B, H, *D) -> cost (B,)


WEIGHTINGS = ("constant", "variance")


@dataclass(frozen=True)
class CostGuidance:
    """Guide by ``cost(x0_hat) -> (B,)``: x0_hat <- x0_hat - scale * w_k * d cost / d x_k.

    ``weighting="constant"`` uses w_k = 1 at every noise level. ``"variance"`` uses
    w_k = sigma_k^2, the per-token noise variance: the x0-space form of classifier
    guidance on the score (x0_hat = (x_k + sigma_k^2 score) / alpha_k, up to the
    1/alpha_k factor that would diverge at pure noise). The push is strongest while a
    token is still noisy and fades out as it becomes clean, where a push moves only the
    coordinates the cost sees (e.g. planned positions, not the actions that reach them).
    On Maze2D it did not score better than ``"constant"`` (docs/planning.md).
    """

    cost: Cost
    scale: float
    samples: int = 1
    weighting: str = "constant"

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")

    def guided_x0(
        self,
        denoise: Callable[[Tensor], Tensor],
        x: Tensor,
        fresh: Tensor,
        generator: torch.Generator | None = None,
        noise_var: Tensor | None = None,
        batched: bool = False,
    ) -> Tensor:
        """Guided x0 estimate (B, H, *D), detached.

        denoise: x_k (n B, H, *D) -> x0_hat, differentiable; n > 1 only with ``batched``.
        fresh: (B, H) bool, tokens that are still pure noise and are redrawn for every
        Monte Carlo sample after the first. noise_var: sigma_k^2 broadcastable to x
        (needed for ``weighting="variance"``). ``batched`` evaluates all samples in one
        call of batch ``samples * B`` (sample-major); otherwise they run one after
        another and memory stays that of a single pass.
        """
        if self.weighting == "variance" and noise_var is None:
            raise ValueError("weighting='variance' needs noise_var")
        leaf = x.detach().requires_grad_(True)
        redraw = fresh.reshape(*fresh.shape, *([1] * (x.ndim - 2)))
        draws = (leaf if i == 0 else torch.where(redraw, randn_like(x, generator), leaf) for i in range(self.samples))
        with torch.enable_grad():  # callers usually sample under no_grad
            if batched and self.samples > 1:
                x0_all = denoise(torch.cat(list(draws))).split(x.shape[0])
                (grad,) = torch.autograd.grad(sum(self._cost(x0, x) for x0 in x0_all), leaf)
                first = x0_all[0].detach()
            else:
                grad, first = torch.zeros_like(x), None
                for x_i in draws:
                    x0_hat = denoise(x_i)
                    (g,) = torch.autograd.grad(self._cost(x0_hat, x), leaf)
                    grad += g
                    first = x0_hat.detach() if first is None else first
        weight = self.scale / self.samples * (noise_var if self.weighting == "variance" else 1.0)
        return first - weight * grad

    def _cost(self, x0_hat: Tensor, x: Tensor) -> Tensor:
        """Summed cost of one sample's x0 estimate; checks the cost's shape."""
        cost = self.cost(x0_hat)
        if cost.shape != x.shape[:1]:
            raise ValueError(f"cost must return shape {tuple(x.shape[:1])}, got {tuple(cost.shape)}")
        return cost.sum()


class MonteCarloGuidance(CostGuidance):
    """Cost guidance averaged over ``samples`` redraws of the not-yet-denoised future (default 8)."""

    def __init__(self, cost: Cost, scale: float, samples: int = 8, weighting: str = "constant"):
        super().__init__(cost, scale, samples, weighting)


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
