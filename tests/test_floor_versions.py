"""pyproject.toml's floors: every core dependency has one, and they are the versions
scripts/check_floor_versions.sh (`make floors`) installs in a fresh venv and tests against.
That script needs PyPI and a few minutes, so it is run by hand; this checks what it will pin."""

import subprocess
import sys

from helpers import ROOT


def pins() -> dict[str, str]:
    out = subprocess.run(["bash", "scripts/check_floor_versions.sh", "--print"], cwd=ROOT, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(line.split("==") for line in out.stdout.split())


def test_every_core_dependency_has_a_tested_floor():
    floors = pins()
    assert set(floors) == {"torch", "numpy", "omegaconf", "safetensors", "tqdm", "matplotlib", "imageio", "tensorboard"}
    # omegaconf 2.3.0 and 2.3.1 fail every load_config with frozen dataclasses ("read-only config node")
    assert tuple(int(p) for p in floors["omegaconf"].split(".")[:2]) >= (2, 4)
