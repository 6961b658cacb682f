"""Guidance: steering samples toward low cost, toward known tokens, or away from no-history.

* :class:`CostGuidance` pushes every token down the gradient of a differentiable cost
  of the predicted clean sequence with respect to the noisy tokens (classifier
  guidance, Dhariwal & Nichol 2021), either on the x0 estimate (``form="x0"``) or, as
  the paper's released planner does, on the next noisy sample of each DDIM step with a
  per-step constant that vanishes on a token's last step (``form="ddim"``).
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
FORMS = ("x0", "ddim")


def check_form(form: str, weighting: str, names: tuple[str, str] = ("form", "weighting")) -> None:
    """ValueError unless ``form`` is one of :data:`FORMS` and goes with ``weighting``; ``names`` label the message."""
    if form not in FORMS:
        raise ValueError(f"{names[0]} must be one of {FORMS}, got {form!r}")
    if form == "ddim" and weighting != "constant":
        raise ValueError(f"{names[0]}='ddim' carries its own per-step constant; use {names[1]}='constant'")


def ddim_guidance_constant(s_from: Tensor, s_to: Tensor, final: Tensor) -> Tensor:
    """Per-token step constant of the ``"ddim"`` guidance form: ``s_from (s_from - s_to)``, 0 on final steps.

    s_from, s_to: sqrt(1 - alpha_bar) before and after the step; final: where the step
    lands on level 0 (all broadcastable). Over a whole chain from pure noise the
    constants add up to about ``integral_0^1 s ds = 1/2``, so a unit scale moves a token
    by half a gradient in total; the step that makes a token clean adds nothing, so
    nothing is pushed where no later step can repair it (the paper's released code,
    ``guidance_const`` of its DDIM step, with eta = 0).
    """
    return torch.where(final, torch.zeros_like(s_from), s_from * (s_from - s_to))


@dataclass(frozen=True)
class CostGuidance:
    """Guide by ``cost(x0_hat) -> (B,)`` down its gradient ``g = d cost / d x_k`` (w.r.t. the noisy tokens).

    ``form="x0"``: x0_hat <- x0_hat - scale * w_k * g, at every step (the DDIM step then
    follows from the guided x0). ``form="ddim"``: the DDIM step runs on the unguided
    prediction and the next sample moves, x_next <- x_next - scale * c_k * g with
    :func:`ddim_guidance_constant` c_k (the paper's released planner); only with
    ``weighting="constant"``.

    ``max_norm`` clips each token's gradient to that Euclidean norm (over its features) before
    it is applied. Through a recurrent denoiser the gradient of a cost summed over a long plan
    can be thousands of times its median on a few tokens; unclipped, those tokens jump
    through walls and out of the dynamics the model learned.

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
    form: str = "x0"
    max_norm: float | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {self.max_norm}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        check_form(self.form, self.weighting)

    def guided_x0(
        self,
        denoise: Callable[[Tensor], Tensor],
        x: Tensor,
        fresh: Tensor,
        generator: torch.Generator | None = None,
        noise_var: Tensor | None = None,
        batched: bool = False,
    ) -> Tensor:
        """Guided x0 estimate (B, H, *D), detached (the ``"x0"`` form; arguments as :meth:`x0_and_gradient`).

        noise_var: sigma_k^2 broadcastable to x (needed for ``weighting="variance"``).
        """
        if self.weighting == "variance" and noise_var is None:
            raise ValueError("weighting='variance' needs noise_var")
        first, grad = self.x0_and_gradient(denoise, x, fresh, generator, batched)
        weight = self.scale * (noise_var if self.weighting == "variance" else 1.0)
        return first - weight * grad

    def x0_and_gradient(
        self,
        denoise: Callable[[Tensor], Tensor],
        x: Tensor,
        fresh: Tensor,
        generator: torch.Generator | None = None,
        batched: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """The first sample's unguided x0 estimate and the cost gradient averaged over samples, both (B, H, *D), detached.

        denoise: x_k (n B, H, *D) -> x0_hat, differentiable; n > 1 only with ``batched``.
        fresh: (B, H) bool, tokens that are still pure noise and are redrawn for every
        Monte Carlo sample after the first. ``batched`` evaluates all samples in one
        call of batch ``samples * B`` (sample-major); otherwise they run one after
        another and memory stays that of a single pass.
        """
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
        return first, clip_token_norm(grad / self.samples, self.max_norm)

    def _cost(self, x0_hat: Tensor, x: Tensor) -> Tensor:
        """Summed cost of one sample's x0 estimate; checks the cost's shape."""
        cost = self.cost(x0_hat)
        if cost.shape != x.shape[:1]:
            raise ValueError(f"cost must return shape {tuple(x.shape[:1])}, got {tuple(cost.shape)}")
        return cost.sum()


def clip_token_norm(grad: Tensor, max_norm: float | None) -> Tensor:
    """``grad`` (B, H, *D) with each token's norm over ``*D`` clipped to ``max_norm`` (None: unchanged)."""
    if max_norm is None:
        return grad
    norm = grad.flatten(2).norm(dim=-1).reshape(*grad.shape[:2], *([1] * (grad.ndim - 2)))
    return grad * (max_norm / norm.clamp(min=max_norm))


class MonteCarloGuidance(CostGuidance):
    """Cost guidance averaged over ``samples`` redraws of the not-yet-denoised future (default 8)."""

    def __init__(self, cost: Cost, scale: float, samples: int = 8, weighting: str = "constant", form: str = "x0",
                 max_norm: float | None = None):
        super().__init__(cost, scale, samples, weighting, form, max_norm)


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
