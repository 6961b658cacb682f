"""scripts/gpu_check.sh: the CPU dry run of the GPU check (tiny models), and its pieces in-process.

The full dry run takes about a minute and a half on two cores, so it is marked slow and
``.ci/run`` runs it after the default suite. Neither run may write into the repository's
results/ or checkpoints/: the record goes to results/bench/gpu.json only on CUDA without TINY.
"""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, env

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402


def snapshot() -> dict[str, tuple[int, int]]:
    files = [p for d in ("results", "checkpoints") for p in (ROOT / d).rglob("*") if p.is_file()]
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in files}


def check_outputs(out, presets: int) -> dict:
    record = json.loads((out / "gpu.json").read_text())
    assert record["failures"] == [], record["failures"]
    rows = record["presets"]
    assert len(rows) == presets
    measured = [r for r in rows if "fp32" in r]
    assert measured and all(r[p]["steps_per_s"] > 0 and r[p]["samples_per_s"] > 0
                            for r in measured for p in ("fp32", "bf16"))
    assert all(r["skipped"] for r in rows if "fp32" not in r)                 # skipped ones say why
    training = record["training"]
    assert training["steps"] >= 4 and training["final_loss"] > 0 and training["sample"]["rc"] == 0
    assert (out / "train" / "model" / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not (out / "train" / "checkpoints").exists()
    assert all(p.stat().st_size < gpu_check.FILE_LIMIT for p in out.rglob("*") if p.is_file())
    return record


def test_pieces_in_process(tmp_path):
    """Two presets, no tests, a few seconds of training: the script's steps end to end, quickly."""
    before = snapshot()
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--tiny", "--skip-tests", "--out", str(out), "--minutes", "0.05",
                           "--preset", "configs/cross_df.yaml", "--presets", "configs/cross_df.yaml,configs/exchange.yaml",
                           "--seconds", "0.1"])
    assert code == 0
    record = check_outputs(out, presets=2)                                   # cross_df.yaml, exchange.yaml
    assert [r["preset"] for r in record["presets"]] == ["cross_df", "exchange"]
    assert "not here" in record["presets"][1]["skipped"]                     # no --data: the dataset is absent
    assert record["training"]["preset"] == "cross_df" and record["tests"]["summary"].startswith("skipped")
    assert snapshot() == before


def test_bad_settings_exit_2(tmp_path, capsys):
    assert gpu_check.main(["--device", "bogus", "--out", str(tmp_path)]) == 2
    assert gpu_check.main(["--device", "cpu", "--preset", "configs/none.yaml", "--out", str(tmp_path)]) == 2
    assert gpu_check.main(["--device", "cpu", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "gpu_check:" in capsys.readouterr().err


def test_data_paths_move_under_the_data_folder(tmp_path):
    (tmp_path / "timeseries").mkdir()
    (tmp_path / "timeseries" / "x.csv").write_text("")
    assert gpu_check.data_path("../shared/data/timeseries/x.csv", tmp_path) == str(tmp_path / "timeseries" / "x.csv")
    assert gpu_check.data_path("../shared/data/timeseries/y.csv", tmp_path) is None
    assert gpu_check.data_path("../shared/data/timeseries/x.csv", None) is None
    assert gpu_check.data_path("tsdata:us_gasoline", None) == "tsdata:us_gasoline"


@pytest.mark.slow
def test_cpu_dry_run(tmp_path):
    """`DEVICE=cpu TINY=1 bash scripts/gpu_check.sh`: every step of the GPU check, on the CPU."""
    before = snapshot()
    out = tmp_path / "gpu_check"
    run = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**env(), "DEVICE": "cpu", "TINY": "1", "OUT": str(out), "MINUTES": "0.1",
                              "PYTHON": sys.executable})
    assert run.returncode == 0, run.stderr[-3000:]
    record = check_outputs(out, presets=len(list((ROOT / "configs").glob("*.yaml"))))
    assert record["tests"]["ok"] and "passed" in record["tests"]["summary"]
    assert record["training"]["preset"] == "video_mnist64"
    assert snapshot() == before
    assert not os.path.exists(ROOT / "results" / "bench" / "gpu.json") or (
        str(ROOT / "results" / "bench" / "gpu.json") in before)
