"""Compositional generation on the cross data: fractions of diagonal / stitched / other trajectories."""

from __future__ import annotations

from pathlib import Path

from .common import markdown, load

CLASSES = ("diagonal", "stitched", "other")


def fraction(cls: dict) -> str:
    """'0.088 ± 0.013' (fraction of samples, binomial standard error)."""
    return f"{cls['fraction']:.3f} ± {cls['stderr']:.3f}"


def table(root: Path) -> str:
    """One row per record in results/compositional and sampling mode."""
    header = ["record", "model", "plan / executed tokens", "forget", "mode", "samples", *CLASSES]
    rows = []
    for path in sorted((root / "results" / "compositional").glob("*.json")):
        record = load(path) or {}
        p = record.get("protocol", {})
        for mode, m in record.get("metrics", {}).items():
            rows.append([f"`{path.stem}`", f"`{p.get('checkpoint', '?')}`", f"{p.get('horizon')} / {p.get('execute')}",
                         str(p.get("forget")), mode, str(p.get("samples_per_mode")), *(fraction(m[c]) for c in CLASSES)])
    return markdown(header, rows)
