"""The model zoo: names, directories and hf:// resolve to model directories; Hub format round trip."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from dforce import zoo
from dforce.cli import main
from dforce.config import DiffusionConfig, ModelConfig, SamplingConfig
from dforce.pipeline import DiffusionForcingModel


def _tiny() -> DiffusionForcingModel:
    torch.manual_seed(0)
    return DiffusionForcingModel((3,), 0, ModelConfig(width=8, depth=1), DiffusionConfig(levels=50), SamplingConfig(steps=2))


@pytest.fixture
def root(tmp_path):
    """A checkpoints/ folder with one model and a zoo.json that also lists a missing one."""
    _tiny().save_pretrained(tmp_path / "tiny")
    (tmp_path / "scores.json").write_text(json.dumps({"per_seed": [{"crps": 0.5}], "metrics": {"score": 7.0}}))
    rows = [{"name": "tiny", "directory": "tiny", "task": "test", "command": "dforce train x.yaml",
             "result": "checkpoints/scores.json", "metric": "per_seed.0.crps"},
            {"name": "gone", "directory": "gone", "task": "test", "command": "dforce train y.yaml"}]
    (tmp_path / "zoo.json").write_text(json.dumps(rows))
    return tmp_path


def test_resolve_names_paths_and_errors(root, monkeypatch):
    assert zoo.resolve("tiny", root) == root / "tiny"
    assert zoo.resolve(root / "tiny", root) == root / "tiny"
    with pytest.raises(ValueError, match="missing"):
        zoo.resolve("gone", root)
    with pytest.raises(ValueError, match="gone, tiny"):
        zoo.resolve("nope", root)


def test_entries_report_size_and_score(root, monkeypatch):
    monkeypatch.setattr(zoo, "CHECKPOINTS", root)          # results paths are relative to its parent
    monkeypatch.chdir(root.parent)
    (root.parent / "checkpoints").mkdir(exist_ok=True)
    (root.parent / "checkpoints" / "scores.json").write_text((root / "scores.json").read_text())
    entry = zoo.entries(root)["tiny"]
    assert entry.score() == 0.5 and entry.size_mb() > 0
    assert zoo.entries(root)["gone"].score() is None and zoo.entries(root)["gone"].size_mb() == 0
    text = zoo.table(root)
    assert "tiny" in text and "0.5 (crps)" in text and "missing" in text


def test_shipped_exchange_model_loads_by_name(capsys):
    model = DiffusionForcingModel.from_pretrained("exchange")
    assert model.extra["forecast"]["dataset"].endswith("exchange_rate_nips.tar.gz")
    assert main(["models"]) == 0
    assert "exchange" in capsys.readouterr().out


def test_hub_round_trip_with_a_stand_in_hub(tmp_path, monkeypatch):
    """hf:// downloads through huggingface_hub.snapshot_download; push_to_hub uploads save_pretrained's folder."""
    store: dict[str, Path] = {}
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private))

        def upload_folder(self, repo_id, folder_path, commit_message):
            target = tmp_path / "hub" / repo_id.replace("/", "--")
            target.mkdir(parents=True)
            for f in Path(folder_path).iterdir():
                (target / f.name).write_bytes(f.read_bytes())
            store[repo_id] = target

    def fake_download(repo_id, revision=None, allow_patterns=None):
        calls.append(("download", repo_id, revision))
        return str(store[repo_id])

    monkeypatch.setitem(sys.modules, "huggingface_hub",
                        types.SimpleNamespace(HfApi=FakeApi, snapshot_download=fake_download))
    model = _tiny()
    assert model.push_to_hub("me/tiny", token="t") == "https://huggingface.co/me/tiny"
    assert sorted(f.name for f in store["me/tiny"].iterdir()) == ["config.json", "model.safetensors"]
    loaded = DiffusionForcingModel.from_pretrained("hf://me/tiny@v1")
    assert ("download", "me/tiny", "v1") in calls and ("create", "me/tiny", False) in calls
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert zoo.resolve(Path("hf://me/tiny")) == store["me/tiny"]     # a Path collapses "//"; still the Hub


def test_every_zoo_entry_is_shipped_small_and_loads():
    entries = zoo.entries()
    assert "exchange" in entries
    for name, entry in entries.items():
        assert entry.directory.is_dir(), f"{name}: {entry.directory} missing"
        assert entry.size_mb() < 20, f"{name}: {entry.size_mb():.1f} MB"
        assert DiffusionForcingModel.from_pretrained(name).token_shape


def test_checkpoints_directory_can_be_moved(tmp_path):
    code = "from dforce import zoo; print(zoo.CHECKPOINTS); print(sorted(zoo.entries()))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DFORCE_CHECKPOINTS": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str(tmp_path), "[]"]
