"""Generated results tables: the docs are current, and a changed result makes them stale."""

import importlib.util
import json

import pytest

from dforce import tables
from dforce.cli import main

# The API reference (docs/api.md) imports every public module, the GluonTS adapter included.
needs_gluonts = pytest.mark.skipif(importlib.util.find_spec("gluonts") is None,
                                   reason="the API reference imports dforce.forecasting.gluonts_api (gluonts)")


@needs_gluonts
def test_docs_tables_are_current():
    assert tables.update(check=True) == [], "run `dforce tables` after changing results/"


def test_a_new_result_fills_its_cell_and_staleness_is_detected(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "planning.md"
    doc.write_text("intro\n<!-- table:planning -->\nold\n<!-- /table:planning -->\nafter\n")
    assert tables.update(tmp_path, check=True) == [doc]
    assert doc.read_text().count("old") == 1                       # check mode writes nothing
    (tmp_path / "results" / "planning").mkdir(parents=True)
    (tmp_path / "results" / "planning" / "maze2d-medium-multi-df_ar.json").write_text(
        json.dumps({"metrics": {"score_mean": 12.345, "score_stderr": 1.25, "episodes": 100}}))
    assert tables.update(tmp_path) == [doc]
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Multi2D Medium"))
    assert row.split(" | ")[7] == "12.3 ± 1.2 (100)"              # the df_ar column
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert tables.update(tmp_path, check=True) == []


@needs_gluonts
def test_unknown_table_and_cli_check(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="unknown table"):
        tables.render("<!-- table:nope -->\nx\n<!-- /table:nope -->", tmp_path)
    assert main(["tables", "--check"]) == 0


def test_every_domain_table_reads_its_records(tmp_path):
    results = tmp_path / "results"
    (results / "forecasting").mkdir(parents=True)
    score = {"df": {"mean": 0.18, "ci95": [0.16, 0.2]}, "tf": {"mean": 0.19487, "ci95": [0.17, 0.21]},
             "seasonal_naive": {"mean": 0.23, "ci95": [0.2, 0.27]}}
    paired = {"tf": {"mean": -0.015, "ci95": [-0.02, 0.004]}, "seasonal_naive": {"mean": -0.05, "ci95": [-0.08, -0.03]}}
    (results / "forecasting" / "etth1-backtest.json").write_text(json.dumps(
        {"metrics": {"windows": 36, "seeds": 5, "crps_sum": score, "paired": paired}}))
    row = next(r for r in tables.forecasting.table(tmp_path).splitlines() if r.startswith("| tf "))
    assert row.split(" | ")[1] == "0.1949 [0.1700, 0.2100] |"            # the only dataset with a record
    assert "**0.1800 [0.1600, 0.2000]**" in tables.forecasting.table(tmp_path)   # the best in bold
    pairs = tables.forecasting.paired(tmp_path)
    assert "-0.05000 [-0.08000, -0.03000] ✓" in pairs and "-0.01500 [-0.02000, +0.00400] ≈" in pairs
    assert "| 1 of 1 |" in pairs                                  # tf is not a baseline
    (results / "imitation").mkdir()
    cell = {"method": "df", "kind": "zeros", "rate": 0.3, "flagged": True, "success": 0.9, "ci95": [0.85, 0.94]}
    clean = {**cell, "kind": "none", "rate": 0.0, "flagged": False, "success": 0.99, "ci95": [0.96, 1.0]}
    worse = {**cell, "kind": "outlier", "success": 0.8, "ci95": [0.74, 0.85]}
    (results / "imitation" / "matrix.json").write_text(json.dumps(
        {"metrics": {"cells": [clean, cell, worse], "headline": {"df_clean": 0.99, "df_flagged_worst_p30": 0.8}}}))
    row = next(r for r in tables.imitation.table(tmp_path).splitlines() if r.startswith("| `df` | yes"))
    assert row.split(" | ")[3:] == ["0.990 [0.96, 1.00]", "0.800 [0.74, 0.85] (outlier) |"]   # the worst kind
    assert "| zeros | `df` | yes | 0.900 [0.85, 0.94] |" in tables.imitation.matrix(tmp_path)
    assert tables.imitation.headline(tmp_path)[3] == "-"                                     # p50 missing: no claim
    headline = tables.headline.table(tmp_path)
    assert "| Imitation with memory |" in headline and "116.7 ± 2.0" in headline   # paper numbers always shown


@needs_gluonts
def test_api_reference_documents_signatures_without_machine_paths():
    text = tables.api.reference()
    assert "### `pyramid(horizon: int, steps: int, slope: float = 1.0) -> Tensor`" in text
    assert "Token t lags token t-1" in text                          # the docstring's first paragraph
    assert "* `rollout(length: int, context: Tensor | None = None" in text   # methods, without self
    assert str(tables.ROOT) not in text                              # default paths shown relative to the project
