"""The paper's recurrent backbone for vector tokens: MLP in, GRU over time, MLP out."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .embeddings import LevelEmbedding, check_inputs


class GRUDenoiser(nn.Module):
    """Causal denoiser for vector tokens x: (B, T, token_dim).

    Per token, ``inp(cat[x_t, emb(k_t), cond_t])`` feeds a ``depth``-layer GRU of
    size ``width``; ``out(cat[gru_t, emb(k_t)])`` maps back to ``token_dim``.

    Streaming state: the GRU hidden state, a tensor ``(depth, B, width)`` (zeros
    when empty). It summarises every committed token, so memory is flat.
    """

    def __init__(self, token_dim: int, cond_dim: int = 0, width: int = 256, depth: int = 2, levels: int = 1000):
        super().__init__()
        if token_dim < 1 or cond_dim < 0 or depth < 1:
            raise ValueError(f"need token_dim>=1, cond_dim>=0, depth>=1; got {token_dim}, {cond_dim}, {depth}")
        if width < 2 or width % 2:
            raise ValueError(f"width must be an even integer >= 2, got {width}")
        self.token_dim, self.cond_dim, self.width, self.depth = token_dim, cond_dim, width, depth
        self.emb = LevelEmbedding(levels, width)
        self.inp = nn.Sequential(nn.Linear(token_dim + width + cond_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.gru = nn.GRU(width, width, num_layers=depth, batch_first=True)
        self.out = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, token_dim))

    # -- shared pieces ---------------------------------------------------------

    def _encode(self, x: Tensor, k: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """-> GRU inputs (B, T, width) and level embeddings (B, T, width)."""
        check_inputs(x, k, cond, (self.token_dim,), self.cond_dim)
        e = self.emb(k)
        parts = [x, e] if cond is None else [x, e, cond]
        return self.inp(torch.cat(parts, dim=-1)), e

    def _decode(self, h: Tensor, e: Tensor) -> Tensor:
        """GRU outputs (B, T, width), level embeddings (B, T, width) -> (B, T, token_dim)."""
        return self.out(torch.cat([h, e], dim=-1))

    def _check_state(self, state: Tensor, batch: int) -> None:
        if tuple(state.shape) != (self.depth, batch, self.width):
            raise ValueError(
                f"state must be the GRU hidden state of shape {(self.depth, batch, self.width)}, "
                f"got {tuple(state.shape)}"
            )

    # -- the protocol ----------------------------------------------------------

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, T, token_dim), k: (B, T), cond: (B, T, cond_dim) or None -> (B, T, token_dim)."""
        return self.forward_chunk(x, k, cond, self.init_state(x.shape[0]))

    def init_state(self, batch: int) -> Tensor:
        """Zero hidden state (depth, batch, width) on the model's device and dtype."""
        w = self.gru.weight_hh_l0
        return torch.zeros(self.depth, batch, self.width, device=w.device, dtype=w.dtype)

    def repeat_state(self, state: Tensor, n: int) -> Tensor:
        """The state for the batch tiled ``n`` times, sample-major: (depth, n B, width)."""
        return state.repeat(1, n, 1)

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Tensor) -> Tensor:
        """Predict the chunk x (B, T', token_dim) after the past summarised by ``state``."""
        self._check_state(state, x.shape[0])
        h_in, e = self._encode(x, k, cond)
        h, _ = self._gru(h_in, state)  # one fused call over all T' steps
        return self._decode(h, e)

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Tensor) -> Tensor:
        """Commit x (B, T', token_dim) at levels k; returns the hidden state after it."""
        self._check_state(state, x.shape[0])
        h_in, _ = self._encode(x, k, cond)
        _, last = self._gru(h_in, state)
        return last

    def _gru(self, h_in: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """``self.gru``; off cuDNN when a gradient is asked of a model in eval mode.

        Guidance differentiates a frozen (eval-mode) model with respect to its noisy inputs,
        and cuDNN refuses an RNN backward outside training mode; the native CUDA kernel
        computes the same function and its gradient.
        """
        if h_in.is_cuda and torch.is_grad_enabled() and not self.training:
            with torch.backends.cudnn.flags(enabled=False):
                return self.gru(h_in, state)
        return self.gru(h_in, state)

    # -- benchmark baseline ----------------------------------------------------

    def loop_forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """Same as ``forward`` but with a Python loop over time and per-layer GRU
        cell calls on the fused GRU's own parameters (for fused-vs-looped benchmarks)."""
        h_in, e = self._encode(x, k, cond)
        hidden = list(self.init_state(x.shape[0]).unbind(0))  # depth x (B, width)
        outs = []
        for t in range(x.shape[1]):
            inp = h_in[:, t]
            for layer in range(self.depth):
                hidden[layer] = gru_cell(inp, hidden[layer], *self._layer_params(layer))
                inp = hidden[layer]
            outs.append(inp)
        return self._decode(torch.stack(outs, dim=1), e)

    def _layer_params(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = self.gru
        return (
            getattr(g, f"weight_ih_l{layer}"),
            getattr(g, f"weight_hh_l{layer}"),
            getattr(g, f"bias_ih_l{layer}"),
            getattr(g, f"bias_hh_l{layer}"),
        )


def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """One GRU step with torch.nn.GRU's parameter layout (gates stacked r, z, n).

    x: (B, I), h: (B, H), w_ih: (3H, I), w_hh: (3H, H) -> new h (B, H).
    r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h, as documented for torch.nn.GRU.
    """
    i_r, i_z, i_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h
