"""Likelihood: ELBO of each trained model against the exact log-likelihood, per subsequence length."""

from __future__ import annotations

from pathlib import Path

from .common import MISSING, markdown, metrics

MODELS = (("df", "Diffusion Forcing"), ("tf", "teacher forcing"), ("fs", "full sequence"))


def table(root: Path) -> str:
    """nats/dim of the first L tokens: exact, then each model's ELBO (gap = exact - ELBO ± s.e.)."""
    m = metrics(root, "likelihood", "linear_gaussian.json")
    header = ["first L tokens", "exact", *(label for _, label in MODELS)]
    if not m:
        return markdown(header, [])
    rows = []
    for i, length in enumerate(m["lengths"]):
        row = [str(length), f"{m['exact_by_length'][i]:.3f}"]
        for key, _ in MODELS:
            if key not in m["models"]:
                row.append(MISSING)
                continue
            r = m["models"][key]["by_length"][i]
            row.append(f"{r['elbo']:.3f} (gap {r['gap']:.3f} ± {r['gap_se']:.3f})")
        rows.append(row)
    return markdown(header, rows)
