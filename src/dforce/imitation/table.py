"""Imitation with memory: the corruption matrix as tables (``results/imitation/matrix.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import MISSING, load, markdown

LABELS = {"df": "`df`", "teacher_forcing": "`teacher_forcing`", "memoryless": "`memoryless`"}
FLAG_USE = {("df", True): "flagged steps blanked inside the token", ("df", False): "told nothing",
            ("teacher_forcing", True): "holds the last good observation", ("teacher_forcing", False): "told nothing",
            ("memoryless", True): "holds the last good observation", ("memoryless", False): "told nothing"}
PAPER = {("df", True): "0.80 → 0.76", ("teacher_forcing", False): "- → 0.48", ("memoryless", False): "fails"}
RECORD = ("results", "imitation", "matrix.json")


def _cells(root: Path) -> list[dict[str, Any]]:
    record = load(root.joinpath(*RECORD))
    return [] if not record else record["metrics"]["cells"]


def _rate(c: dict[str, Any]) -> str:
    lo, hi = c["ci95"]
    return f"{c['success']:.3f} [{lo:.2f}, {hi:.2f}]"


def table(root: Path) -> str:
    """A row per method and flag use: the clean success, then the worst kind's success at each rate."""
    cells = _cells(root)
    rates = sorted({c["rate"] for c in cells if c["kind"] != "none"})
    header = ["method", "told which steps are corrupted", "paper (clean → corrupted)", "clean",
              *(f"{r:.0%} corrupted, worst kind" for r in rates)]
    if not cells:
        return markdown(header, [[MISSING] * len(header)])
    rows = []
    for method in LABELS:
        clean = next((c for c in cells if c["method"] == method and c["kind"] == "none"), None)
        for flagged in (True, False):
            row = [LABELS[method], ("yes: " if flagged else "no: ") + FLAG_USE[(method, flagged)],
                   PAPER.get((method, flagged), ""), _rate(clean) if clean else MISSING]
            for r in rates:
                group = [c for c in cells if c["method"] == method and c["flagged"] == flagged and c["rate"] == r]
                worst = min(group, key=lambda c: c["success"]) if group else None
                every = len(group) > 1 and len({c["success"] for c in group}) == 1
                row.append(MISSING if not worst else f"{_rate(worst)} ({'every kind' if every else worst['kind']})")
            if clean or len(row) > 4:
                rows.append(row)
    return markdown(header, rows)


def matrix(root: Path) -> str:
    """Every cell: a row per kind, method and flag use; a column per rate (success [95% interval])."""
    cells = _cells(root)
    rates = sorted({c["rate"] for c in cells if c["kind"] != "none"})
    header = ["kind", "method", "told", *(f"{r:g}" for r in rates)]
    if not cells:
        return markdown(header, [[MISSING] * len(header)])
    by = {(c["kind"], c["method"], c["flagged"], c["rate"]): c for c in cells}
    rows = []
    for kind in dict.fromkeys(c["kind"] for c in cells if c["kind"] != "none"):
        for method in LABELS:
            for flagged in (True, False):
                got = [by.get((kind, method, flagged, r)) for r in rates]
                if any(got):
                    rows.append([kind, LABELS[method], "yes" if flagged else "no",
                                 *(_rate(c) if c else MISSING for c in got)])
    return markdown(header, rows)


def headline(root: Path) -> list[str]:
    """The README headline row: flagged df clean, and at 30% and 50% corrupted (worst kind)."""
    record = load(root.joinpath(*RECORD))
    h = {} if not record else record["metrics"].get("headline", {})
    keys = ("df_clean", "df_flagged_worst_p30", "df_flagged_worst_p50")
    ours = MISSING if not all(k in h for k in keys) else " → ".join(f"{h[k]:.2f}" for k in keys)
    return ["Imitation with memory", "success, clean → 30% → 50% of observations corrupted, worst of 6 kinds (↑)",
            "0.80 → 0.76 (real robot, distractors)", ours, "`results/imitation/matrix.json`"]
