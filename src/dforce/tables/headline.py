"""The README's headline table: one line per claim of the paper, its number next to ours."""

from __future__ import annotations

from pathlib import Path

from ..forecasting.table import headline as forecasting_row
from ..records import MISSING, load, markdown
from ..imitation.table import headline as imitation_row
from ..synthetic.table import headline_rows as synthetic_rows
from ..planning import table as planning


def _planning_rows(root: Path) -> list[list[str]]:
    rows = []
    for env, label, *paper in planning.PAPER:
        rows.append([f"Planning, {label}", "D4RL normalized score, DF with MCG (↑)", paper[3],
                     planning.score(root, env, "df"), f"`results/planning/{env}-df.json`"])
    return rows


def _video_rows(root: Path) -> list[list[str]]:
    rows = []
    for path in sorted((root / "results" / "video").glob("*-df.json")):
        m = (load(path) or {}).get("metrics", {})
        key = f"{max(int(k[:-1]) for k in m.get('horizons', {'1x': 0}))}x"
        stable = m.get("horizons", {}).get(key, {}).get("stable_fraction")
        rows.append([f"Video, {path.stem[:-3]}", f"rollouts stable at {key} the training length (↑)",
                     "no blow-up (qualitative)", MISSING if stable is None else f"{stable:.3f}",
                     f"`results/video/{path.name}`"])
    return rows


def table(root: Path) -> str:
    """Rows: planning (six), forecasting, video, imitation, likelihood, compositional generation."""
    header = ["capability", "metric", "paper", "dforce", "record"]
    rows = [*_planning_rows(root), forecasting_row(root), *_video_rows(root), imitation_row(root),
            *synthetic_rows(root)]
    return markdown(header, rows)
