"""Helpers shared by the table generators: reading records and formatting cells."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MISSING = "-"


def load(path: Path) -> dict | None:
    """A results record, or None when the file is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def metrics(root: Path, *parts: str) -> dict | None:
    """``metrics`` of ``root/results/<parts>``, or None when there is no such record."""
    return (load(root.joinpath("results", *parts)) or {}).get("metrics")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table (with a trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_err(mean: float, err: float, digits: int = 1, n: int | None = None) -> str:
    """'12.3 ± 1.2' or, with ``n``, '12.3 ± 1.2 (100)'."""
    cell = f"{mean:.{digits}f} ± {err:.{digits}f}"
    return cell if n is None else f"{cell} ({n})"
