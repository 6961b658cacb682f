"""Maze2D planning: normalized scores per env and method next to the paper's Table 1."""

from __future__ import annotations

from pathlib import Path

from ..records import MISSING, markdown, mean_err, metrics

# Paper Table 1 (REFERENCE.md): results-file stem, row label, then Diffuser* (PD), Diffuser with
# diffused actions, DF w/o MCG, DF.
PAPER = (
    ("maze2d-umaze", "Maze2D U-Maze", "113.9 ± 3.1", "6.3 ± 2.1", "110.1 ± 3.9", "116.7 ± 2.0"),
    ("maze2d-medium", "Maze2D Medium", "121.5 ± 2.7", "13.5 ± 2.3", "136.1 ± 10.2", "149.4 ± 7.5"),
    ("maze2d-large", "Maze2D Large", "123.0 ± 6.4", "6.3 ± 2.1", "142.8 ± 5.6", "159.0 ± 2.7"),
    ("maze2d-umaze-multi", "Multi2D U-Maze", "128.9 ± 1.8", "32.8 ± 1.7", "107.7 ± 4.9", "119.1 ± 4.0"),
    ("maze2d-medium-multi", "Multi2D Medium", "127.2 ± 3.4", "22.0 ± 2.7", "145.6 ± 6.5", "152.3 ± 9.9"),
    ("maze2d-large-multi", "Multi2D Large", "132.1 ± 5.8", "6.9 ± 1.7", "129.8 ± 1.5", "167.1 ± 2.7"),
)
METHODS = ("df", "df_no_mcg", "df_ar", "diffuser_actions", "diffuser_pd")


def score(root: Path, env: str, method: str) -> str:
    """'mean ± stderr (episodes)' of ``results/planning/<env>-<method>.json``, or '-'."""
    m = metrics(root, "planning", f"{env}-{method}.json")
    return MISSING if not m else mean_err(m["score_mean"], m["score_stderr"], n=m["episodes"])


def table(root: Path) -> str:
    """D4RL normalized scores (mean ± standard error, episodes) per env and method, next to the paper's."""
    header = ["env", "paper Diffuser* (PD)", "paper Diffuser, diffused actions", "paper DF w/o MCG", "paper DF",
              *(f"`{m}`" for m in METHODS)]
    rows = [[label, *paper, *(score(root, env, m) for m in METHODS)] for env, label, *paper in PAPER]
    return markdown(header, rows)


def _why_cells(m: dict | None) -> list[str]:
    """score, if-stay score, reach, first arrival, time in goal after arrival of one record (or '-')."""
    if not m or "first_arrival_mean" not in m:
        return [MISSING] * 5
    arrival, dwell = m["first_arrival_mean"], m["time_in_goal_after_arrival"]
    return [mean_err(m["score_mean"], m["score_stderr"]), mean_err(m["if_stay_score_mean"], m["if_stay_score_stderr"]),
            f"{m['reached_goal_fraction']:.0%}", MISSING if arrival != arrival else f"{arrival:.0f}",
            MISSING if dwell != dwell else f"{dwell:.0%}"]


def why(root: Path) -> str:
    """Per env and method: the raw score beside the if-stay score, reach rate, first arrival, time in goal."""
    header = ["env", "method", "score", "if-stay score", "reached", "first arrival (step)", "in goal after arrival"]
    rows = [[label, f"`{method}`", *_why_cells(metrics(root, "planning", f"{env}-{method}.json"))]
            for env, label, *_ in PAPER for method in METHODS]
    return markdown(header, [r for r in rows if r[2] != MISSING])
