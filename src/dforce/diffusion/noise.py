"""Random draws that work whatever device the generator lives on.

``torch.randn(shape, generator=g, device=d)`` fails when ``g`` lives on another device
than ``d`` (a CPU generator feeding a CUDA model). These helpers draw on the generator's
own device and move the result to ``device``: with a generator on the model's device
(what the entry points make) that is one draw in place; with a CPU generator and a CUDA
model it is the CPU stream copied over. With no generator they draw on ``device`` from
the global stream. When generator and target are both on the CPU the call is exactly
``torch.randn(shape, generator=g, device="cpu")``, so CPU results do not change.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _source(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device | str | None:
    return device if generator is None else generator.device


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
          device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape`` on ``device`` (default: the generator's), drawn from ``generator``."""
    x = torch.randn(tuple(shape), generator=generator, device=_source(generator, device), dtype=dtype)
    return x if device is None else x.to(device)


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Noise shaped, placed and typed like ``x``."""
    return randn(x.shape, generator, x.device, x.dtype)


def multinomial(probs: Tensor, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """``torch.multinomial(probs, samples, replacement=True)`` drawn on the generator's device, on ``probs``' device."""
    source = _source(generator, probs.device)
    return torch.multinomial(probs.to(source), samples, replacement=True, generator=generator).to(probs.device)
