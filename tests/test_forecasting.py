"""Forecasting: window inputs without leakage, CRPS-sum against GluonTS, the GluonTS API, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gluonts")
pd = pytest.importorskip("pandas")

from dforce.cli import main  # noqa: E402
from dforce.config import load_config  # noqa: E402
from dforce.forecasting import windows as fw  # noqa: E402
from dforce.forecasting import baselines  # noqa: E402
from dforce.forecasting.metrics import crps_sum, gluonts_metrics  # noqa: E402
from dforce.forecasting.model import Forecaster, prepare, train_forecaster, training_sequences  # noqa: E402
from helpers import DATA  # noqa: E402

EXCHANGE = DATA / "timeseries" / "exchange_rate_nips.tar.gz"
ETTH1 = DATA / "timeseries" / "ETTh1.csv"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
TINY = ["model.width=16", "model.depth=1", "train.steps=20", "train.eval_every=10", "train.checkpoint_every=10",
        "train.log_every=10", "train.tensorboard=false", "sampling.steps=2", "forecast.samples=4",
        "forecast.val_samples=2", "diffusion.levels=20", "sampling.stabilization=2"]


def needs(path):
    if not path.is_file():
        pytest.skip(f"shared data file missing: {path}")


# ---------------------------------------------------------------------------- window inputs


def _series(n=3, t=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, t)).cumsum(axis=1).astype(np.float32)


def test_window_inputs_never_read_the_future():
    """Perturbing every step from the forecast start on leaves tokens and conditioning unchanged."""
    spec = fw.WindowSpec(8, 6, (20, 50))
    h = _series()
    table = np.random.default_rng(1).normal(size=(h.shape[1], 3)).astype(np.float32)
    starts = np.array([60, 200, 390])
    step = fw.typical_step(h)
    tokens, cond, loc, scale = fw.window_inputs(h, table, starts, spec, step, with_future=False)
    assert tokens.shape == (3, 8, 3) and cond.shape == (3, 14, spec.cond_dim(3, 3))
    for i, s in enumerate(starts):
        changed = h.copy()
        changed[:, s:] += 100.0
        t2, c2, l2, s2 = fw.window_inputs(changed, table, starts[i:i + 1], spec, step, with_future=False)
        np.testing.assert_array_equal(t2[0], tokens[i])
        np.testing.assert_array_equal(c2[0], cond[i])
        np.testing.assert_array_equal(l2[0], loc[i])


def test_training_window_conditioning_ignores_the_window_targets():
    """Within a training window, conditioning (lags, level, scale) depends only on steps before the forecast start."""
    spec = fw.WindowSpec(8, 6, (14, 30))
    h = _series()
    table = np.zeros((h.shape[1], 2), np.float32)
    s = 100
    _, cond, _, _ = fw.window_inputs(h, table, np.array([s]), spec, fw.typical_step(h), with_future=True)
    changed = h.copy()
    changed[:, s:s + 6] += 50.0
    tokens2, cond2, _, _ = fw.window_inputs(changed, table, np.array([s]), spec, fw.typical_step(h), with_future=True)
    np.testing.assert_array_equal(cond2, cond)
    assert tokens2.shape == (1, 14, 3) and not np.allclose(tokens2[0, 8:], 0)


def test_tokens_unscale_back_to_the_context():
    spec = fw.WindowSpec(10, 5)
    h = _series()
    tokens, _, loc, scale = fw.window_inputs(h, np.zeros((400, 1), np.float32), np.array([50, 300]), spec,
                                             fw.typical_step(h), with_future=True)
    back = fw.unscale(tokens, loc, scale)
    np.testing.assert_allclose(back[0], h[:, 40:55].T, atol=1e-5)
    np.testing.assert_allclose(back[1], h[:, 290:305].T, atol=1e-5)
    np.testing.assert_allclose(tokens[:, 9], 0, atol=1e-6)  # loc is the last context value


def test_level_feature_is_optional():
    h = _series()
    table = np.zeros((400, 2), np.float32)
    args = (h, table, np.array([100]), )
    with_level = fw.window_inputs(*args, fw.WindowSpec(8, 6, (20,)), fw.typical_step(h), with_future=False)[1]
    without = fw.window_inputs(*args, fw.WindowSpec(8, 6, (20,), level=False), fw.typical_step(h),
                               with_future=False)[1]
    assert with_level.shape[-1] == fw.WindowSpec(8, 6, (20,)).cond_dim(3, 2) == 2 + 3 * 3
    assert without.shape[-1] == fw.WindowSpec(8, 6, (20,), level=False).cond_dim(3, 2) == 2 + 3 * 2
    np.testing.assert_array_equal(without, np.delete(with_level, [5, 6, 7], axis=-1))  # the level columns


def test_mirrored_training_windows_are_negated(tmp_path):
    needs(EXCHANGE)
    from dataclasses import replace

    cfg = load_config("configs/exchange.yaml", [f"forecast.dataset={EXCHANGE}", "forecast.max_lag=300"])
    fd = prepare(cfg.forecast)
    plain, mirrored = training_sequences(fd), training_sequences(replace(fd, mirror=True))
    M, F = len(plain), 3  # Exchange ("B"): 3 GluonTS time features, then one lag (259) per series
    assert len(mirrored) == 2 * M and fd.spec.lags == (259,)
    torch.testing.assert_close(mirrored.x[M:], -plain.x)
    torch.testing.assert_close(mirrored.cond[M:, :, :F], plain.cond[:, :, :F])          # calendar
    torch.testing.assert_close(mirrored.cond[M:, :, F:F + 8], -plain.cond[:, :, F:F + 8])  # lags
    torch.testing.assert_close(mirrored.cond[M:, :, F + 8:], plain.cond[:, :, F + 8:])  # log scale


def test_window_spec_rejects_lags_inside_the_window():
    with pytest.raises(ValueError, match="seasonal lags"):
        fw.WindowSpec(8, 6, (10,))
    with pytest.raises(ValueError, match="history"):
        fw.window_inputs(_series(), np.zeros((400, 1), np.float32), np.array([10]), fw.WindowSpec(8, 6, (20,)),
                         np.ones(3), with_future=False)


def test_seasonal_lags_one_per_season():
    assert fw.seasonal_lags("B", 60, 800) == (259, 519, 779)
    assert fw.seasonal_lags("h", 48, 200) == (49, 72, 96, 120, 144, 168)


# ------------------------------------------------------------------------------- metrics


def test_crps_sum_matches_gluonts_evaluator():
    rng = np.random.default_rng(0)
    W, S, P, N, T = 3, 40, 7, 4, 30
    hist = [rng.normal(size=(N, T + w * P)).astype(np.float32) + 5 for w in range(W)]
    truth = np.stack([h[:, -P:].T for h in hist])
    samples = (truth[:, None] + rng.normal(size=(W, S, P, N)) * 0.7 + 0.2).astype(np.float32)
    ours = crps_sum(truth, samples)
    theirs = gluonts_metrics(hist, samples, "2001-01-01", "h")
    assert ours == pytest.approx(theirs["crps_sum"], rel=1e-5)
    assert 0 < theirs["crps"] and 0 < theirs["nd_sum"] and 0 < theirs["nrmse_sum"]
    assert crps_sum(truth, np.repeat(truth[:, None], 5, axis=1)) == 0.0  # a perfect forecast scores 0


def test_baselines_shapes_and_values():
    hist = [_series(2, 50, seed) for seed in range(3)]
    rw = baselines.random_walk(hist, 6, 20, 10, seed=0)
    assert rw.shape == (3, 10, 6, 2)
    np.testing.assert_array_equal(rw, baselines.random_walk(hist, 6, 20, 10, seed=0))
    naive = baselines.seasonal_naive(hist, 7, "B")   # season 5: the last week repeated
    assert naive.shape == (3, 1, 7, 2)
    np.testing.assert_array_equal(naive[0, 0, :5], hist[0][:, -5:].T)
    np.testing.assert_array_equal(naive[0, 0, 5:], hist[0][:, -5:-3].T)


# ----------------------------------------------------------------- training and the APIs


@pytest.fixture(scope="module")
def tiny_exchange(tmp_path_factory):
    needs(EXCHANGE)
    cfg = load_config("configs/exchange.yaml", TINY + [f"forecast.dataset={EXCHANGE}"])
    run = tmp_path_factory.mktemp("exchange_run")
    chosen = train_forecaster(cfg, run, progress=False)
    return cfg, run, chosen


def test_training_keeps_the_best_validation_checkpoint(tiny_exchange):
    _, run, chosen = tiny_exchange
    assert chosen == run / "best"
    record = json.loads((chosen / "validation.json").read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = [r["eval/val_crps_sum"] for r in logged if "eval/val_crps_sum" in r]
    assert len(scores) == 2 and record["crps_sum"] == pytest.approx(min(scores))


def test_forecaster_samples_every_test_window(tiny_exchange):
    cfg, _, chosen = tiny_exchange
    fd = prepare(cfg.forecast)
    f = Forecaster.from_pretrained(chosen)
    P = f.prediction_length
    hists = [h[:, :-P] for h in fd.series.test]
    a = f.sample(hists, fd.series.start, 3, seed=1)
    assert a.shape == (5, 3, 30, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, f.sample(hists, fd.series.start, 3, seed=1))
    # forecasts live on the scale of the data: near the last observed value
    last = np.stack([h[:, -1] for h in hists])
    assert np.abs(np.median(a[:, :, 0], axis=1) - last).max() < 0.5 * np.abs(last).max()


def test_training_sequences_match_the_protocol(tiny_exchange):
    cfg, _, _ = tiny_exchange
    fd = prepare(cfg.forecast)
    data = training_sequences(fd)
    assert data.x.shape[1:] == (60, 8) and fd.fit_length == 6071 - fd.val_windows * 30
    # the last training window's targets end where the first validation target begins
    assert len(data) == fd.fit_length - 30 - fd.spec.history + 1
    assert torch.isfinite(data.x).all() and torch.isfinite(data.cond).all()


def test_ett_protocol():
    needs(ETTH1)
    cfg = load_config("configs/etth1.yaml", [f"forecast.dataset={ETTH1}"])
    fd = prepare(cfg.forecast)
    assert fd.n_series == 7 and fd.spec.context_length == 24 and len(fd.series.test) == 7
    assert fd.series.train.shape[1] == 17420 - 7 * 24 and fd.fit_length == 17420 - (7 + fd.val_windows) * 24
    assert all(h.shape[1] <= 17420 for h in fd.val_histories())


# ------------------------------------------------------------------------------------ CLI


def test_cli_eval_forecasting_baselines(tmp_path, capsys):
    needs(EXCHANGE)
    code = main(["eval", "forecasting", "--dataset", "exchange_rate_nips", "--data", str(EXCHANGE), "--seeds", "2",
                 "--methods", "random_walk,seasonal_naive", "--out", str(tmp_path)])
    assert code == 0
    record = json.loads((tmp_path / "exchange_rate_nips-random_walk.json").read_text())
    assert set(record["metrics"]) == {"crps_sum", "crps", "nd_sum", "nrmse_sum"}
    assert len(record["per_seed"]) == 2 and record["seeds"] == [0, 1]
    assert "| random_walk |" in capsys.readouterr().out
    assert (tmp_path / "exchange_rate_nips-seasonal_naive-fan.png").stat().st_size > 0


def test_cli_forecast_command(tiny_exchange, tmp_path):
    _, _, chosen = tiny_exchange
    assert main(["forecast", str(chosen), "--samples", "3", "--plot", "--out", str(tmp_path)]) == 0
    assert np.load(tmp_path / "samples.npz")["samples"].shape == (5, 3, 30, 8)
    assert len(list(tmp_path.glob("fan_window*.png"))) == 5
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["crps_sum"] > 0


def test_a_shipped_relative_dataset_path_resolves_from_any_directory(tmp_path, monkeypatch):
    needs(EXCHANGE)
    from dforce.forecasting.evaluate import _stored_dataset

    stored = json.loads((Path(__file__).parents[1] / "checkpoints" / "exchange" / "config.json").read_text())
    relative = stored["extra"]["forecast"]["dataset"]
    monkeypatch.chdir(tmp_path)
    assert not Path(relative).exists() and Path(_stored_dataset(relative)).is_file()
    assert _stored_dataset("/no/such.csv") == "/no/such.csv"


def test_a_failed_forecast_leaves_the_previous_outputs(tiny_exchange, tmp_path, capsys, monkeypatch):
    """Scoring fails on NaN sample paths (GluonTS refuses them): nothing of the earlier run is replaced."""
    from dforce.forecasting.model import Forecaster

    _, _, chosen = tiny_exchange
    assert main(["forecast", str(chosen), "--samples", "2", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    sample = Forecaster.sample
    monkeypatch.setattr(Forecaster, "sample", lambda self, *a, **k: sample(self, *a, **k) * np.nan)
    assert main(["forecast", str(chosen), "--samples", "2", "--out", str(tmp_path)]) == 2
    assert "NaN" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("argv, message", [
    (["eval", "forecasting", "--dataset", "exchange_rate_nips", "--methods", "magic"], "unknown"),
    (["eval", "forecasting", "--dataset", "nope"], "no preset"),
    (["train", "configs/exchange.yaml", "forecast.dataset=/no/such/file.csv"], "no CSV file"),
])
def test_cli_forecasting_bad_input(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path / "o")] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
