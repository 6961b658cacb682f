"""`dforce eval compositional`: the trajectory classifier and the command end to end on a tiny model."""

import json

import pytest
import torch

from dforce.cli import main
from dforce.tasks.compositional import CLASSES, classify, fractions

from helpers import TINY


def _path(*points, tokens=16):
    """A piecewise-linear 2-D path through ``points``: (tokens + 1, 2), equal tokens per segment."""
    pts = torch.tensor(points, dtype=torch.float32)
    steps = tokens // (len(points) - 1)
    segs = [a + (b - a) * torch.linspace(0, 1, steps + 1)[:-1, None] for a, b in zip(pts[:-1], pts[1:])]
    return torch.cat([*segs, pts[-1:]])


def test_classifier_labels_hand_made_trajectories():
    diagonal = _path((-1, -1), (1, 1))
    v_shape = _path((-1, -1), (0, 0), (1, -1))                       # turns onto the other diagonal
    back = _path((1, -1), (0, 0), (1, -1))                           # returns to its start corner
    wiggle = _path((1, 1), (0.6, -0.2), (0.0, 0.0), (-0.2, 0.6), (-1, -1))  # reaches -c by a detour
    labels = classify(torch.stack([diagonal, v_shape, back, wiggle]))
    assert [CLASSES[i] for i in labels] == ["diagonal", "stitched", "other", "other"]
    noisy = diagonal + 0.02 * torch.randn(5, *diagonal.shape, generator=torch.Generator().manual_seed(0))
    assert (classify(noisy) == CLASSES.index("diagonal")).all()
    f = fractions(labels)
    assert f["other"]["count"] == 2 and f["other"]["fraction"] == 0.5 and f["other"]["stderr"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="traj"):
        classify(torch.zeros(3, 5, 3))


@pytest.fixture(scope="module")
def tiny_cross(tmp_path_factory):
    run = tmp_path_factory.mktemp("cross")
    assert main(["train", "configs/cross.yaml", *TINY, "data.name=cross", "train.steps=5", "model.depth=1",
                 "--out", str(run), "--no-progress"]) == 0
    return run / "model"


def test_eval_compositional_writes_fractions(tiny_cross, tmp_path):
    out = tmp_path / "c.json"
    assert main(["eval", "compositional", "--checkpoint", str(tiny_cross), "--samples", "12", "--horizon", "4",
                 "--execute", "2", "--forget", "noise", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    for mode in ("memory", "memoryless"):
        assert sum(record["metrics"][mode][c]["fraction"] for c in CLASSES) == pytest.approx(1.0)
        assert sum(record["metrics"][mode][c]["count"] for c in CLASSES) == 12
        assert 0 <= record["metrics"][mode]["diagnostics"]["end_nearest_start"] <= 1
    assert record["command"].startswith("dforce eval compositional") and record["protocol"]["end_tol"] > 0
    assert out.with_suffix(".png").is_file()


@pytest.mark.parametrize("bad", [["--samples", "0"], ["--execute", "9", "--horizon", "4"], ["--end-tol", "-1"],
                                 ["--length", "1"]])
def test_eval_compositional_bad_input_exits_2(tiny_cross, tmp_path, bad):
    assert main(["eval", "compositional", "--checkpoint", str(tiny_cross), "--out", str(tmp_path / "c.json"), *bad]) == 2


def test_eval_compositional_rejects_other_data(tmp_path):
    run = tmp_path / "osc"
    assert main(["train", "default", *TINY, "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    assert main(["eval", "compositional", "--checkpoint", str(run / "model"), "--out", str(tmp_path / "c.json")]) == 2
