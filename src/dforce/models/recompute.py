"""Streaming by recomputation: the baseline, and the fallback for any causal model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Past:
    """Streaming state of ``Recompute``: the committed tokens themselves.

    x: (B, L, *D), k: (B, L), cond: (B, L, C) or None; x and k are None while
    nothing is committed (the token shape is not known before the first append).
    """

    batch: int
    x: Tensor | None = None
    k: Tensor | None = None
    cond: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of committed tokens L."""
        return 0 if self.x is None else self.x.shape[1]


class Recompute(nn.Module):
    """Give any causal ``model(x, k, cond)`` the streaming API by re-running it on
    the committed past plus the new chunk at every call.

    ``window``: keep only the last ``window`` committed tokens (None = all). Then
    streaming equals ``forward`` only while the model's receptive field fits in
    ``window`` past tokens; beyond that it is a truncated-context approximation.
    """

    def __init__(self, model: nn.Module, window: int | None = None):
        super().__init__()
        if window is not None and window < 0:
            raise ValueError(f"window must be None (keep everything) or >= 0, got {window}")
        self.model = model
        self.window = window

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """Delegates to the wrapped model."""
        return self.model(x, k, cond)

    def init_state(self, batch: int) -> Past:
        return Past(batch=batch)

    def repeat_state(self, state: Past, n: int) -> Past:
        """The committed past for the batch tiled ``n`` times, sample-major."""
        def tile(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat(n, *([1] * (t.ndim - 1)))
        return Past(state.batch * n, tile(state.x), tile(state.k), tile(state.cond))

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Past) -> Tensor:
        """model(cat(past, x)) restricted to the chunk: (B, T', *D)."""
        if state.x is None:
            self._check_batch(x, state)
            return self.model(x, k, cond)
        full = self._concat(x, k, cond, state)
        return self.model(full.x, full.k, full.cond)[:, -x.shape[1] :]

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Past) -> Past:
        """The past with x (B, T', *D) committed at levels k, trimmed to the last ``window`` tokens."""
        if state.x is None:
            self._check_batch(x, state)
            full = Past(state.batch, x, k, cond)
        else:
            full = self._concat(x, k, cond, state)
        if self.window is None or full.length <= self.window:
            return full
        start = full.length - self.window
        return Past(
            full.batch, full.x[:, start:], full.k[:, start:], None if full.cond is None else full.cond[:, start:]
        )

    @staticmethod
    def _check_batch(x: Tensor, state: Past) -> None:
        if x.shape[0] != state.batch:
            raise ValueError(f"state was made for batch {state.batch}, got x with batch {x.shape[0]}")

    def _concat(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Past) -> Past:
        """Past followed by the chunk along time."""
        self._check_batch(x, state)
        if (cond is None) != (state.cond is None):
            raise ValueError(
                f"cond must be given for every chunk or for none: past has cond={state.cond is not None}, "
                f"chunk has cond={cond is not None}"
            )
        if x.shape[2:] != state.x.shape[2:]:
            raise ValueError(f"token shape changed: past {tuple(state.x.shape[2:])}, chunk {tuple(x.shape[2:])}")
        return Past(
            state.batch,
            torch.cat([state.x, x], dim=1),
            torch.cat([state.k, k], dim=1),
            None if cond is None else torch.cat([state.cond, cond], dim=1),
        )
