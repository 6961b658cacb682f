"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` tracking ``decay``-weighted averages of its parameters.

    The decay warms up as min(decay, (1 + n) / (10 + n)) over the n updates done so far,
    so early weights do not dominate a short run. Buffers (normalizer statistics) are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._averaged = list(self.model.parameters())
        self._averaged_buffers = list(self.model.buffers())
        self._source: nn.Module | None = None

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Move every averaged parameter towards ``model``'s in one fused lerp (one kernel per
        device and dtype instead of one per tensor: the per-tensor loop dominated small models)."""
        if model is not self._source:   # listed once per source model, not walked every step
            self._source = model
            self._params = [p.detach() for p in model.parameters()]
            self._buffers = list(model.buffers())
        d = min(self.decay, (1 + updates) / (10 + updates))
        torch._foreach_lerp_(self._averaged, self._params, 1 - d)
        if self._buffers:
            torch._foreach_copy_(self._averaged_buffers, self._buffers)
