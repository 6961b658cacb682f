"""Forecasting tables in the docs, from ``results/forecasting/<dataset>-backtest.json`` and the paper-protocol record.

* ``forecasting``: backtest CRPS-sum (seed mean, 95% bootstrap interval over windows and
  seeds) of every method on every dataset, best per dataset in bold;
* ``forecasting-paired``: CRPS-sum(df) - CRPS-sum(method), 95% interval; "✓" where the
  whole interval lies below zero (df better), "✗" where it lies above; ``forecasting-paired-ensemble``
  the same for ``df_ensemble`` against the baselines;
* ``forecasting-paper``: the paper's protocol (true previous values fed at every step)
  next to the honest numbers, on Exchange's 5 standard test windows;
* :func:`headline`: the README's forecasting row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import MISSING, load, markdown

DATASETS = (("exchange_rate_nips", "Exchange (B)"), ("etth1", "ETTh1 (h)"), ("etth2", "ETTh2 (h)"),
            ("vic_elec_daily", "Victoria electricity (D)"), ("us_gasoline", "US gasoline (W)"),
            ("us_employment", "US employment (MS)"))
METHODS = (
    ("df", "**df** (Diffusion Forcing)"),
    ("tf", "tf (teacher forcing, TimeGrad-like)"),
    ("fs", "fs (full sequence)"),
    ("df_ensemble", "df_ensemble (the 5 seeds' df models together)"),
    ("deepar", "deepar (GluonTS, tuned on validation)"),
    ("last_value", "last value"),
    ("random_walk", "random walk, independent Gaussian"),
    ("random_walk_correlated", "random walk, correlated Gaussian"),
    ("random_walk_bootstrap", "random walk, resampled step vectors"),
    ("seasonal_naive", "seasonal naive"),
)
PAPER = "0.003 ± 0.001"   # REFERENCE.md, paper Table 2 (Exchange)


def _record(root: Path, dataset: str) -> dict[str, Any] | None:
    return load(root / "results" / "forecasting" / f"{dataset}-backtest.json")


def _present(root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    return [(ds, label, r) for ds, label in DATASETS if (r := _record(root, ds))]


def _interval(v: dict[str, Any], digits: int = 4, signed: bool = False) -> str:
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(v['mean'])} [{f.format(v['ci95'][0])}, {f.format(v['ci95'][1])}]"


def table(root: Path) -> str:
    """Rows: methods; columns: datasets with a backtest record."""
    present = _present(root)
    if not present:
        return markdown(["method"], [[MISSING]])
    header = ["method", *(f"{label}, {r['metrics']['windows']} windows × {r['metrics']['seeds']} seeds"
                          for _, label, r in present)]
    rows = []
    for method, label in METHODS:
        cells = []
        for _, _, r in present:
            scores = r["metrics"]["crps_sum"]
            if method not in scores:
                cells.append(MISSING)
                continue
            best = min(scores, key=lambda m: scores[m]["mean"]) == method
            cell = _interval(scores[method])
            cells.append(f"**{cell}**" if best else cell)
        rows.append([label, *cells])
    return markdown(header, rows)


BASELINES = ("deepar", "last_value", "random_walk", "random_walk_correlated", "random_walk_bootstrap",
             "seasonal_naive")


def paired(root: Path) -> str:
    """Rows: every other method; columns: datasets; cells: df - method with its interval and verdict."""
    return _paired_table(root, "df", lambda m: m["paired"], [m for m, _ in METHODS[1:]])


def paired_ensemble(root: Path) -> str:
    """The same for the ensemble of the seeds' DF models against the baselines."""
    return _paired_table(root, "df_ensemble", lambda m: m.get("paired_other", {}).get("df_ensemble", {}), BASELINES)


def _paired_table(root: Path, reference: str, pairs_of: Any, compared: Any) -> str:
    present = _present(root)
    if not present:
        return markdown([f"{reference} − baseline"], [[MISSING]])
    labels = dict(METHODS)
    header = [f"{reference} − method (CRPS-sum)", *(label for _, label, _ in present)]
    rows = []
    for method in compared:
        cells = []
        for _, _, r in present:
            pair = pairs_of(r["metrics"]).get(method)
            cells.append(MISSING if pair is None else f"{_interval(pair, 5, signed=True)} {verdict(pair)}")
        rows.append([labels[method], *cells])
    wins = []
    for _, _, r in present:
        pairs = [p for m, p in pairs_of(r["metrics"]).items() if m in BASELINES]
        wins.append(f"{sum(verdict(p) == '✓' for p in pairs)} of {len(pairs)}")
    rows.append([f"**baselines {reference} beats (interval below 0)**", *wins])
    return markdown(header, rows)


def verdict(pair: dict[str, Any]) -> str:
    low, high = pair["ci95"]
    return "✓" if high < 0 else "✗" if low > 0 else "≈"


def paper_protocol(root: Path) -> str:
    """The paper's protocol against the honest one on Exchange's 5 standard test windows."""
    rows = [["paper, DF (Table 2)", "true previous value at every step", PAPER]]
    for method in ("df", "random_walk"):
        r = load(root / "results" / "forecasting" / f"exchange_rate_nips-{method}-paper-protocol.json")
        rows.append([f"dforce, {method}", "true previous value at every step (`--protocol paper`)",
                     MISSING if not r else _mean_std(r["metrics"]["crps_sum"])])
    backtest = _record(root, "exchange_rate_nips")
    for method in ("df", "random_walk"):
        v = (backtest or {}).get("metrics", {}).get("test_windows", {}).get(method)
        rows.append([f"dforce, {method}", "honest: 30 steps from the last observed value",
                     MISSING if not v else _mean_std(v["crps_sum"])])
    return markdown(["forecaster", "what each step is conditioned on", "CRPS-sum, 5 test windows"], rows)


def _mean_std(v: dict[str, float]) -> str:
    return f"{v['mean']:.4f} ± {v['std']:.4f}"


def headline(root: Path) -> list[str]:
    """The README's forecasting row: the honest Exchange backtest beside the paper's number."""
    r = _record(root, "exchange_rate_nips")
    if not r:
        return ["Forecasting, Exchange", "CRPS-sum (↓)", PAPER, MISSING, MISSING]
    m = r["metrics"]
    best = min((k for k in m["paired"] if k in BASELINES), key=lambda k: m["crps_sum"][k]["mean"])
    ours = (f"{m['crps_sum']['df']['mean']:.4f} honest ({m['windows']}-window backtest; best baseline {best} "
            f"{m['crps_sum'][best]['mean']:.4f}, paired {_interval(m['paired'][best], 5, signed=True)})")
    paper = load(root / "results" / "forecasting" / "exchange_rate_nips-df-paper-protocol.json")
    if paper:
        ours += f"; {paper['metrics']['crps_sum_mean']:.4f} under the paper's protocol"
    return ["Forecasting, Exchange", "CRPS-sum (↓)", f"{PAPER} (true previous values fed)", ours,
            "`results/forecasting/exchange_rate_nips-backtest.json`"]
