"""The GluonTS interface, driven the way a GluonTS user drives an estimator and a predictor."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("gluonts")

from gluonts.dataset.common import ListDataset  # noqa: E402
from gluonts.evaluation import Evaluator, MultivariateEvaluator, make_evaluation_predictions  # noqa: E402
from gluonts.model.predictor import Predictor  # noqa: E402

from dforce.forecasting.gluonts_api import DiffusionForcingEstimator, DiffusionForcingPredictor  # noqa: E402
from helpers import DATA  # noqa: E402

EXCHANGE = DATA / "timeseries" / "exchange_rate_nips.tar.gz"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
SMALL = dict(width=16, depth=1, train_steps=10, batch_size=8, sampling_steps=2, stabilization=2, eval_every=5,
             val_samples=2, num_samples=6)


def _estimator(freq, P, **kwargs):
    return DiffusionForcingEstimator(freq, P, **{**SMALL, "val_windows": 2, **kwargs})


def _walks(n, t, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t)).cumsum(axis=1).astype(np.float32) + 100


def _dforce_tmpdirs():
    return set(Path(tempfile.gettempdir()).glob("dforce-*"))


def test_grouped_exchange_through_make_evaluation_predictions(tmp_path):
    if not EXCHANGE.is_file():
        pytest.skip(f"shared data file missing: {EXCHANGE}")
    from dforce.forecasting.series import load_gluonts

    ms = load_gluonts(EXCHANGE, cache_dir=tmp_path / "cache")
    start = pd.Period(ms.start, freq="B")
    train = [{"start": start, "target": ms.train}]
    test = [{"start": start, "target": h} for h in ms.test]
    before = _dforce_tmpdirs()
    predictor = _estimator("B", 30).train(train)
    assert _dforce_tmpdirs() == before                      # the training directory is gone
    forecasts, series = make_evaluation_predictions(test, predictor, num_samples=5)
    forecasts, series = list(forecasts), list(series)
    assert len(forecasts) == 5
    for f, hist in zip(forecasts, ms.test):
        assert f.samples.shape == (5, 30, 8) and f.start_date == start + hist.shape[1] - 30
    agg, _ = MultivariateEvaluator(target_agg_funcs={"sum": np.sum})(iter(series), iter(forecasts))
    assert np.isfinite(agg["m_sum_mean_wQuantileLoss"])


def test_serialized_predictor_forecasts_identically(tmp_path):
    train = [{"start": "2020-01-01", "target": row} for row in _walks(2, 200)]
    predictor = _estimator("D", 7).train(ListDataset(train, freq="D"))
    predictor.serialize(tmp_path / "p")
    again = Predictor.deserialize(tmp_path / "p")
    assert isinstance(again, DiffusionForcingPredictor) and again.prediction_length == 7
    test = ListDataset([{"start": "2020-01-01", "target": row} for row in _walks(2, 230, seed=1)], freq="D")
    first, second = list(predictor.predict(test)), list(again.predict(test))
    assert len(first) == 2 and first[0].samples.shape == (6, 7)            # one univariate forecast per entry
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.samples, b.samples)
        assert a.start_date == b.start_date == pd.Period("2020-01-01", "D") + 230


def test_validation_data_selects_the_checkpoint(tmp_path):
    target = _walks(2, 240)
    train = [{"start": "2021-01", "target": row[:200]} for row in target]
    val = [{"start": "2021-01", "target": row[:224]} for row in target]          # 3 windows of 8 after training
    _estimator("MS", 8, run_dir=tmp_path / "run").train(train, validation_data=val)
    record = (tmp_path / "run" / "best" / "validation.json").read_text()
    assert '"crps_sum"' in record
    with pytest.raises(ValueError, match="multiple of prediction_length"):
        _estimator("MS", 8).train(train, validation_data=[{"start": "2021-01", "target": r[:205]} for r in target])


def test_nan_targets_and_dynamic_covariates_end_to_end(tmp_path):
    rng = np.random.default_rng(3)
    T, P = 220, 7
    temperature = rng.normal(size=T + P).astype(np.float32)
    demand = (50 + 3 * temperature + rng.normal(size=T + P) * 0.3).astype(np.float32)
    holed = demand.copy()
    holed[40:46] = np.nan
    train = ListDataset([{"start": "2022-01-01", "target": holed[:T], "feat_dynamic_real": temperature[None, :T]}],
                        freq="D")
    predictor = _estimator("D", P, run_dir=tmp_path / "run").train(train)
    assert predictor.forecaster.n_covariates == 1 and predictor.forecaster.spec.missing
    test = ListDataset([{"start": "2022-01-01", "target": demand, "feat_dynamic_real": temperature[None]}], freq="D")
    forecasts, series = make_evaluation_predictions(test, predictor, num_samples=6)
    forecasts = list(forecasts)
    assert forecasts[0].samples.shape == (6, P) and np.isfinite(forecasts[0].samples).all()
    agg, _ = Evaluator()(iter(series), iter(forecasts))
    assert np.isfinite(agg["mean_wQuantileLoss"])
    with pytest.raises(ValueError, match="covariates"):
        list(predictor.predict(ListDataset([{"start": "2022-01-01", "target": demand[:T]}], freq="D")))


def test_entries_that_cannot_be_modelled_jointly_are_refused():
    with pytest.raises(ValueError, match="share one start"):
        _estimator("D", 7).train([{"start": "2020-01-01", "target": _walks(1, 100)[0]},
                                  {"start": "2020-01-01", "target": _walks(1, 90)[0]}])
    with pytest.raises(ValueError, match="empty"):
        _estimator("D", 7).train([])
