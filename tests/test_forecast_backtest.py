"""Backtest protocol, increment tokens, paired intervals and the new baselines."""

import json

import numpy as np
import pytest

pytest.importorskip("gluonts")

from dforce.cli import main  # noqa: E402
from dforce.config import load_config  # noqa: E402
from dforce.forecasting import backtest, baselines  # noqa: E402
from dforce.forecasting import windows as fw  # noqa: E402
from dforce.forecasting.methods import training_key  # noqa: E402
from dforce.forecasting.metrics import gluonts_metrics  # noqa: E402
from dforce.forecasting.model import prepare  # noqa: E402
from helpers import DATA  # noqa: E402

EXCHANGE = DATA / "timeseries" / "exchange_rate_nips.tar.gz"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
TINY = ["model.width=16", "model.depth=1", "train.steps=10", "train.eval_every=5", "train.checkpoint_every=10",
        "train.log_every=5", "train.tensorboard=false", "train.batch_size=16", "sampling.steps=2",
        "forecast.samples=6", "forecast.val_samples=2", "forecast.val_windows=3", "diffusion.levels=20",
        "sampling.stabilization=2"]


def _series(n=3, t=400, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t)).cumsum(axis=1).astype(np.float32)


def _histories(W=6, N=3, T=40, P=5, seed=0):
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(size=(N, T + P * w)), axis=1).astype(np.float32) + 10 for w in range(W)]


# ------------------------------------------------------------------------------- tokens


def test_increment_tokens_sum_back_to_the_levels():
    spec = fw.WindowSpec(10, 5, tokens="increments")
    h = _series()
    starts = np.array([50, 300])
    tokens, _, loc, scale = fw.window_inputs(h, np.zeros((400, 1), np.float32), starts, spec, fw.typical_step(h),
                                             with_future=True)
    np.testing.assert_allclose(tokens[0, 0] * scale[0], h[:, 40] - h[:, 39], atol=1e-5)   # one step each
    future = spec.levels(tokens[:, 10:], loc, scale)                                   # cumsum from loc
    np.testing.assert_allclose(future[0], h[:, 50:55].T, atol=1e-4)
    np.testing.assert_allclose(future[1], h[:, 300:305].T, atol=1e-4)


def test_increment_tokens_need_one_more_step_and_never_read_the_future():
    spec = fw.WindowSpec(8, 6, (20,), tokens="increments")
    assert spec.history == fw.WindowSpec(8, 6, (20,)).history + 1 == 29
    h = _series()
    table = np.zeros((400, 2), np.float32)
    with pytest.raises(ValueError, match="history"):
        fw.window_inputs(h, table, np.array([28]), spec, fw.typical_step(h), with_future=False)
    tokens = fw.window_inputs(h, table, np.array([29, 200]), spec, fw.typical_step(h), with_future=False)[0]
    changed = h.copy()
    changed[:, 200:] += 100.0
    again = fw.window_inputs(changed, table, np.array([29, 200]), spec, fw.typical_step(h), with_future=False)[0]
    np.testing.assert_array_equal(again, tokens)
    with pytest.raises(ValueError, match="tokens"):
        fw.WindowSpec(8, 6, tokens="returns")


# ------------------------------------------------------------------------ window layout


def test_fit_validation_backtest_and_test_windows_are_disjoint_and_in_order():
    if not EXCHANGE.is_file():
        pytest.skip(f"shared data file missing: {EXCHANGE}")
    cfg = load_config("configs/exchange.yaml", [f"forecast.dataset={EXCHANGE}", "forecast.backtest_windows=36"])
    fd = prepare(cfg.forecast)
    P, T = 30, fd.series.train.shape[1]
    val, held = fd.val_histories(), fd.backtest_histories()
    assert len(held) == 36 and len(val) == cfg.forecast.val_windows
    assert fd.fit_length == T - (36 + len(val)) * P
    ends = [h.shape[1] for h in val + held]
    assert ends[0] == fd.fit_length + P and ends[-1] == T and np.all(np.diff(ends) == P)   # adjacent, no overlap
    assert fd.series.forecast_start(0) >= T                                                # test windows after
    np.testing.assert_array_equal(held[-1], fd.series.train)


# ------------------------------------------------------------------------------ scoring


def test_window_scores_reassemble_gluonts_crps_sum():
    hists = _histories()
    rng = np.random.default_rng(1)
    samples = (np.stack([h[:, -6] for h in hists])[:, None, None] + rng.normal(size=(6, 40, 5, 3))).astype(np.float32)
    scores = backtest.window_scores(hists, samples, "2020-01-01", "D")
    assert scores.loss.shape == scores.target.shape == (6,)
    assert scores.crps_sum == pytest.approx(gluonts_metrics(hists, samples, "2020-01-01", "D")["crps_sum"], rel=1e-9)


def test_paired_interval_excludes_zero_only_when_one_forecaster_is_better():
    hists = _histories(W=20)
    truth = np.stack([h[:, -5:].T for h in hists])
    rng = np.random.default_rng(2)
    good = (truth[:, None] + rng.normal(size=(20, 50, 5, 3)) * 0.3).astype(np.float32)
    shifted = good + 3.0                        # a known-bad forecast: the truth, shifted
    constant = np.repeat(np.stack([h[:, :-5].mean(axis=1) for h in hists])[:, None, None], 5, axis=2)
    score = {name: backtest.window_scores(hists, s, "2020-01-01", "D")
             for name, s in (("good", good), ("shifted", shifted), ("constant", constant))}
    for bad in ("shifted", "constant"):
        pair = backtest.paired([score["good"]] * 3, [score[bad]] * 3)
        assert pair["ci95"][1] < 0 and pair["windows_won"] == 1.0
    same = backtest.paired([score["good"]] * 3, [score["good"]] * 3)
    assert same["mean"] == 0 and same["ci95"] == [0.0, 0.0]


def test_pooled_interval_is_the_seed_mean_and_covers_it():
    rng = np.random.default_rng(3)
    loss, target = rng.uniform(1, 2, size=(5, 40)), rng.uniform(10, 20, size=40)
    out = backtest.pooled_interval(loss, target)
    assert out["mean"] == pytest.approx((loss.sum(axis=1) / target.sum()).mean())
    assert out["ci95"][0] < out["mean"] < out["ci95"][1]
    with pytest.raises(ValueError, match="windows"):
        backtest.pooled_interval(loss, target[:-1])
    with pytest.raises(ValueError, match="same windows"):
        backtest.paired([backtest.WindowScores(loss[0], target)], [backtest.WindowScores(loss[1], target + 1)])


# ---------------------------------------------------------------------------- baselines


def test_correlated_random_walk_reproduces_the_recent_covariance():
    rng = np.random.default_rng(4)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    hist = np.cumsum(rng.multivariate_normal([0, 0], cov, size=31).T, axis=1)
    paths = baselines.random_walk_correlated([hist], 1, 30, 20000, seed=0)
    steps = paths[0, :, 0] - hist[:, -1]
    np.testing.assert_allclose(np.cov(steps, rowvar=False), np.cov(np.diff(hist, axis=1)), atol=0.05)
    independent = baselines.random_walk([hist], 1, 30, 20000, seed=0)[0, :, 0] - hist[:, -1]
    assert abs(np.corrcoef(independent, rowvar=False)[0, 1]) < 0.05


def test_bootstrap_random_walk_draws_whole_recent_step_vectors():
    hist = _series(3, 60)
    paths = baselines.random_walk_bootstrap([hist], 4, 10, 50, seed=0)
    steps = np.diff(np.concatenate([np.repeat(hist[:, -1][None, None], 50, 0), paths[0]], axis=1), axis=1)
    recent = {tuple(np.round(v, 4)) for v in np.diff(hist[:, -11:], axis=1).T}
    assert all(tuple(np.round(v, 4)) in recent for v in steps.reshape(-1, 3))


def test_last_value_repeats_the_last_observation():
    hists = _histories(W=2)
    out = baselines.last_value(hists, 5)
    assert out.shape == (2, 1, 5, 3)
    np.testing.assert_array_equal(out[1, 0, 3], hists[1][:, -1])


# ----------------------------------------------------------------------- run bookkeeping


def test_training_key_follows_training_not_sampling_or_seed():
    base = ["data.name=timeseries", "forecast.dataset=x"]
    key = training_key(load_config(None, base))
    assert key == training_key(load_config(None, base + ["sampling.stabilization=7", "train.seed=3"]))
    assert key != training_key(load_config(None, base + ["forecast.tokens=increments"]))
    assert key != training_key(load_config(None, base + ["forecast.backtest_windows=36"]))


def test_cli_backtest_end_to_end(tmp_path, capsys):
    if not EXCHANGE.is_file():
        pytest.skip(f"shared data file missing: {EXCHANGE}")
    argv = ["eval", "forecasting", "--dataset", "exchange_rate_nips", "--data", str(EXCHANGE), "--backtest", "4",
            "--seeds", "2", "--methods", "df,df_ensemble,last_value,random_walk_correlated", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--no-progress"] + [a for o in TINY for a in ("--set", o)]
    assert main(argv + ["--set", "forecast.tokens=increments"]) == 0
    record = json.loads((tmp_path / "out" / "exchange_rate_nips-backtest.json").read_text())
    m = record["metrics"]
    assert m["windows"] == 4 and m["seeds"] == 2
    assert set(m["paired"]) == {"df_ensemble", "last_value", "random_walk_correlated"}
    assert set(m["paired_other"]["df_ensemble"]) == {"last_value", "random_walk_correlated"}
    for pair in m["paired"].values():
        low, high = pair["ci95"]
        assert low <= high and len(pair["per_seed"]) == 2
    assert set(m["test_windows"]) == {"df", "df_ensemble", "last_value", "random_walk_correlated"}
    assert record["windows"]["backtest"] == 4 and (tmp_path / "out" / "exchange_rate_nips-backtest.png").is_file()
    assert "| df |" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--on", "validation"], "needs --backtest"),
    (["--backtest", "1"], "--backtest must be >= 2"),
    (["--backtest", "4", "--reference", "tf", "--methods", "df"], "--reference tf"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_cli_backtest_bad_input(extra, message, capsys, tmp_path):
    argv = ["eval", "forecasting", "--dataset", "exchange_rate_nips", "--out", str(tmp_path)]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_paper_protocol_feeds_the_true_previous_value_at_every_step():
    from dforce.forecasting.evaluate import one_step_histories, stitch_one_step

    hists = _histories(W=3, P=5)
    steps = one_step_histories(hists, 5)
    assert len(steps) == 15 and steps[1].shape[1] == hists[0].shape[1] - 4
    stitched = stitch_one_step(baselines.last_value(steps, 5), 3, 5)                # (W, 1, P, N)
    for w, h in enumerate(hists):       # step j's forecast is the true value just before it
        np.testing.assert_array_equal(stitched[w, 0], h[:, -6:-1].T)
    honest = baselines.last_value([h[:, :-5] for h in hists], 5)
    assert not np.allclose(honest, stitched)


def test_deepar_takes_month_start_data(tmp_path):
    """GluonTS reads starts as periods, and "MS" is not a period frequency: the baseline converts it."""
    pytest.importorskip("lightning")
    from dforce.forecasting.deepar import deepar

    train = _series(2, 120) + 50
    out = deepar(train, "2000-01-01", "MS", [train], 6, 6, 5, 0, epochs=1, batches_per_epoch=2,
                 run_dir=str(tmp_path))
    assert out.shape == (1, 5, 6, 2) and np.isfinite(out).all()
