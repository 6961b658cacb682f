"""Causal transformer for vector tokens with rotary positions and a rolling KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .embeddings import LevelEmbedding, check_inputs

_ROPE_BASE = 10000.0


@dataclass(frozen=True)
class KVCache:
    """Streaming state of ``CausalTransformer``; never modified in place.

    keys, values: one tensor per layer, (B, heads, L, head_dim); keys are already
        rotated to their absolute positions, so cached entries never need touching.
    pos: absolute position of the next token; the cached tokens sit at
        positions pos - L .. pos - 1. With a window, L <= window - 1 while pos grows.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    pos: int

    @property
    def length(self) -> int:
        """Number of cached tokens L."""
        return self.keys[0].shape[2]


def rope_cos_sin(pos: Tensor, head_dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Rotary tables for integer positions pos (T,) -> cos, sin (T, head_dim/2).

    Angles are formed in float64 where the device has it: positions grow without
    bound in rollouts and pos * freq in float32 loses the phase after ~1e5 steps.
    """
    wide = torch.float32 if pos.device.type == "mps" else torch.float64
    half = head_dim // 2
    freqs = _ROPE_BASE ** (-torch.arange(half, device=pos.device, dtype=wide) / half)
    angles = pos.to(wide)[:, None] * freqs                            # (T, head_dim/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x_i, x_{i+D/2}) of x (B, H, T, D) by the angles in cos, sin (T, D/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention_mask(q_pos: Tensor, k_pos: Tensor, window: int | None) -> Tensor:
    """Boolean mask (Tq, Tk), True = may attend: keys at or before the query and,
    with a window, fewer than ``window`` positions back (the query itself included)."""
    lag = q_pos[:, None] - k_pos[None, :]
    mask = lag >= 0
    if window is not None:
        mask &= lag < window
    return mask


class Block(nn.Module):
    """Pre-norm block: h += attn(LN(h)); h += mlp(LN(h))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(
        self, h: Tensor, rope: tuple[Tensor, Tensor], past_k: Tensor, past_v: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """h: (B, T, W) new tokens; past_k/v: (B, heads, L, Dh); mask: (T, L + T).

        Returns the new h and the chunk's own rotated keys and values (B, heads, T, Dh).
        """
        b, t, w = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        a = F.scaled_dot_product_attention(
            q, torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2), attn_mask=mask
        )                                                                 # (B, heads, T, Dh)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, w))
        h = h + self.mlp(self.norm2(h))
        return h, k, v


class CausalTransformer(nn.Module):
    """Causal (optionally sliding-window) transformer for x: (B, T, token_dim).

    Input: ``Linear(cat[x, cond]) + emb(k)``; ``depth`` pre-norm blocks with RoPE
    attention; output head ``Linear(LN(h) * (1 + scale) + shift)`` with scale, shift
    from the level embedding (adaLN), so the head knows each token's noise level.

    ``window``: how many tokens (itself included) a token attends to in each
    layer; None = all previous tokens. Streaming state: ``KVCache``, holding at
    most ``window - 1`` tokens when windowed.
    """

    def __init__(
        self,
        token_dim: int,
        cond_dim: int = 0,
        width: int = 256,
        depth: int = 4,
        heads: int = 4,
        window: int | None = None,
        levels: int = 1000,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        if token_dim < 1 or cond_dim < 0 or depth < 1 or heads < 1 or mlp_ratio < 1:
            raise ValueError(
                "need token_dim>=1, cond_dim>=0, depth>=1, heads>=1, mlp_ratio>=1; "
                f"got {token_dim}, {cond_dim}, {depth}, {heads}, {mlp_ratio}"
            )
        if width % heads or (width // heads) % 2:
            raise ValueError(
                f"width/heads must be an even integer (RoPE rotates pairs), got width={width}, heads={heads}"
            )
        if window is not None and window < 1:
            raise ValueError(f"window must be None (unbounded) or >= 1, got {window}")
        self.token_dim, self.cond_dim, self.width, self.heads, self.window = token_dim, cond_dim, width, heads, window
        self.emb = LevelEmbedding(levels, width)
        self.inp = nn.Linear(token_dim + cond_dim, width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)

    # -- the protocol ----------------------------------------------------------

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, T, token_dim), k: (B, T), cond: (B, T, cond_dim) or None -> (B, T, token_dim)."""
        return self.forward_chunk(x, k, cond, self.init_state(x.shape[0]))

    def init_state(self, batch: int) -> KVCache:
        """Empty cache: per layer (batch, heads, 0, head_dim), next position 0."""
        p = self.inp.weight
        empty = p.new_zeros(batch, self.heads, 0, self.width // self.heads)
        n = len(self.blocks)
        return KVCache(keys=(empty,) * n, values=(empty,) * n, pos=0)

    def repeat_state(self, state: KVCache, n: int) -> KVCache:
        """The cache for the batch tiled ``n`` times, sample-major."""
        return KVCache(tuple(t.repeat(n, 1, 1, 1) for t in state.keys),
                       tuple(t.repeat(n, 1, 1, 1) for t in state.values), state.pos)

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: KVCache) -> Tensor:
        """Predict x (B, T', token_dim) after the cached past; ``state`` is untouched."""
        h, e, _, _ = self._run(x, k, cond, state)
        scale, shift = self.ada(e).chunk(2, dim=-1)
        return self.out(self.norm_out(h) * (1 + scale) + shift)

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: KVCache) -> KVCache:
        """Commit x (B, T', token_dim) at levels k; returns a new cache (trimmed to window - 1)."""
        _, _, keys, values = self._run(x, k, cond, state)
        keep = None if self.window is None else self.window - 1
        return KVCache(
            keys=tuple(_tail(torch.cat([old, new], dim=2), keep) for old, new in zip(state.keys, keys)),
            values=tuple(_tail(torch.cat([old, new], dim=2), keep) for old, new in zip(state.values, values)),
            pos=state.pos + x.shape[1],
        )

    # -- internals -------------------------------------------------------------

    def _run(
        self, x: Tensor, k: Tensor, cond: Tensor | None, state: KVCache
    ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
        """-> last hidden (B, T, W), level embedding (B, T, W), per-layer chunk keys/values."""
        check_inputs(x, k, cond, (self.token_dim,), self.cond_dim)
        if state.keys[0].shape[0] != x.shape[0] or len(state.keys) != len(self.blocks):
            raise ValueError(
                f"state holds {len(state.keys)} layers for batch {state.keys[0].shape[0]}; "
                f"this model has {len(self.blocks)} layers and x has batch {x.shape[0]}"
            )
        e = self.emb(k)
        h = self.inp(x if cond is None else torch.cat([x, cond], dim=-1)) + e
        t, past = x.shape[1], state.length
        q_pos = torch.arange(state.pos, state.pos + t, device=x.device)
        k_pos = torch.arange(state.pos - past, state.pos + t, device=x.device)
        mask = attention_mask(q_pos, k_pos, self.window)
        rope = rope_cos_sin(q_pos, self.width // self.heads, h.dtype)
        keys, values = [], []
        for block, past_k, past_v in zip(self.blocks, state.keys, state.values):
            h, kk, vv = block(h, rope, past_k, past_v, mask)
            keys.append(kk)
            values.append(vv)
        return h, e, keys, values


def _tail(t: Tensor, keep: int | None) -> Tensor:
    """Last ``keep`` entries of t (B, H, L, D) along L; all of them when keep is None."""
    if keep is None:
        return t
    return t[:, :, max(t.shape[2] - keep, 0) :]
