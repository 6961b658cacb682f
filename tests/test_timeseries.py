"""Time-series data layer: GluonTS/ETT loading, train-only statistics, causal covariates, windows."""

import numpy as np
import pytest
import torch

pytest.importorskip("gluonts")
pd = pytest.importorskip("pandas")

from dforce.forecasting import series as ts  # noqa: E402
from helpers import DATA  # noqa: E402

SHARED = DATA / "timeseries"
EXCHANGE = SHARED / "exchange_rate_nips.tar.gz"
ETTH1 = SHARED / "ETTh1.csv"
pytestmark = pytest.mark.filterwarnings("ignore:Using `json`-module:UserWarning")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    if not EXCHANGE.is_file():
        pytest.skip(f"shared data file missing: {EXCHANGE}")
    size = EXCHANGE.stat().st_size
    cache = tmp_path_factory.mktemp("gluonts_cache")
    ms = ts.load_gluonts(str(EXCHANGE), cache_dir=cache)
    assert EXCHANGE.is_file() and EXCHANGE.stat().st_size == size  # the shared archive is untouched
    return ms, cache


@pytest.fixture(scope="module")
def etth1():
    if not ETTH1.is_file():
        pytest.skip(f"shared data file missing: {ETTH1}")
    return ts.load_ett(ETTH1, prediction_length=24, test_windows=7)


def test_exchange_structure(exchange):
    ms, _ = exchange
    assert ms.name == "exchange_rate_nips" and ms.freq == "B" and ms.prediction_length == 30
    assert ms.train.shape == (8, 6071) and ms.train.dtype == np.float32
    assert ms.start == pd.Timestamp("1990-01-01")
    assert len(ms.test) == 5
    for w, window in enumerate(ms.test):
        # window w = the 8 series' w-th test entries, ending 30*(w+1) steps after the train end
        assert window.shape == (8, 6071 + 30 * (w + 1))
        prev = ms.train if w == 0 else ms.test[w - 1]
        np.testing.assert_array_equal(window[:, : prev.shape[1]], prev)  # each window extends the last
        assert ms.forecast_start(w) == 6071 + 30 * w
    np.testing.assert_array_equal(ms.series_ids, np.arange(8))


def test_exchange_matches_gluonts_grouping_and_registry(exchange):
    """GluonTS's own converter tags test entry i with series i % N: our window i // N, row i % N."""
    from gluonts.dataset.repository import _gp_copula_2019 as gp

    ms, cache = exchange
    info = gp.datasets_info["exchange_rate_nips"]
    assert (ms.n_series, ms.prediction_length, ms.freq, len(ms.test)) == (
        info.num_series, info.prediction_length, info.freq, info.rolling_evaluations)
    entries = gp.get_data(cache / "archives" / "exchange_rate_nips" / "exchange_rate_nips" / "test", info)
    assert len(entries) == 40
    for i, e in enumerate(entries):
        assert e["feat_static_cat"] == [i % 8]
        np.testing.assert_allclose(ms.test[i // 8][i % 8], e["target"])


def test_archive_is_extracted_once_into_cache(exchange):
    ms, cache = exchange
    assert sorted(p.name for p in (cache / "archives").iterdir()) == ["exchange_rate_nips"]
    again = ts.load_gluonts(EXCHANGE, cache_dir=cache)  # reuses the extracted copy
    np.testing.assert_array_equal(again.train, ms.train)


def test_directory_in_current_gluonts_format(tmp_path):
    """A directory written by GluonTS (metadata with freq and prediction_length) loads too."""
    from gluonts.dataset.common import MetaData, TrainDatasets
    from gluonts.dataset.jsonl import JsonLinesWriter

    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 40)).astype(np.float32)
    start = pd.Period("2020-01-01 00:00", freq="h")
    train = [{"start": start, "target": full[i, :30]} for i in range(3)]
    test = [{"start": start, "target": full[i, : 30 + 5 * (w + 1)], "feat_static_cat": [i]}
            for w in range(2) for i in range(3)]
    meta = MetaData(freq="h", prediction_length=5)
    TrainDatasets(metadata=meta, train=train, test=test).save(str(tmp_path / "toy"), writer=JsonLinesWriter())
    ms = ts.load_gluonts(tmp_path / "toy")
    assert (ms.freq, ms.prediction_length, ms.train.shape) == ("h", 5, (3, 30))
    np.testing.assert_allclose(ms.test[1], full)


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown GluonTS dataset 'no_such_set'"):
        ts.load_gluonts("no_such_set", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        ts.load_gluonts(str(tmp_path / "missing.tar.gz"))
    with pytest.raises(ValueError, match="lags must be"):
        ts.lagged_targets(np.zeros((2, 5)), [0, 1])


def test_default_cache_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ts.default_cache_dir() == tmp_path / "dforce" / "gluonts"


def test_etth1_rolling_windows(etth1):
    ms = etth1
    assert ms.n_series == 7 and ms.freq == "h" and len(ms.test) == 7 and ms.prediction_length == 24
    total = ms.test[-1].shape[1]
    assert total == 17420
    assert ms.train.shape == (7, total - 7 * 24)
    forecast_ranges = [set(range(ms.forecast_start(w), ms.test[w].shape[1])) for w in range(7)]
    for w, rng in enumerate(forecast_ranges):
        assert ms.test[w].shape[1] == total - (6 - w) * 24 and len(rng) == 24
        assert min(rng) >= ms.train.shape[1]  # train ends before every forecast range
    assert len(set().union(*forecast_ranges)) == 7 * 24  # windows tile the test range, no overlap
    np.testing.assert_array_equal(ms.test[0][:, : ms.train.shape[1]], ms.train)
    assert ms.index(2)[1] - ms.index(2)[0] == pd.Timedelta(hours=1)
    raw = pd.read_csv(ETTH1)
    np.testing.assert_allclose(ms.test[-1][:, -1], raw.iloc[-1, 1:].to_numpy(dtype=np.float32))


def test_stats_use_train_only(etth1):
    ms = etth1
    mean, std = ts.series_stats(ms.train)
    assert mean.shape == std.shape == (7, 1)
    np.testing.assert_allclose(mean[:, 0], ms.train.mean(1), rtol=1e-4)
    for window in ms.test:
        window[:, ms.train.shape[1]:] += 1e3  # (a copy owned by the fixture; restored below)
    try:
        mean2, std2 = ts.series_stats(ms.train)
        np.testing.assert_array_equal(mean, mean2)
        np.testing.assert_array_equal(std, std2)
    finally:
        for window in ms.test:
            window[:, ms.train.shape[1]:] -= 1e3
    _, floored = ts.series_stats(np.ones((2, 10), dtype=np.float32))
    assert (floored > 0).all()


def test_no_future_leakage_in_covariates():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(3, 50)).astype(np.float32)
    lags = ts.default_lags("B", max_lag=20)
    assert lags and min(lags) >= 1 and max(lags) <= 20
    values, mask = ts.lagged_targets(target, lags)
    assert values.shape == mask.shape == (3, 50, len(lags))
    j = lags.index(7)
    np.testing.assert_array_equal(values[:, 7:, j], target[:, :-7])
    assert not mask[:, :7, j].any() and (values[:, :7, j] == 0).all() and mask[:, 7:, j].all()
    t = 30
    perturbed = target.copy()
    perturbed[:, t:] += 100.0  # change everything from step t on
    values2, mask2 = ts.lagged_targets(perturbed, lags)
    np.testing.assert_array_equal(values[:, : t + 1], values2[:, : t + 1])  # step t sees only < t
    np.testing.assert_array_equal(mask, mask2)
    assert not np.array_equal(values[:, t + 1:], values2[:, t + 1:])

    cov_short = ts.covariates(("1990-01-01", "B", t + 1), n_series=3)
    cov_long = ts.covariates(pd.date_range("1990-01-01", periods=50, freq="B"), n_series=3)
    assert cov_long.time.shape == (50, 3) and cov_long.time.dtype == np.float32
    np.testing.assert_array_equal(cov_short.time, cov_long.time[: t + 1])
    np.testing.assert_array_equal(cov_long.series_ids, np.arange(3))
    assert max(cov_short.lags) <= t + 1  # default lags are capped to the index length


def test_windows_and_test_inputs(exchange):
    ms, _ = exchange
    mean, std = ts.series_stats(ms.train)
    x = ts.normalize(ms.train, mean, std)
    w = ts.windows(x, context_length=30, prediction_length=30, stride=100)
    assert w.shape == ((6071 - 60) // 100 + 1, 60, 8) and w.dtype == torch.float32
    torch.testing.assert_close(w[2, :, 5], torch.from_numpy(x[5, 200:260]))
    context, truth = ts.test_inputs(ms, 4, context_length=30)
    assert context.shape == truth.shape == (30, 8)
    torch.testing.assert_close(truth, torch.from_numpy(ms.test[4][:, -30:].T.copy()))
    torch.testing.assert_close(context, torch.from_numpy(ms.test[4][:, -60:-30].T.copy()))
    with pytest.raises(ValueError, match="window w"):
        ts.test_inputs(ms, 5, 30)
    with pytest.raises(ValueError, match="exceeds"):
        ts.windows(x[:, :10], 30, 30)
