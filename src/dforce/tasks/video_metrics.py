"""Video metrics on tensors: per-frame MSE / PSNR / SSIM, pixel statistics, Fréchet distance, divergence.

Videos are (B, T, C, H, W) float tensors with values in [0, 1] (``data_range`` = 1).
Per-frame metrics return (B, T). Pure torch; no files, no plotting.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

SATURATED = 0.98   # a pixel at or above this value counts as saturated (white-out)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.ndim != 5:
        raise ValueError(f"need two videos (B, T, C, H, W) of the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per frame: (B, T, C, H, W) x2 -> (B, T)."""
    _check_pair(x, y)
    return (x.float() - y.float()).pow(2).flatten(2).mean(-1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, floor: float = 1e-10) -> Tensor:
    """Peak signal-to-noise ratio in dB per frame, 10 log10(range^2 / MSE): -> (B, T)."""
    return 10 * torch.log10(data_range**2 / mse(x, y).clamp_min(floor))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalized 2-D Gaussian window (size, size), the outer product of a 1-D one."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r**2 / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Structural similarity (Wang et al. 2004) per frame, averaged over channels: -> (B, T).

    Local means, variances and covariance use a Gaussian window (11 x 11, sigma 1.5) over
    the positions where it fits inside the frame ('valid'); population (biased) moments.
    SSIM = (2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2)),
    C1 = (k1 L)^2, C2 = (k2 L)^2. Equals skimage's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L)``.
    """
    _check_pair(x, y)
    B, T, C, H, W = x.shape
    if min(H, W) < window:
        raise ValueError(f"frames {H}x{W} are smaller than the SSIM window {window}")
    w = gaussian_window(window, sigma).to(x.device, torch.float64)[None, None]        # (1, 1, win, win)
    a = x.double().reshape(B * T * C, 1, H, W)
    b = y.double().reshape(B * T * C, 1, H, W)
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a**2
    var_b = F.conv2d(b * b, w) - mu_b**2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(-1).reshape(B, T, C).mean(-1).float()


def pixel_stats(x: Tensor) -> dict[str, Tensor]:
    """Mean intensity and fraction of saturated pixels (>= SATURATED) per frame: each (B, T)."""
    if x.ndim != 5:
        raise ValueError(f"need a video (B, T, C, H, W), got {tuple(x.shape)}")
    flat = x.float().flatten(2)
    return {"mean": flat.mean(-1), "saturated": (flat >= SATURATED).float().mean(-1)}


# ---- Fréchet distance ------------------------------------------------------------------------

def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F), float64, of features (N, F) with N >= 2."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, F), got {tuple(features.shape)}")
    f = features.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def sqrtm_psd(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (negative
    eigenvalues from round-off clipped to 0): a = V diag(l) V^T -> V diag(sqrt(l)) V^T."""
    a = (a + a.T) / 2
    lam, v = torch.linalg.eigh(a)
    return (v * lam.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2) (Dowson & Landau 1982):

    ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2}), using
    tr((cov1 cov2)^{1/2}) = tr((s cov2 s)^{1/2}) with s = cov1^{1/2}, a symmetric PSD root.
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s = sqrtm_psd(cov1)
    cross = torch.trace(sqrtm_psd(s @ cov2 @ s))
    return float((mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def frechet_features(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to features a (N, F) and b (M, F)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---- divergence ------------------------------------------------------------------------------

def nearest_distance(features: Tensor, reference: Tensor, block: int = 1024) -> Tensor:
    """Euclidean distance from each row of features (N, F) to its nearest row of reference (M, F): (N,)."""
    ref = reference.float()
    return torch.cat([torch.cdist(f.float(), ref).amin(-1) for f in features.split(block)])


def running_mean(d: Tensor, window: int) -> Tensor:
    """Causal moving average over the last ``window`` frames (fewer at the start): (B, T) -> (B, T)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = torch.cat([torch.zeros_like(d[:, :1]), d.cumsum(1)], 1)
    t = torch.arange(1, d.shape[1] + 1, device=d.device)
    lo = (t - window).clamp_min(0)
    return (c[:, t] - c[:, lo]) / (t - lo)


def divergence_threshold(real_scores: Tensor, quantile: float = 0.99) -> float:
    """The ``quantile`` of scores of real data (any shape): scores above it look unlike real data.

    Give per-frame scores to flag single frames, or each real video's maximum score to
    flag videos (the false alarm rate per video is then about 1 - quantile).
    """
    if not 0 < quantile < 1 or real_scores.numel() == 0:
        raise ValueError(f"need a quantile in (0, 1) and some real scores; got {quantile}, {real_scores.numel()}")
    threshold = float(torch.quantile(real_scores.flatten().double(), quantile))
    if threshold <= 0:   # every generated frame would count as diverged (seen with Breakout at 32x32)
        raise ValueError("the divergence threshold is 0: the real held-out frames repeat training frames exactly; "
                         "use data with more varied frames (e.g. another game, or a larger size)")
    return threshold


def first_divergence(scores: Tensor, threshold: float) -> Tensor:
    """Index of the first frame whose score exceeds ``threshold``: (B, T) -> (B,) int64; T when none does."""
    over = scores > threshold
    t = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    return torch.where(over, t, scores.shape[1]).amin(1)


def stable_fraction(first: Tensor, horizon: int) -> float:
    """Fraction of rollouts with no divergence in their first ``horizon`` frames."""
    return float((first >= horizon).float().mean())


def nan_mean(x: Tensor, dim: int = 0) -> list[float]:
    """Mean over ``dim`` as a list of floats, NaN-safe (NaN where every entry is NaN)."""
    m = x.float().nanmean(dim)
    return [float(v) if math.isfinite(float(v)) else float("nan") for v in m]
