"""What the network predicts: eps, x0 or v, and conversions between them.

With ``x_k = a x0 + s eps`` (a^2 + s^2 = 1) and ``v = a eps - s x0`` (Salimans & Ho 2022):
``x0 = a x_k - s v`` and ``eps = s x_k + a v``.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor

Target = Literal["eps", "x0", "v"]

# Divisions by a (eps target at pure noise with zero terminal SNR) or by s (at the clean
# level) are undefined; the floor keeps them finite so masked-out tokens never poison
# gradients through torch.where. The value is meaningless there: at a = 0, x_k = eps and an
# eps prediction carries nothing about x0, so the sampler and the config check refuse eps with
# a zero-terminal schedule (measured with an exact denoiser in docs/concepts.md).
_FLOOR = 1e-8


def check_target(target: str) -> Target:
    if target not in get_args(Target):
        raise ValueError(f"target must be one of {get_args(Target)}, got {target!r}")
    return target  # type: ignore[return-value]


def x0_from(pred: Tensor, x_k: Tensor, a: Tensor, s: Tensor, target: Target) -> Tensor:
    """x0 estimate from a raw prediction."""
    match check_target(target):
        case "eps":
            return (x_k - s * pred) / a.clamp_min(_FLOOR)
        case "x0":
            return pred
        case "v":
            return a * x_k - s * pred


def eps_from_x0(x0: Tensor, x_k: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """The noise consistent with x_k and an x0 estimate."""
    return (x_k - a * x0) / s.clamp_min(_FLOOR)


def x0_eps_from(pred: Tensor, x_k: Tensor, a: Tensor, s: Tensor, target: Target) -> tuple[Tensor, Tensor]:
    """(x0, eps) estimates from a raw prediction of any target."""
    match check_target(target):
        case "eps":
            return x0_from(pred, x_k, a, s, "eps"), pred
        case "x0":
            return pred, eps_from_x0(pred, x_k, a, s)
        case "v":
            return a * x_k - s * pred, s * x_k + a * pred


def prediction_from(x0: Tensor, eps: Tensor, a: Tensor, s: Tensor, target: Target) -> Tensor:
    """The raw prediction (training target) for a clean token and its noise."""
    match check_target(target):
        case "eps":
            return eps
        case "x0":
            return x0
        case "v":
            return a * eps - s * x0
