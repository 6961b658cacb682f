"""Video: stability far past the training length, and quality within it, per dataset and method."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, load, markdown

METHODS = ("df", "df_nostab", "tf", "fs")


def _num(value: float | None, fmt: str) -> str:
    return MISSING if value is None else format(value, fmt)


def _row(stem: str, record: dict) -> list[str]:
    m, p = record["metrics"], record.get("protocol", {})
    hz = m["horizons"]
    first = hz.get("1x", {})
    last_key = f"{max(p.get('horizon_multiples', [1]))}x"
    stable = ", ".join(f"{k}: {_num(v['stable_fraction'], '.3f')}" for k, v in hz.items())
    speed = m.get("speed") or {}
    speed_cell = MISSING if not speed else f"{speed['streaming_frames_per_s']:.1f} ({speed['speedup']:.1f}x)"
    return [f"`{stem}`", str(p.get("rollouts", MISSING)), f"{p.get('train_length')} → {p.get('horizon')}", stable,
            _num(first.get("psnr_mean"), ".2f"), _num(first.get("ssim_mean"), ".3f"),
            _num(hz[last_key].get("fd_last_bin"), ".2f"), _num(m.get("fd", {}).get("real"), ".2f"),
            speed_cell]


def _order(path: Path) -> tuple[str, int]:
    """Sort records by dataset, then in METHODS order (unknown methods last)."""
    dataset, _, method = path.stem.rpartition("-")
    return dataset, METHODS.index(method) if method in METHODS else len(METHODS)


def table(root: Path) -> str:
    """One row per results/video/<dataset>-<method>.json, DF first."""
    header = ["record", "rollouts", "train → rolled-out frames", "stable fraction at multiples of the training length",
              "PSNR (1x)", "SSIM (1x)", "Fréchet, last bin", "Fréchet, real floor", "frames/s streaming (vs recompute)"]
    paths = sorted((root / "results" / "video").glob("*.json"), key=_order)
    rows = [_row(p.stem, r) for p in paths if (r := load(p)) and "horizons" in r.get("metrics", {})]
    return markdown(header, rows)
