"""The committed results records: each says how it was made, and the pictures it names exist."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "results").rglob("*.json"))


def _provenance(record: dict) -> list[dict]:
    """The parts of a record that must name their command and commit: the record, or each of its runs."""
    return record["runs"] if "runs" in record and "command" not in record else [record]


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_record_names_its_command_commit_and_existing_pictures(path):
    record = json.loads(path.read_text())
    for part in _provenance(record):
        assert part.get("command") and part.get("git_commit"), f"{path.name}: no command or git_commit"
    missing = [p for p in record.get("pictures") or [] if not (ROOT / p).is_file()]
    assert not missing, f"{path.name} names pictures that do not exist: {missing}"


def test_there_are_records():
    assert len(RECORDS) > 20
