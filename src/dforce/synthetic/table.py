"""The synthetic experiments' tables: likelihood (ELBO against the exact log-likelihood) and the
cross experiment (class fractions against the ideal sampler's)."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, load, markdown, metrics
from .cross import CLASSES

MODELS = (("df", "Diffusion Forcing"), ("tf", "teacher forcing"), ("fs", "full sequence"))


def likelihood(root: Path) -> str:
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


FORCING_ORDER = ("independent", "teacher_forcing", "full_sequence")
CONTEXT_ORDER = {1: 0, 2: 1, "all": 2}


def _share(cls: dict) -> str:
    """'0.488 [0.457, 0.519]' (fraction of trajectories, 95% Wilson interval)."""
    lo, hi = cls["ci95"]
    return f"{cls['fraction']:.3f} [{lo:.3f}, {hi:.3f}]"


def compositional(root: Path) -> str:
    """One row per record ``results/compositional/cross-*.json``: method, context, class shares, ideal."""
    header = ["method", "context", "scheduling", "trajectories", *CLASSES, "ideal (diagonal / stitched / other)",
              "distance to ideal"]
    records = [r for r in (load(p) for p in sorted((root / "results" / "compositional").glob("cross-*.json"))) if r]

    def order(record: dict) -> tuple:
        p = record.get("protocol", {})
        forcing = p.get("forcing")
        return (FORCING_ORDER.index(forcing) if forcing in FORCING_ORDER else 9, p.get("name", ""),
                CONTEXT_ORDER.get(p.get("context"), 9))

    rows = []
    for record in sorted(records, key=order):
        p, m = record["protocol"], record["metrics"]
        ideal = m.get("ideal")
        expected = " / ".join(f"{ideal[c]:.2f}" for c in CLASSES) if ideal else MISSING
        context = "whole past" if p["context"] == "all" else f"last {p['context']}"
        distance = m.get("distance_to_ideal")
        rows.append([f"{p['method']} (`{p['name']}`)", context, p["scheduling"], str(m["samples"]),
                     *(_share(m[c]) for c in CLASSES), expected, MISSING if distance is None else f"{distance:.3f}"])
    return markdown(header, rows)


def _compositional_row(root: Path) -> list[str]:
    """DF's stitched share with a one-token context and diagonal share with memory (ideal 0.50 / 1.00)."""
    folder = root / "results" / "compositional"
    short, memory = load(folder / "cross-df-context1.json"), load(folder / "cross-df-memory.json")
    ours = MISSING
    if short and memory:
        ours = (f"{short['metrics']['stitched']['fraction']:.2f} stitched / "
                f"{memory['metrics']['diagonal']['fraction']:.2f} diagonal")
    return ["Compositional generation (cross)", "without memory: stitched; with memory: diagonal (ideal 0.50 / 1.00)",
            "stitches without memory (qualitative, Fig. 7)", ours, "`results/compositional/cross-df-*.json`"]


def _likelihood_row(root: Path) -> list[str]:
    """DF's ELBO gap at the longest length."""
    m = metrics(root, "likelihood", "linear_gaussian.json")
    ours = MISSING
    if m and "df" in m["models"]:
        last = m["models"]["df"]["by_length"][-1]
        ours = f"gap {last['gap']:.3f} ± {last['gap_se']:.3f} at {last['length']} tokens"
    return ["ELBO vs exact likelihood", "exact − ELBO, nats/dim (≥ 0, small)", "(a bound, not measured)", ours,
            "`results/likelihood/linear_gaussian.json`"]


def headline_rows(root: Path) -> list[list[str]]:
    """The README headline's lines of this domain: likelihood and compositional generation."""
    return [_likelihood_row(root), _compositional_row(root)]
