"""Unknown steps inside a token: a per-step mask, in training and when acting.

A token holds ``k`` env steps ``[o_{t+1} (4), a_t (2)]``. When some of those observations
are known to be bad (occluded, dropped, noisy beyond use), the token should keep its good
steps and say which ones are unknown, rather than hide the whole token behind one noise
level. So a policy trained with ``imitation.unknown_steps`` has ``k`` more conditioning
columns per token, one flag per step, and an unknown step's observation is *blanked*:
replaced by the data mean (0 after normalization), whatever the corruption put there. An
unknown step therefore carries no value at all, and a flagged outlier cannot push the
network anywhere it was not trained. The executed actions are always known.

Training (:class:`UnknownStepSequences`): every batch hides random steps of the memory
sequences, at a per-sequence rate ``r ~ U(0, max_rate)`` (``r = 0`` for a share
``clean_share`` of them, so fully observed histories stay common), every step
independently with probability ``r``. The loss is unchanged: a blanked step's target is the
blank itself, trivial to predict from its flag; what the network has to learn is to act on
the good steps and to ignore the blanks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.maze2d_tokens import FRAME_DIM, OBS_DIM
from ..data.sequences import Sequences, index_seed


def observation_columns(frame_stack: int) -> Tensor:
    """(k, 4) int64: the token columns holding the observation of each of the k frames."""
    return torch.arange(frame_stack)[:, None] * FRAME_DIM + torch.arange(OBS_DIM)


def blank_unknown(tokens: Tensor, unknown: Tensor, blank: Tensor) -> Tensor:
    """Tokens ``(..., 6 k)`` with the observation of every unknown frame replaced by ``blank``.

    unknown: ``(..., k)`` bool; blank: ``(6 k,)``, the value a blanked column takes (the data
    mean in raw units, zeros in normalized units).
    """
    k = unknown.shape[-1]
    cols = observation_columns(k).to(tokens.device)                              # (k, 4)
    hide = torch.zeros(*unknown.shape[:-1], tokens.shape[-1], dtype=torch.bool, device=tokens.device)
    hide[..., cols.flatten()] = unknown.repeat_interleave(OBS_DIM, -1)
    return torch.where(hide, blank.to(tokens), tokens)


def with_flags(cond: Tensor, unknown: Tensor) -> Tensor:
    """Conditioning ``(..., C)`` whose last k columns are replaced by the unknown flags ``(..., k)``."""
    k = unknown.shape[-1]
    return torch.cat([cond[..., :-k], unknown.to(cond)], -1)


def draw_unknown(n: int, length: int, frame_stack: int, max_rate: float, clean_share: float,
                 generator: torch.Generator) -> Tensor:
    """(n, length, k) bool: each step unknown with its sequence's rate ``U(0, max_rate)``, or 0 for a
    share ``clean_share`` of the sequences."""
    rate = torch.rand(n, generator=generator) * max_rate
    rate = torch.where(torch.rand(n, generator=generator) < clean_share, 0.0, rate)
    return torch.rand(n, length, frame_stack, generator=generator) < rate[:, None, None]


@dataclass(frozen=True)
class UnknownStepSequences(Sequences):
    """Memory sequences (cond with ``k`` trailing unknown flags) whose batches hide random steps.

    ``blank`` (6 k,) is the data mean (what the normalizer will subtract); a batch is drawn
    from a generator seeded by its indices, so it is the same on a resumed run.
    """

    frame_stack: int = 5
    max_rate: float = 0.8
    clean_share: float = 0.25
    blank: Tensor | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cond is None or self.blank is None:
            raise ValueError("UnknownStepSequences needs cond (with the unknown flags) and blank")
        if not 0 <= self.max_rate <= 1 or not 0 <= self.clean_share <= 1:
            raise ValueError(f"max_rate and clean_share must lie in [0, 1], got {self.max_rate}, {self.clean_share}")

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x, cond, mask = super().batch(index)
        generator = torch.Generator().manual_seed(index_seed(index, self.seed))
        unknown = draw_unknown(len(index), x.shape[1], self.frame_stack, self.max_rate, self.clean_share, generator)
        assert cond is not None and self.blank is not None
        return blank_unknown(x, unknown, self.blank), with_flags(cond, unknown), mask
