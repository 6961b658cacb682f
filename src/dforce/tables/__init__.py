"""Results tables in the docs, generated from ``results/**/*.json``.

A markdown file holds a generated block between two markers::

    <!-- table:planning -->
    | ... the table ... |
    <!-- /table:planning -->

``dforce tables`` rewrites every such block in README.md and docs/*.md from the results
files; ``dforce tables --check`` only reports stale blocks and exits 1 when there are any
(a test runs it, so a table cannot drift from the numbers behind it). Each domain's
generator lives with its domain (or in this package for the domains not yet moved) and
takes the project root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from ..imitation import table as imitation
from ..synthetic import table as synthetic
from ..forecasting import table as forecasting
from ..planning import table as planning
from . import api, efficiency, headline, speed, video
from ..records import ROOT

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)

TABLES: dict[str, Callable[[Path], str]] = {
    "headline": headline.table,
    "planning": planning.table,
    "planning-why": planning.why,
    "forecasting": forecasting.table,
    "forecasting-paired": forecasting.paired,
    "forecasting-paired-ensemble": forecasting.paired_ensemble,
    "forecasting-paper": forecasting.paper_protocol,
    "likelihood": synthetic.likelihood,
    "compositional": synthetic.compositional,
    "imitation": imitation.table,
    "imitation-matrix": imitation.matrix,
    "video": video.table,
    "speed": speed.table,
    "efficiency": efficiency.table,
    "presets": efficiency.presets,
    "api": api.reference,
}


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def render(text: str, root: Path = ROOT) -> str:
    """``text`` with every known block regenerated (unknown names raise ValueError)."""
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
