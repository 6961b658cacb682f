"""Small statistics shared by the evaluations: binomial proportions with their intervals."""

from __future__ import annotations

import math

Z95 = 1.959964          # two-sided 95% normal quantile


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a binomial proportion count / n."""
    if n < 1 or not 0 <= count <= n:
        raise ValueError(f"need n >= 1 and 0 <= count <= n, got count={count}, n={n}")
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at count 0 (or n) the bound is exactly 0 (or 1); the formula leaves a rounding residue
    lo = 0.0 if count == 0 else max(0.0, centre - half)
    hi = 1.0 if count == n else min(1.0, centre + half)
    return lo, hi


def binomial_stderr(count: int, n: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of the proportion count / n."""
    if n < 1 or not 0 <= count <= n:
        raise ValueError(f"need n >= 1 and 0 <= count <= n, got count={count}, n={n}")
    p = count / n
    return math.sqrt(p * (1 - p) / n)
