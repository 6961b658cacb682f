"""The cross experiment: classifier, intervals, the ideal sampler's prediction, the training data and
`dforce eval compositional` end to end on tiny models."""

import json
import math

import pytest
import torch

from dforce.cli import main
from dforce.config import load_config
from dforce.synthetic.compositional import parse_context
from dforce.stats import wilson
from dforce.synthetic.cross import CLASSES, classify, distance_to_ideal, end_corners, fractions, ideal
from dforce.data.sequences import suffixes
from dforce.synthetic.data import cross, cross_suffixes
from dforce.synthetic.train import training_data

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
    shortcut = _path((-1, -1), (0, -1), (1, -1))                     # an adjacent corner along the edge: off the cross
    labels = classify(torch.stack([diagonal, v_shape, back, wiggle, shortcut]))
    assert [CLASSES[i] for i in labels] == ["diagonal", "stitched", "other", "other", "other"]
    noisy = diagonal + 0.02 * torch.randn(5, *diagonal.shape, generator=torch.Generator().manual_seed(0))
    assert (classify(noisy) == CLASSES.index("diagonal")).all()
    with pytest.raises(ValueError, match="traj"):
        classify(torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match="end_tol"):
        classify(torch.zeros(3, 5, 2), end_tol=float("nan"))


def test_real_cross_paths_are_all_diagonal_and_known_failures_are_not():
    real = cross(200, 33, seed=3)
    assert (classify(real) == CLASSES.index("diagonal")).all()
    g = torch.Generator().manual_seed(0)
    frozen = real[:, :1].expand(-1, 33, -1)                                  # never leaves its corner
    order = torch.cat([torch.randperm(31, generator=g), torch.tensor([31])])     # ends at the right corner
    shuffled = torch.cat([real[:, :1], real[:, 1:][:, order]], 1)                # but jumps along the way
    stalled = torch.cat([real[:, :17], real[:, 16:17].expand(-1, 16, -1)], 1)                 # stops at the centre
    for bad in (frozen, shuffled, stalled):
        assert (classify(bad) == CLASSES.index("other")).float().mean() > 0.9
    assert end_corners(real)["jump_fraction"] == 0 and end_corners(shuffled)["jump_fraction"] == 1
    assert end_corners(real)["longest_step_median"] == pytest.approx(2 * math.sqrt(2) / 32, abs=0.04)


def test_wilson_interval_against_the_closed_form_and_its_edges():
    lo, hi = wilson(50, 100)
    half = 1.959964 / (1 + 1.959964**2 / 100) * math.sqrt(0.25 / 100 + 1.959964**2 / 40000)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half))
    z2 = 1.959964**2                                     # with no successes the upper end is z^2 / (n + z^2)
    assert wilson(0, 1000) == pytest.approx((0.0, z2 / (1000 + z2)), abs=1e-12)
    assert wilson(1000, 1000) == pytest.approx((1000 / (1000 + z2), 1.0), abs=1e-12)
    f = fractions(torch.tensor([0, 0, 1, 2]))
    assert f["diagonal"]["count"] == 2 and f["diagonal"]["fraction"] == 0.5
    assert f["diagonal"]["ci95"][0] < 0.5 < f["diagonal"]["ci95"][1]
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_ideal_prediction_for_each_context():
    assert ideal(33, 16, 1) == pytest.approx({"diagonal": 0.25, "stitched": 0.5, "other": 0.25})
    for context in (2, 5, None):
        assert ideal(33, 16, context) == pytest.approx({"diagonal": 1.0, "stitched": 0.0, "other": 0.0})
    # replanning every 8 tokens with one token of context: a fair coin at 1/4 and 3/4 of the
    # path, four ways at the centre; the diagonal needs "forward" all three times
    assert ideal(33, 8, 1)["diagonal"] == pytest.approx(1 / 2 * 1 / 4 * 1 / 2)
    # every token replanned: one way at the corner, 30 coin flips off the centre, four ways on it
    assert ideal(33, 1, 1)["diagonal"] == pytest.approx(2.0**-30 / 4, rel=1e-9)
    assert ideal(32, 16, 1) is None                                     # no token on the centre
    labels = torch.tensor([0] * 25 + [1] * 50 + [2] * 25)
    assert distance_to_ideal(fractions(labels), ideal(33, 16, 1)) == pytest.approx(0.0)
    assert distance_to_ideal(fractions(labels), ideal(33, 16, None)) == pytest.approx(0.75)
    assert distance_to_ideal(fractions(labels), None) is None


def test_ideal_agrees_with_simulating_the_exact_sampler():
    """Monte Carlo of the ideal sampler on the lattice, written independently of the enumeration."""
    g = torch.Generator().manual_seed(0)
    half, execute, n = 16, 8, 20000
    ends = []
    for _ in range(n):
        q, tokens = (half, half), 1
        while tokens < 2 * half + 1:
            # one-token context: any data path through q (q = s d with -half <= s < half) may continue
            options = [d for d in ((1, 1), (1, -1), (-1, 1), (-1, -1))
                       if q[0] * d[0] == q[1] * d[1] and -half <= q[0] * d[0] < half]
            u = options[int(torch.randint(len(options), (1,), generator=g))]
            q = (q[0] + execute * u[0], q[1] + execute * u[1])
            tokens += execute
        ends.append(q)
    diag = sum(e == (-half, -half) for e in ends) / n
    stitched = sum(e in ((half, -half), (-half, half)) for e in ends) / n
    expected = ideal(2 * half + 1, execute, 1)
    assert diag == pytest.approx(expected["diagonal"], abs=0.01)
    assert stitched == pytest.approx(expected["stitched"], abs=0.01)


def test_suffixes_start_anywhere_and_mask_the_rest():
    x = torch.arange(10.0).reshape(1, 10, 1).expand(500, 10, 1)
    out, mask = suffixes(x, torch.Generator().manual_seed(0))
    first = out[:, 0, 0]
    assert set(first.long().tolist()) == set(range(9))                 # every offset 0..T-2 drawn
    real = mask.sum(1)
    assert torch.equal(real, 10 - first.long()) and (real >= 2).all()
    assert torch.equal(out[mask][:, 0], torch.cat([torch.arange(o, 10.0) for o in first.long().tolist()]))
    assert torch.equal(out.sort(1).values, x)                          # the tail is the cut-off prefix
    y, m = cross_suffixes(8, 33, torch.Generator().manual_seed(1))
    assert y.shape == (8, 33, 2) and m.shape == (8, 33) and m[:, :2].all()


def test_whole_paths_keeps_that_share_of_suffixes_uncut():
    x = torch.arange(10.0).reshape(1, 10, 1).expand(4000, 10, 1)
    assert torch.equal(suffixes(x, torch.Generator().manual_seed(0), whole=1.0)[0], x)
    out, mask = suffixes(x, torch.Generator().manual_seed(0), whole=0.5)
    whole = mask.all(1).float().mean()                                 # offset 0: half, plus 1/9 of the rest
    assert abs(float(whole) - (0.5 + 0.5 / 9)) < 0.03
    assert torch.equal(out[mask.all(1)], x[mask.all(1)])


@pytest.mark.parametrize("bad", ["data.whole_paths=0.5 data.suffixes=false", "data.whole_paths=1",
                                 "data.whole_paths=-0.1"])
def test_config_rejects_whole_paths_out_of_range_or_without_suffixes(bad):
    with pytest.raises(ValueError, match="whole_paths"):
        load_config("configs/cross_df.yaml", bad.split())


def test_fresh_training_data_differ_per_batch_and_repeat_per_index():
    cfg = load_config("configs/cross_df.yaml").data
    data = training_data(cfg)
    a, _, mask_a = data.batch(torch.tensor([3, 1, 2]))
    b, _, _ = data.batch(torch.tensor([3, 1, 2]))
    c, _, _ = data.batch(torch.tensor([3, 1, 4]))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, cfg.length, 2) and mask_a.shape == (3, cfg.length)
    assert data.x.shape == (cfg.sequences, cfg.length, 2)


@pytest.mark.parametrize("bad", ["data.fresh=true data.name=oscillators", "data.suffixes=true data.window=8",
                                 "data.suffixes=true data.name=maze2d"])
def test_config_rejects_suffixes_and_fresh_where_they_do_not_apply(bad):
    with pytest.raises(ValueError, match="data\\."):
        load_config("configs/cross_df.yaml", bad.split())


def test_parse_context():
    assert parse_context("1, 2,all") == [1, 2, None]
    for bad in ("0", "x", "1,1", ""):
        with pytest.raises(ValueError, match="--context"):
            parse_context(bad)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    runs = {}
    for forcing, preset in (("independent", "cross_df"), ("full_sequence", "cross_fs")):
        run = root / forcing
        assert main(["train", f"configs/{preset}.yaml", *TINY, "data.length=9", "train.steps=5",
                     "--out", str(run), "--no-progress"]) == 0
        runs[forcing] = run / "model"
    return runs


def test_eval_compositional_writes_a_record_per_model_and_mode(tiny_models, tmp_path):
    out = tmp_path / "out"
    argv = ["eval", "compositional", "--checkpoints", f"df={tiny_models['independent']}",
            f"fs={tiny_models['full_sequence']}", "--samples", "12", "--context", "1,all", "--out", str(out)]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cross-df-context1.json", "cross-df-memory.json", "cross-fs-context1.json",
                     "cross-fs-memory.json", "cross.png"]
    record = json.loads((out / "cross-df-context1.json").read_text())
    m = record["metrics"]
    assert sum(m[c]["fraction"] for c in CLASSES) == pytest.approx(1.0)
    assert sum(m[c]["count"] for c in CLASSES) == 12 and m["samples"] == 12
    assert m["ideal"] == pytest.approx(ideal(9, 4, 1)) and 0 <= m["distance_to_ideal"] <= 1
    assert all(m[c]["ci95"][0] <= m[c]["fraction"] <= m[c]["ci95"][1] for c in CLASSES)
    fs = json.loads((out / "cross-fs-memory.json").read_text())["protocol"]
    assert fs["conditioning"] == "committed clean" and fs["scheduling"] == "full_sequence"
    assert record["protocol"]["conditioning"] == "committed clean" and record["command"].startswith("dforce eval")
    assert main([*argv, "--conditioning", "replacement", "--context", "2", "--no-plot"]) == 0
    replaced = json.loads((out / "cross-df-context2.json").read_text())["protocol"]
    assert replaced["conditioning"].startswith("replacement") and replaced["scheduling"] == "full_sequence"


def test_eval_compositional_writes_nothing_under_results_unless_asked(tiny_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["eval", "compositional", "--checkpoints", str(tiny_models["independent"]), "--samples", "4",
            "--context", "2", "--no-plot"]
    assert main(base) == 0
    assert (tmp_path / "outputs" / "compositional" / "cross-independent-context2.json").is_file()
    assert not (tmp_path / "results").exists()
    assert main([*base, "--record"]) == 0
    assert (tmp_path / "results" / "compositional" / "cross-independent-context2.json").is_file()


@pytest.mark.parametrize("bad", [["--samples", "0"], ["--execute", "9", "--horizon", "4"], ["--end-tol", "-1"],
                                 ["--length", "2"], ["--context", "zero"], ["--path-tol", "nan"],
                                 ["--scheduling", "zigzag"]])
def test_eval_compositional_bad_input_exits_2(tiny_models, tmp_path, bad, capsys):
    argv = ["eval", "compositional", "--checkpoints", str(tiny_models["independent"]), "--out", str(tmp_path), *bad]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]
    assert not any(tmp_path.iterdir())


def test_eval_compositional_rejects_other_data(tmp_path):
    run = tmp_path / "osc"
    assert main(["train", "default", *TINY, "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    assert main(["eval", "compositional", "--checkpoints", str(run / "model"), "--out", str(tmp_path / "c")]) == 2


@pytest.mark.parametrize("bad", ["diffusion.clean_prob=0.3 diffusion.forcing=full_sequence", "diffusion.clean_prob=1",
                                 "diffusion.clean_prob=nan", "diffusion.tf_position=token",
                                 "diffusion.tf_position=first diffusion.forcing=teacher_forcing"])
def test_config_rejects_forcing_options_out_of_range_or_for_another_forcing(bad):
    with pytest.raises(ValueError, match="clean_prob|tf_position"):
        load_config("configs/cross_df.yaml", bad.split())


def test_step_lengths_read_one_data_step_on_real_paths_and_flag_frozen_and_slow_ones():
    import sys

    from helpers import ROOT
    sys.path.insert(0, str(ROOT / "scripts"))
    from cross_step_lengths import step_lengths

    real = cross(50, 33, seed=3, noise=0.0)
    assert step_lengths(real) == pytest.approx([1.0] * 32, abs=1e-4)
    assert step_lengths(real[:, :1].expand(-1, 33, -1)) == [0.0] * 32          # frozen at the corner
    slow = real[:, :1] + 0.5 * (real - real[:, :1])                              # half the speed, stops short
    assert step_lengths(slow) == pytest.approx([0.5] * 32, abs=1e-4)
