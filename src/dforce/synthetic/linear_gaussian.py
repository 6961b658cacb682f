"""A stationary linear-Gaussian AR(1) process with exact log-likelihoods.

``x_t = A x_{t-1} + w_t`` with ``w_t ~ N(0, Q)`` and ``x_1 ~ N(0, P)``, where ``P`` is
the stationary covariance, ``P = A P A^T + Q`` (discrete Lyapunov equation). Every
finite window is jointly Gaussian with ``Cov(x_t, x_s) = A^{t-s} P`` for ``t >= s``,
so the per-token conditionals log p(x_t | x_{<t}) = log N(x_t; A x_{t-1}, Q) (first
token: log N(x_1; 0, P)) and the joint density are both exact. This is the reference
against which likelihood bounds (``dforce.diffusion.likelihood``) are checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

F64 = torch.float64


@dataclass(frozen=True)
class LinearGaussian:
    """Parameters of the AR(1) process: ``A`` (D, D) with spectral radius < 1, ``Q`` (D, D) SPD.

    Stored as nested tuples so the dataclass stays frozen and hashable; tensors come
    from :meth:`transition_matrix`, :meth:`noise_cov` and :meth:`stationary_cov` (float64).
    """

    A: tuple[tuple[float, ...], ...]
    Q: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        A, Q = self.transition_matrix(), self.noise_cov()
        D = A.shape[0]
        if A.shape != (D, D) or Q.shape != (D, D) or D < 1:
            raise ValueError(f"A and Q must be square of the same size, got {tuple(A.shape)} and {tuple(Q.shape)}")
        radius = torch.linalg.eigvals(A).abs().max().item()
        if radius >= 1:
            raise ValueError(f"A must be stable (spectral radius < 1), got {radius:.4f}")
        if not torch.allclose(Q, Q.T) or torch.linalg.eigvalsh(Q).min() <= 0:
            raise ValueError("Q must be symmetric positive definite")

    @classmethod
    def default(cls) -> "LinearGaussian":
        """D = 2: a rotation by 0.5 rad per step with decay 0.9 (damped oscillation,
        period ~12.6 steps) and correlated driving noise (correlation 0.5)."""
        r, theta = 0.9, 0.5
        c, s = r * math.cos(theta), r * math.sin(theta)
        return cls(A=((c, -s), (s, c)), Q=((0.10, 0.04), (0.04, 0.064)))

    @property
    def dim(self) -> int:
        return len(self.A)

    def transition_matrix(self) -> Tensor:
        return torch.tensor(self.A, dtype=F64)

    def noise_cov(self) -> Tensor:
        return torch.tensor(self.Q, dtype=F64)

    def stationary_cov(self) -> Tensor:
        """P solving P = A P A^T + Q, via vec(P) = (I - A kron A)^{-1} vec(Q)."""
        A, Q = self.transition_matrix(), self.noise_cov()
        D = A.shape[0]
        P = torch.linalg.solve(torch.eye(D * D, dtype=F64) - torch.kron(A, A), Q.reshape(-1)).reshape(D, D)
        return (P + P.T) / 2

    def conditional(self, prev: Tensor | None) -> tuple[Tensor, Tensor]:
        """Mean (n, D) and covariance (D, D) of x_t given x_{t-1} = prev (n, D); prev None: x_1."""
        if prev is None:
            return torch.zeros(1, self.dim, dtype=F64), self.stationary_cov()
        return prev.double() @ self.transition_matrix().T, self.noise_cov()

    def sample(self, n: int, length: int, seed: int = 0) -> Tensor:
        """(n, length, D) float32 sequences, deterministic for ``seed``."""
        if n < 1 or length < 1:
            raise ValueError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
        g = torch.Generator().manual_seed(seed)
        A = self.transition_matrix()
        L_P, L_Q = torch.linalg.cholesky(self.stationary_cov()), torch.linalg.cholesky(self.noise_cov())
        out = torch.empty(n, length, self.dim, dtype=F64)
        out[:, 0] = torch.randn(n, self.dim, generator=g, dtype=F64) @ L_P.T
        for t in range(1, length):
            out[:, t] = out[:, t - 1] @ A.T + torch.randn(n, self.dim, generator=g, dtype=F64) @ L_Q.T
        return out.float()

    def exact_log_likelihood(self, x: Tensor) -> Tensor:
        """Per-token log p(x_t | x_{<t}) (n, length) float64 nats for x (n, length, D)."""
        self._check(x)
        x = x.double()
        first = MultivariateNormal(torch.zeros(self.dim, dtype=F64), self.stationary_cov()).log_prob(x[:, :1])
        rest = MultivariateNormal(x[:, :-1] @ self.transition_matrix().T, self.noise_cov()).log_prob(x[:, 1:])
        return torch.cat([first, rest], 1)

    def joint_covariance(self, length: int) -> Tensor:
        """(length * D, length * D) covariance of the flattened window: block (t, s) = A^{t-s} P, t >= s."""
        A, P, D = self.transition_matrix(), self.stationary_cov(), self.dim
        powers = [torch.eye(D, dtype=F64)]
        for _ in range(length - 1):
            powers.append(A @ powers[-1])
        cov = torch.empty(length * D, length * D, dtype=F64)
        for t in range(length):
            for s in range(t + 1):
                block = powers[t - s] @ P
                cov[t * D : (t + 1) * D, s * D : (s + 1) * D] = block
                cov[s * D : (s + 1) * D, t * D : (t + 1) * D] = block.T
        return cov

    def joint_log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x_{1:T}) (n,) float64 from the full joint Gaussian (independent of the factorisation)."""
        self._check(x)
        n, T, D = x.shape
        cov = self.joint_covariance(T)
        return MultivariateNormal(torch.zeros(T * D, dtype=F64), cov).log_prob(x.double().reshape(n, T * D))

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.dim or x.shape[1] < 1:
            raise ValueError(f"x must be (n, length, {self.dim}), got {tuple(x.shape)}")


def linear_gaussian(n: int, length: int, seed: int = 0, noise: float = 0.0) -> Tensor:
    """(n, length, 2) float32 draws of ``LinearGaussian.default()``.

    The process has no observation noise (its exact likelihood is the point), so
    ``noise`` must be 0; it is accepted for the common generator signature.
    """
    if noise != 0:
        raise ValueError(f"linear_gaussian has no observation noise: noise must be 0, got {noise}")
    if n < 1 or length < 2:
        raise ValueError(f"need n>=1, length>=2; got n={n}, length={length}")
    return LinearGaussian.default().sample(n, length, seed)
