"""Imitation policies acting in the cued maze (paper §4.4, the fruit-swap claim, in simulation).

Task: :mod:`.maze` (a cue at t=0 picks one of two goals whose paths split at a junction);
demos and tokens: :mod:`.demos`, :mod:`.tokens`. Three policies, all the same
:class:`~dforce.pipeline.DiffusionForcingModel`:

===================  ======================  ==========================================================
method               trained on               acts
===================  ======================  ==========================================================
``df``               memory sequences,        samples the next token (k actions + k observations)
                     independent levels,      given the committed history (streaming state), runs its
                     random unknown steps     k actions, commits the token of the *observed*
                                              observations and executed actions
``teacher_forcing``  memory sequences,        as ``df``, every token committed clean (level 0)
                     one noisy token, clean
                     past
``memoryless``       one-token windows        samples k actions from a fresh state conditioned on the
                                              current observation only (a diffusion policy without memory)
===================  ======================  ==========================================================

Each token is sampled alone (autoregressive schedule, ``steps`` rows from pure noise to
clean); its k actions are executed open loop.

Told which observations are corrupted (``observe(..., flags)``), each method uses the flags
as well as it can: ``df`` trained with unknown steps blanks them and sets their flags
(:mod:`.masking`), keeping the good steps of the token exact; a ``df`` model without
unknown-step inputs commits the whole token at ``corrupt_level`` (the per-token scheme);
``teacher_forcing`` and ``memoryless``, which have no input for a flag, replace a flagged
observation by the last good one. Not told (``flags`` all False), every method takes what
it sees as the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import devices
from ..data.maze2d_tokens import FRAME_DIM, OBS_DIM, observation_stats, stack_frames, unstack_frames
from ..diffusion import by_name, commit, denoise_chunk
from ..pipeline import DiffusionForcingModel
from .masking import blank_unknown, with_flags
from .tokens import BASE_COND_DIM, cond_dim, condition


@dataclass(frozen=True)
class Method:
    """What a method needs from its checkpoint."""

    mode: str               # imitation.mode the model was trained with
    forcing: str            # diffusion.forcing the model was trained with


METHODS: dict[str, Method] = {
    "df": Method("memory", "independent"),
    "teacher_forcing": Method("memory", "teacher_forcing"),
    "memoryless": Method("memoryless", "independent"),
}
# Level at which df commits a token holding a flagged step (of K = 1000). With unknown-step
# inputs the flagged steps are blanked and the good ones are exact, so the token is clean: 0.
# Without them (the per-token scheme) the whole token is noised: 150, chosen on held-apart
# episode seeds 20000.. with p = 0.3 among 0..900 (docs/imitation.md), never on the test seeds.
DEFAULT_STEP_LEVEL = 0
DEFAULT_TOKEN_LEVEL = 150


def commit_levels(flags: Tensor, corrupt_level: int) -> Tensor:
    """Commit level per token ``(B, 1)`` int64: ``corrupt_level`` where any step of the token is flagged, else 0.

    flags: (B, k) bool, which of the token's k observations were corrupted.
    """
    return torch.where(flags.any(1, keepdim=True), int(corrupt_level), 0).long()


def hold_flagged(obs: np.ndarray, flags: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flagged observations replaced by the last good one: ``(B, k, 5)`` and the new last good ``(B, 5)``.

    obs: (B, k, 5) as seen; flags: (B, k) bool; last: (B, 5) the last unflagged observation before them.
    """
    out, last = obs.copy(), last.copy()
    for j in range(obs.shape[1]):
        out[flags[:, j], j, :OBS_DIM] = last[flags[:, j], :OBS_DIM]
        last[~flags[:, j]] = obs[~flags[:, j], j]
    return out, last


class ImitationPolicy:
    """A trained imitation model acting on a batch of B cued-maze episodes, k env steps per call.

    ``reset(obs (B, 5))`` starts episodes from their first observation (with the cue);
    ``actions()`` returns the next k actions ``(B, k, 2)`` in [-1, 1]; ``observe(obs (B, k, 5),
    actions (B, k, 2), flags (B, k))`` hands over what was seen after executing them and
    which of those observations the policy is told are corrupted (module docstring).
    """

    def __init__(self, model: DiffusionForcingModel, method: str, *, corrupt_level: int | None = None,
                 steps: int | None = None, seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.spec = METHODS[method]
        info = model.extra.get("imitation")
        if info is None or model.token_shape[0] % FRAME_DIM:
            raise ValueError(f"model (tokens {model.token_shape}, cond {model.cond_dim}) was not trained on the "
                             "imitation task (dforce train configs/imitation_*.yaml)")
        self.frame_stack = int(info["frame_stack"])
        self.unknown_steps = bool(info.get("unknown_steps", False))
        if model.cond_dim != cond_dim(self.frame_stack, self.unknown_steps):
            raise ValueError(f"model conditioning width {model.cond_dim} does not match its imitation settings "
                             f"(frame_stack {self.frame_stack}, unknown_steps {self.unknown_steps})")
        trained = (info.get("mode"), model.diffusion_cfg.forcing)
        if trained != (self.spec.mode, self.spec.forcing):
            raise ValueError(f"--method {method} needs a model trained with imitation.mode={self.spec.mode} and "
                             f"diffusion.forcing={self.spec.forcing}; this one has {trained[0]} and {trained[1]}")
        self.model, self.method = model, method
        self.steps = int(model.sampling_cfg.steps if steps is None else steps)
        if self.steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {self.steps}")
        self.flag_use = self._flag_use()
        self.corrupt_level = self._corrupt_level(corrupt_level)
        self.levels = by_name("autoregressive", 1, self.steps)                   # (steps + 1, 1)
        self.generator = devices.generator(seed, model.device)
        self.mean, self.std = observation_stats(model.normalizer)
        self.state: Any = None
        self.cond: Tensor | None = None
        self.last_good: np.ndarray | None = None
        self.committed_levels: list[Tensor] = []   # (B, 1) per committed token, for inspection

    def _corrupt_level(self, asked: int | None) -> int:
        """The level of committed tokens holding a flagged step: ``asked``, else the default of the flag use."""
        if self.flag_use == "hold" and asked is not None:
            raise ValueError(f"a corrupt level applies to df only (--method {self.method} holds the last good observation)")
        K = self.model.schedule.levels
        token_level = round(DEFAULT_TOKEN_LEVEL * K / 1000)           # the same share of a model's levels
        level = {"blank": DEFAULT_STEP_LEVEL, "token": token_level, "hold": 0}[self.flag_use] if asked is None else int(asked)
        if not 0 <= level <= K:
            raise ValueError(f"corrupt level must lie in [0, {K}] (the model's noise levels), got {level}")
        return level

    def _flag_use(self) -> str:
        """How this policy uses a flag: ``blank`` (unknown-step inputs), ``token`` (per-token level) or ``hold``."""
        if self.method != "df":
            return "hold"
        return "blank" if self.unknown_steps else "token"

    def describe(self) -> dict[str, Any]:
        uses = {"blank": "flagged steps blanked and flagged inside the token, the token committed at corrupt_level",
                "token": "tokens holding a flagged step committed as a draw a_k x0 + s_k eps at corrupt_level",
                "hold": "flagged observations replaced by the last good one"}
        return {"method": self.method, **asdict(self.spec), "frame_stack": self.frame_stack,
                "sampling_steps": self.steps, "sampling": "one token at a time, autoregressive rows",
                "step": self.model.sampling_cfg.step, "eta": self.model.sampling_cfg.eta,
                "unknown_steps": self.unknown_steps, "flag_use": uses[self.flag_use],
                "corrupt_level": self.corrupt_level if self.flag_use != "hold" else None}

    def _condition(self, obs: np.ndarray) -> Tensor:
        """(B, 1, C) conditioning from observations (B, 5): normalized state, cue, presence flag (+ zero flags)."""
        o = torch.as_tensor(obs, dtype=torch.float32, device=self.model.device)
        base = condition((o[:, :OBS_DIM] - self.mean) / self.std, o[:, OBS_DIM])
        pad = torch.zeros(len(o), self.model.cond_dim - BASE_COND_DIM, device=o.device)
        return torch.cat([base, pad], -1)[:, None]

    def reset(self, obs: np.ndarray) -> None:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 2 or obs.shape[1] != OBS_DIM + 1:
            raise ValueError(f"observations must be (B, {OBS_DIM + 1}), got {obs.shape}")
        self.batch = obs.shape[0]
        self.cond = self._condition(obs)
        self.state = self.model.backbone.init_state(self.batch)
        self.last_good = obs.copy()
        self.committed_levels = []

    @torch.no_grad()
    def actions(self) -> np.ndarray:
        if self.cond is None:
            raise RuntimeError("call reset() before actions()")
        model, net = self.model, self.model.backbone
        state = net.init_state(self.batch) if self.spec.mode == "memoryless" else self.state
        x = torch.randn((self.batch, 1, *model.token_shape), generator=self.generator, device=model.device)
        s = model.sampling_cfg
        token = denoise_chunk(net, model.schedule, self.levels, x, state, cond=self.cond,
                              target=model.diffusion_cfg.target, step=s.step, eta=s.eta,  # type: ignore[arg-type]
                              generator=self.generator)
        _, act = unstack_frames(model.normalizer.unnormalize(token), self.frame_stack)   # (B, k, 2)
        return act.clamp(-1, 1).cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def observe(self, obs: np.ndarray, actions: np.ndarray, flags: np.ndarray | None = None) -> None:
        if self.cond is None or self.last_good is None:
            raise RuntimeError("call reset() before observe()")
        obs, actions = np.asarray(obs, dtype=np.float64), np.asarray(actions)
        flags = np.zeros(obs.shape[:2], bool) if flags is None else np.asarray(flags, bool)
        if self.flag_use == "hold":
            obs, self.last_good = hold_flagged(obs, flags, self.last_good)
        if self.spec.mode == "memoryless":     # only the newest observation matters
            self.cond = self._condition(obs[:, -1])
            return
        dev = self.model.device
        token = stack_frames(torch.as_tensor(obs[..., :OBS_DIM], dtype=torch.float32, device=dev),
                             torch.as_tensor(np.clip(actions, -1, 1), dtype=torch.float32, device=dev),
                             self.frame_stack)                                       # (B, 1, 6 k)
        token = self.model.normalizer.normalize(token)
        told = torch.as_tensor(flags, device=dev)
        cond = self.cond
        if self.flag_use == "blank":
            token = blank_unknown(token, told[:, None], torch.zeros(token.shape[-1], device=dev))
            cond = with_flags(cond, told[:, None])
        k = commit_levels(told, self.corrupt_level if self.flag_use != "hold" else 0)
        self.state = commit(self.model.backbone, self.model.schedule, token, k, cond, self.state,
                            noise=True, generator=self.generator)
        self.committed_levels.append(k.cpu())
        self.cond = torch.zeros_like(self.cond)   # only the first token carries the start observation
