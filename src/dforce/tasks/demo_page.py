"""The demo's ``index.html``: every picture the demo wrote, with the numbers beside them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

PICTURES = (".png", ".gif")
SECTIONS = (  # (title, sub-folder of the demo output or "" for the top level, what it shows)
    ("Training from scratch", "",
     "A small Diffusion Forcing RNN trained on noisy Van der Pol oscillators: the scheduling matrices "
     "it samples with, a rollout 10x longer than its training sequences (with and without "
     "stabilization) next to real continuations, and its loss curve."),
    ("Planning: Maze2D U-Maze", "planning",
     "One episode with the shipped planner: pyramid scheduling, Monte Carlo Guidance towards the goal "
     "(star) with a cost that also asks to arrive at rest, its own diffused actions executed and "
     "replanned every few steps. The PNG shows the executed path (red) and the plans made along it; "
     "the GIF shows the replanning."),
    ("Forecasting: Exchange", "forecast",
     "The shipped forecaster on the five GluonTS test windows of exchange_rate_nips: 100 sample paths "
     "per window as fan charts (median, 50% and 90% bands) against the truth."),
    ("Video: Moving MNIST", "video",
     "The shipped video model rolled out from 4 real frames far past its training length, "
     "generated (left) next to the ground truth (right, gray once it ends)."),
)


def _rows(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested metrics into (dotted name, value) rows, floats to 4 significant digits."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _rows(value, f"{name}.")
        else:
            rows.append((name, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows


def _section(out: Path, title: str, folder: str, text: str) -> str:
    where = out / folder if folder else out
    pictures = sorted(p for p in where.glob("*") if p.suffix in PICTURES) if where.is_dir() else []
    if not pictures:
        return f"<h2>{html.escape(title)}</h2>\n<p><em>skipped (see the demo's log for why)</em></p>\n"
    imgs = "\n".join(f'<figure><img src="{html.escape(str(p.relative_to(out)))}" alt="{html.escape(p.stem)}">'
                     f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in pictures)
    return f"<h2>{html.escape(title)}</h2>\n<p>{html.escape(text)}</p>\n<div class=pics>\n{imgs}\n</div>\n"


def write_index(out: Path, summary: Path) -> Path:
    """Write ``out/index.html`` from the pictures under ``out`` and the numbers in ``summary``."""
    record = json.loads(Path(summary).read_text())
    table = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                      for k, v in _rows(record["metrics"]))
    body = "".join(_section(out, *s) for s in SECTIONS)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dforce demo</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.4; }}
.pics {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }} img {{ max-width: 520px; border: 1px solid #ccc; image-rendering: pixelated; }}
td {{ padding: 0 1em 0 0; font-family: monospace; }}
</style></head><body>
<h1>dforce demo</h1>
<p>Written by <code>{html.escape(str(record.get("command")))}</code> at commit
<code>{html.escape(str(record.get("git_commit")))}</code> in {record.get("wall_time_s", 0):.0f} s
({html.escape(str(record.get("hardware", {}).get("cpu")))}, {record.get("hardware", {}).get("cpu_count")} cores).</p>
{body}<h2>Numbers</h2>
<p>From <code>summary.json</code> (the same record as the pictures).</p>
<table>
{table}
</table>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path
