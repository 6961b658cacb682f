"""Training sequences: held in memory (tokens, optional per-token conditioning and mask), or drawn
fresh for every batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def random_windows(x: Tensor, window: int, generator: torch.Generator | None = None) -> Tensor:
    """One random crop of ``window`` consecutive tokens per sequence: (N, T, *D) -> (N, window, *D).

    Training on crops teaches a model that a sequence may start anywhere, not only
    where the generated sequences start.
    """
    N, T = x.shape[:2]
    if not 1 <= window <= T:
        raise ValueError(f"window must lie in [1, {T}], got {window}")
    offset = torch.randint(0, T - window + 1, (N,), generator=generator)
    return x[torch.arange(N)[:, None], offset[:, None] + torch.arange(window)]


def suffixes(x: Tensor, generator: torch.Generator, whole: float = 0.0) -> tuple[Tensor, Tensor]:
    """Each sequence (N, T, *D) cut at a uniform offset o in [0, T-2] and shifted to start at
    token 0: returns the suffixes (N, T, *D) and the mask (N, T) (True = real token, the
    first T - o). With probability ``whole`` a sequence is kept whole (o = 0) instead.

    A causal model trained on suffixes sees every sequence begin anywhere, so a context of
    one or two tokens from the middle of a path is in its training distribution, and with
    o = 0 the whole path is too. The masked tail holds the cut-off prefix (the sequence
    rotated): it is never trained on, and it keeps the tokens' overall statistics, which
    the normalizer is fitted on, those of whole sequences.
    """
    N, T = x.shape[:2]
    if T < 2:
        raise ValueError(f"suffixes need sequences of >= 2 tokens, got {T}")
    offset = torch.randint(0, T - 1, (N, 1), generator=generator)                   # (N, 1)
    if whole:
        # a path's first token may have one continuation where its neighbours have two (a corner of
        # the cross goes inward only, one token in goes either way): starting there more often
        # trains that sharp change harder, without changing any conditional of the data
        offset = torch.where(torch.rand(N, 1, generator=generator) < whole, 0, offset)
    source = offset + torch.arange(T)                                                # (N, T)
    return x[torch.arange(N)[:, None], source % T], source < T


@dataclass(frozen=True)
class Sequences(torch.utils.data.Dataset):
    """x: (N, T, *D) tokens; cond: (N, T, C) or None; mask: (N, T) bool (True = real token), or
    (N, T, *D) bool (True = observed entry, for series with missing values), or None."""

    x: Tensor
    cond: Tensor | None = None
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.ndim < 3:
            raise ValueError(f"sequences must be (N, T, *D), got shape {tuple(self.x.shape)}")
        for name, extra in (("cond", self.cond), ("mask", self.mask)):
            if extra is not None and extra.shape[:2] != self.x.shape[:2]:
                raise ValueError(f"{name} must start with (N, T) = {tuple(self.x.shape[:2])}, got {tuple(extra.shape)}")
        if self.mask is not None and self.mask.ndim > 2 and self.mask.shape != self.x.shape:
            raise ValueError(f"an entry mask must match the tokens {tuple(self.x.shape)}, got {tuple(self.mask.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> int:
        return i  # batches are gathered by index in one go, see batch()

    @property
    def token_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[2:])

    @property
    def cond_dim(self) -> int:
        return 0 if self.cond is None else self.cond.shape[-1]

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(x, cond, mask) rows at ``index`` (B,)."""
        pick = (lambda t: None if t is None else t[index])
        return self.x[index], pick(self.cond), pick(self.mask)


Draw = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class FreshSequences(Sequences):
    """Sequences drawn anew for every batch: ``draw(n, generator) -> (x (n, T, *D), mask (n, T) or None)``.

    ``x`` (and ``mask``) hold one draw of ``len`` sequences, used for the normalizer and the
    shapes; :meth:`batch` ignores which rows the indices name and draws fresh ones from a
    generator seeded by the indices themselves, so a step's batch is the same on a resumed
    run (the loop's batch order is seeded) and different from every other step's.
    """

    draw: Draw | None = None
    seed: int = 0

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.draw is None:
            raise ValueError("FreshSequences needs a draw function")
        x, mask = self.draw(len(index), torch.Generator().manual_seed(index_seed(index, self.seed)))
        return x, None, mask


def index_seed(index: Tensor, seed: int) -> int:
    """A 62-bit seed from a batch of indices (order matters) and a base seed: a batch drawn with
    it is the same on a resumed run and differs from every other step's."""
    weights = torch.arange(1, len(index) + 1, dtype=torch.int64) * 2_654_435_761
    return int(((index.long() * weights).sum() + seed * 1_000_003) % (1 << 62))
