"""Video backbone: per-frame conv U-Net with a convolutional GRU at the bottleneck."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .embeddings import LevelEmbedding, check_inputs


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over one frame (never over time or batch, which would break causality)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv, FiLM from the embedding, GN-SiLU-conv, plus a (1x1) skip.

    x: (N, c_in, h, w), emb: (N, emb_dim) -> (N, c_out, h, w).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)  # bias would be cancelled by norm2
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class ConvGRUCell(nn.Module):
    """GRU with 3x3 convolutions: x (N, c_in, h, w), h (N, hidden, h, w) -> new h.

    z, r = s(conv([x, h])); n = tanh(conv([x, r * h])); h' = (1 - z) * h + z * n.
    """

    def __init__(self, c_in: int, hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(c_in + hidden, 2 * hidden, 3, padding=1)
        self.cand = nn.Conv2d(c_in + hidden, hidden, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n


class FrameDenoiser(nn.Module):
    """Causal denoiser for frames x: (B, T, channels, size, size).

    Encoder (per frame, batched over B*T): stem at full resolution, two stride-2
    downsamplings to size/4, residual blocks FiLM-conditioned on
    ``emb(k_t) [+ Linear(cond_t)]``. A ConvGRU runs over time at size/4 (the only
    loop over time); the decoder upsamples back with U-Net skips from the encoder.

    Channels: ``width`` at full resolution, ``2 * width`` at size/2 and size/4;
    the ConvGRU hidden state has ``2 * width`` channels.

    Streaming state: the ConvGRU hidden state (B, 2 * width, size/4, size/4), zeros when empty.
    """

    def __init__(self, channels: int, size: int, cond_dim: int = 0, width: int = 64, levels: int = 1000):
        super().__init__()
        if size < 4 or size % 4:
            raise ValueError(f"size must be a positive multiple of 4 (two stride-2 downsamplings), got {size}")
        if channels < 1 or cond_dim < 0 or width < 1:
            raise ValueError(f"need channels>=1, cond_dim>=0, width>=1; got {channels}, {cond_dim}, {width}")
        self.channels, self.size, self.cond_dim, self.width = channels, size, cond_dim, width
        w, w2, e = width, 2 * width, 4 * width
        self.hidden = w2
        self.emb = LevelEmbedding(levels, e)
        self.cond_proj = nn.Linear(cond_dim, e) if cond_dim else None
        # encoder
        self.stem = nn.Conv2d(channels, w, 3, padding=1)
        self.enc0 = ResBlock(w, w, e)                        # size
        self.down1 = nn.Conv2d(w, w, 3, stride=2, padding=1)
        self.enc1 = ResBlock(w, w2, e)                       # size/2
        self.down2 = nn.Conv2d(w2, w2, 3, stride=2, padding=1)
        self.enc2 = ResBlock(w2, w2, e)                      # size/4
        # temporal mixer
        self.gru = ConvGRUCell(w2, self.hidden)
        # decoder
        self.mid = ResBlock(w2 + self.hidden, w2, e)         # size/4
        self.up1 = nn.Conv2d(w2, w2, 3, padding=1)
        self.dec1 = ResBlock(w2 + w2, w2, e)                 # size/2, skip from enc1
        self.up0 = nn.Conv2d(w2, w, 3, padding=1)
        self.dec0 = ResBlock(w + w, w, e)                    # size, skip from enc0
        self.head = nn.Sequential(_norm(w), nn.SiLU(), nn.Conv2d(w, channels, 3, padding=1))

    # -- the protocol ----------------------------------------------------------

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, T, C, H, W), k: (B, T), cond: (B, T, cond_dim) or None -> (B, T, C, H, W)."""
        return self.forward_chunk(x, k, cond, self.init_state(x.shape[0]))

    def init_state(self, batch: int) -> Tensor:
        """Zero ConvGRU hidden state (batch, 2 * width, size/4, size/4)."""
        p = self.stem.weight
        s = self.size // 4
        return p.new_zeros(batch, self.hidden, s, s)

    def repeat_state(self, state: Tensor, n: int) -> Tensor:
        """The state for the batch tiled ``n`` times, sample-major: (n B, 2 * width, size/4, size/4)."""
        return state.repeat(n, 1, 1, 1)

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Tensor) -> Tensor:
        """Predict frames x (B, T', C, H, W) after the past summarised by ``state``."""
        feats, emb = self._encode(x, k, cond, state)
        hs = self._recur(feats[-1], state, x.shape[0])       # (B*T', hidden, H/4, W/4)
        y = self._decode(feats, hs, emb)                     # (B*T', C, H, W)
        return y.unflatten(0, x.shape[:2])

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Tensor) -> Tensor:
        """Commit frames x (B, T', C, H, W) at levels k; returns the hidden state after them."""
        feats, _ = self._encode(x, k, cond, state)
        hs = self._recur(feats[-1], state, x.shape[0]).unflatten(0, x.shape[:2])
        return hs[:, -1]

    # -- internals -------------------------------------------------------------

    def _encode(self, x: Tensor, k: Tensor, cond: Tensor | None, state: Tensor) -> tuple[list[Tensor], Tensor]:
        """-> encoder features at sizes (H, H/2, H/4), each (B*T, c, h, w), and embeddings (B*T, 4 * width)."""
        check_inputs(x, k, cond, (self.channels, self.size, self.size), self.cond_dim)
        want = (x.shape[0], self.hidden, self.size // 4, self.size // 4)
        if tuple(state.shape) != want:
            raise ValueError(f"state must be the ConvGRU hidden state {want}, got {tuple(state.shape)}")
        emb = self.emb(k)
        if self.cond_proj is not None:
            emb = emb + self.cond_proj(cond)
        emb = emb.flatten(0, 1)
        f0 = self.enc0(self.stem(x.flatten(0, 1)), emb)
        f1 = self.enc1(self.down1(f0), emb)
        f2 = self.enc2(self.down2(f1), emb)
        return [f0, f1, f2], emb

    def _recur(self, f: Tensor, h: Tensor, batch: int) -> Tensor:
        """Bottleneck features f (B*T, c, h, w) and state (B, hidden, h, w) -> hidden after each frame (B*T, ...)."""
        f = f.unflatten(0, (batch, -1))
        hs = []
        for t in range(f.shape[1]):
            h = self.gru(f[:, t], h)
            hs.append(h)
        return torch.stack(hs, dim=1).flatten(0, 1)

    def _decode(self, feats: list[Tensor], hs: Tensor, emb: Tensor) -> Tensor:
        f0, f1, f2 = feats
        h = self.mid(torch.cat([f2, hs], dim=1), emb)
        h = self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.dec1(torch.cat([h, f1], dim=1), emb)
        h = self.up0(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.dec0(torch.cat([h, f0], dim=1), emb)
        return self.head(h)
