"""Results tables in the docs, generated from ``results/**/*.json``.

A markdown file holds a generated table between two markers::

    <!-- table:planning -->
    | ... the table ... |
    <!-- /table:planning -->

``dforce tables`` rewrites every such block in README.md and docs/*.md from the results
files; ``dforce tables --check`` only reports stale blocks and exits 1 when there are any
(a test runs it, so a table cannot drift from the numbers behind it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)

# Paper Table 1 (REFERENCE.md): results-file stem, row label, then Diffuser* (PD), Diffuser with
# diffused actions, DF w/o MCG, DF.
PAPER_PLANNING = (
    ("maze2d-umaze", "Maze2D U-Maze", "113.9 ± 3.1", "6.3 ± 2.1", "110.1 ± 3.9", "116.7 ± 2.0"),
    ("maze2d-medium", "Maze2D Medium", "121.5 ± 2.7", "13.5 ± 2.3", "136.1 ± 10.2", "149.4 ± 7.5"),
    ("maze2d-large", "Maze2D Large", "123.0 ± 6.4", "6.3 ± 2.1", "142.8 ± 5.6", "159.0 ± 2.7"),
    ("maze2d-umaze-multi", "Multi2D U-Maze", "128.9 ± 1.8", "32.8 ± 1.7", "107.7 ± 4.9", "119.1 ± 4.0"),
    ("maze2d-medium-multi", "Multi2D Medium", "127.2 ± 3.4", "22.0 ± 2.7", "145.6 ± 6.5", "152.3 ± 9.9"),
    ("maze2d-large-multi", "Multi2D Large", "132.1 ± 5.8", "6.9 ± 1.7", "129.8 ± 1.5", "167.1 ± 2.7"),
)
PLANNING_METHODS = ("df", "df_no_mcg", "df_ar", "diffuser_actions", "diffuser_pd")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def planning(root: Path = ROOT) -> str:
    """Maze2D normalized scores (mean ± standard error, episodes) per env and method, next to the paper's."""
    head = ("| env | paper Diffuser* (PD) | paper Diffuser, diffused actions | paper DF w/o MCG | paper DF | "
            + " | ".join(f"`{m}`" for m in PLANNING_METHODS) + " |")
    lines = [head, "|" + "---|" * (5 + len(PLANNING_METHODS))]
    for env, label, *paper in PAPER_PLANNING:
        cells = []
        for method in PLANNING_METHODS:
            record = _load(root / "results" / "planning" / f"{env}-{method}.json")
            m = (record or {}).get("metrics")
            cells.append("-" if not m else f"{m['score_mean']:.1f} ± {m['score_stderr']:.1f} ({m['episodes']})")
        lines.append(f"| {label} | " + " | ".join(paper) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[Path], str]] = {"planning": planning}


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def render(text: str, root: Path = ROOT) -> str:
    """``text`` with every known table block regenerated (unknown names raise ValueError)."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        return match.group(1) + TABLES[name](root) + match.group(4)
    return BLOCK.sub(fill, text)


def update(root: Path = ROOT, check: bool = False) -> list[Path]:
    """Regenerate (or, with ``check``, only find) the documents whose tables are stale; returns them."""
    stale = []
    for path in documents(root):
        text = path.read_text()
        new = render(text, root)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale
