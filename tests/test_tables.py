"""Generated results tables: the docs are current, and a changed result makes them stale."""

import json

import pytest

from dforce import tables
from dforce.cli import main


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


def test_unknown_table_and_cli_check(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="unknown table"):
        tables.render("<!-- table:nope -->\nx\n<!-- /table:nope -->", tmp_path)
    assert main(["tables", "--check"]) == 0
