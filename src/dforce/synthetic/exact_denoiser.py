"""The exact denoiser of a linear-Gaussian AR(1) process: a reference model for the sampler.

Tokens x_1..x_n of a :class:`~dforce.synthetic.linear_gaussian.LinearGaussian` process are
jointly Gaussian with covariance Sigma (``joint_covariance``). A token noised to level k is
y_j = a_j x_j + s_j eps_j, so the clean value of token t given the noisy tokens it may see,
each at its own level, is Gaussian with mean (Gaussian conditioning)

    E[x_t | y_J] = Sigma_{t,J} A_J (A_J Sigma_{J,J} A_J + S_J^2)^{-1} y_J,    J = {j <= t}

with A, S diagonal (a_j, s_j on every coordinate of token j). Under Diffusion Forcing
training (independent levels, any target, any per-token weighting) the loss is minimised by
exactly this conditional mean, so this model is what a perfectly trained causal network would
be: running it through the sampler isolates what the sampler and the scheduling matrix do.
It obeys the streaming protocol of :mod:`dforce.models.protocol`; the state is the committed
past itself (tokens and their levels), since noisy observations are not Markov.

``causal=False`` also lets every token see the tokens after it in the same chunk (the posterior
mean of a bidirectional network). That breaks the protocol's causality on purpose: it shows what
the schedules would reach if the model could see the noisy future.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion import NoiseSchedule, Target, prediction_from
from ..diffusion.parameterization import check_target
from .linear_gaussian import LinearGaussian

F64 = torch.float64
State = tuple[Tensor, Tensor]   # committed tokens (B, P, D) float64 and their levels (B, P) int64


def ar1(coefficient: float) -> LinearGaussian:
    """Scalar stationary AR(1), x_t = c x_{t-1} + sqrt(1 - c^2) e_t: unit marginal variance,
    Cov(x_t, x_s) = c^|t-s|."""
    if not -1 < coefficient < 1:
        raise ValueError(f"the AR(1) coefficient must lie in (-1, 1), got {coefficient}")
    return LinearGaussian(A=((coefficient,),), Q=((1 - coefficient**2,),))


class ExactDenoiser:
    """E[x0_t | noisy tokens it may see] for a linear-Gaussian process, returned as ``target``.

    Tokens are (B, T, D) with D = ``process.dim``; levels (B, T) int64 in [0, K]. ``cond`` is
    ignored. Everything is computed in float64 and returned in the input's dtype.
    """

    def __init__(self, process: LinearGaussian, schedule: NoiseSchedule, target: Target = "v",
                 causal: bool = True):
        self.process, self.schedule, self.target, self.causal = process, schedule, check_target(target), causal
        self._cov: dict[int, Tensor] = {}

    # ---- the streaming protocol ------------------------------------------------------------
    def init_state(self, batch: int) -> State:
        D = self.process.dim
        return torch.zeros(batch, 0, D, dtype=F64), torch.zeros(batch, 0, dtype=torch.long)

    def append(self, x: Tensor, k: Tensor, cond: Tensor | None, state: State) -> State:
        past, past_k = state
        return torch.cat([past.to(x.device), x.double()], 1), torch.cat([past_k.to(k.device), k], 1)

    def repeat_state(self, state: State, n: int) -> State:
        past, past_k = state
        return past.repeat(n, 1, 1), past_k.repeat(n, 1)

    def forward_chunk(self, x: Tensor, k: Tensor, cond: Tensor | None, state: State) -> Tensor:
        """Prediction (B, H, D) for the chunk ``x`` (B, H, D) at levels ``k`` (B, H) after the committed past."""
        past, past_k = state
        if x.ndim != 3 or x.shape[-1] != self.process.dim:
            raise ValueError(f"tokens must be (B, T, {self.process.dim}), got {tuple(x.shape)}")
        y = torch.cat([past.to(x.device), x.double()], 1)                       # (B, n, D)
        levels = torch.cat([past_k.to(k.device), k], 1)                         # (B, n)
        x0 = self.posterior_mean(y, levels, first=past.shape[1])                # (B, H, D)
        a, s = self.schedule.coefficients(k, x0)
        # eps is undefined for a clean token (s = 0); any value gives back x0 = x there.
        eps = torch.where(s > 0, (x.double() - a * x0) / s.clamp_min(1e-300), 0.0)
        return prediction_from(x0, eps, a, s, self.target).to(x.dtype)

    def forward(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.forward_chunk(x, k, cond, self.init_state(x.shape[0]))

    # ---- the Gaussian conditioning ---------------------------------------------------------
    def posterior_mean(self, y: Tensor, levels: Tensor, first: int = 0) -> Tensor:
        """E[x0_t | y_J] (B, n - first, D) for tokens t >= ``first`` of noisy tokens y (B, n, D) float64."""
        B, n, D = y.shape
        rows, group = torch.unique(levels, dim=0, return_inverse=True)          # the sampler sends one row
        out = y.new_empty(B, n - first, D)
        flat = y.reshape(B, n * D)
        for u, row in enumerate(rows):
            members = group == u
            gain = self.gain(row, first).to(y)                                  # (H, D, n D)
            out[members] = torch.einsum("hdj,bj->bhd", gain, flat[members])
        return out

    def gain(self, levels: Tensor, first: int = 0) -> Tensor:
        """Linear map (H, D, n D) from the flattened noisy tokens to E[x0_t], t = first..n-1, for one
        row of levels (n,). Coordinates a token may not see are decoupled (unit variance, no
        covariance) so that every t is one batched solve of the same size."""
        n, D = len(levels), self.process.dim
        cov = self.covariance(n)                                                # (n D, n D)
        ac = self.schedule.alphas_cumprod[levels.cpu()].repeat_interleave(D)     # (n D,)
        a, s2 = ac.sqrt(), 1 - ac
        token = torch.arange(n).repeat_interleave(D)                            # token of each coordinate
        t = torch.arange(first, n)                                              # (H,)
        seen = token[None, :] <= t[:, None] if self.causal else torch.ones(len(t), n * D, dtype=torch.bool)
        obs = a[:, None] * cov * a[None, :] + torch.diag(s2)                    # Cov(y)
        both = seen[:, :, None] & seen[:, None, :]
        M = torch.where(both, obs, torch.eye(n * D, dtype=F64))                 # (H, n D, n D)
        cross = cov.reshape(n, D, n * D)[t] * (a * seen[:, None, :])            # Cov(x0_t, y_J): (H, D, n D)
        return torch.linalg.solve(M, cross.transpose(1, 2)).transpose(1, 2)     # cross M^-1 (M symmetric)

    def covariance(self, n: int) -> Tensor:
        """Prior covariance (n D, n D) of n consecutive clean tokens, cached per n."""
        if n not in self._cov:
            self._cov[n] = self.process.joint_covariance(n)
        return self._cov[n]

