"""The contract every backbone obeys.

Batch-first everywhere: tokens ``x`` are ``(B, T, *D)``, noise levels ``k`` are
``(B, T)`` int64 with 0 = clean and ``K`` = pure noise, per-token conditioning
``cond`` is ``(B, T, C)`` or ``None``. A backbone knows nothing about noise
schedules: it maps noisy tokens and their integer levels to a raw prediction
(eps, x0 or v, decided by the caller) of the same shape as ``x``.

Causality is part of the contract: the output at token ``t`` depends only on
tokens ``<= t``. Every backbone also offers an incremental (streaming) path so
that long rollouts do not recompute the past at every denoising step:

* ``init_state(batch)`` returns an empty state;
* ``forward_chunk(x, k, cond, state)`` predicts a chunk of new tokens given the
  committed past in ``state`` and does not change ``state``;
* ``append(x, k, cond, state)`` commits finished tokens (labelled with the level
  they are committed at) and returns the new state.

Optionally, ``repeat_state(state, n)`` returns the state of the batch tiled ``n``
times (sample-major, like ``torch.cat([x] * n)``), which lets Monte Carlo guidance
evaluate all its samples in one batched call.

``forward_chunk(x, k, cond, init_state(B))`` equals ``forward(x, k, cond)``, and
``forward_chunk(x2, k2, c2, append(x1, k1, c1, init_state(B)))`` equals the last
part of ``forward(cat(x1, x2), ...)``: streaming is an optimisation, never a
different model.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

State = Any  # backbone-specific: a GRU hidden state, a KV cache, ...


@runtime_checkable
class Denoiser(Protocol):
    """A causal sequence denoiser with a streaming path (see module docstring)."""

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, T, *D), k: (B, T) int64, cond: (B, T, C) or None -> (B, T, *D)."""
        ...

    def init_state(self, batch: int) -> State:
        """An empty past for a batch of ``batch`` sequences."""
        ...

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: State) -> Tensor:
        """Predict the chunk ``x`` (B, T', *D) after the committed past; ``state`` unchanged."""
        ...

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: State) -> State:
        """Commit tokens ``x`` (B, T', *D) at levels ``k``; returns the new state."""
        ...
