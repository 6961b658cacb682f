"""Time-series tables of any frequency: wide and long CSVs, gaps and NaNs, the tsdata catalog, missing values
end to end."""

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("gluonts")

from dforce.config import load_config  # noqa: E402
from dforce.forecasting import windows as fw  # noqa: E402
from dforce.forecasting.metrics import crps_sum, gluonts_metrics, period_freq  # noqa: E402
from dforce.forecasting.model import Forecaster, protocol_for, train_forecaster, training_sequences  # noqa: E402
from dforce.forecasting.series import load_table  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
TINY = ["model.width=16", "model.depth=1", "train.steps=10", "train.eval_every=5", "train.checkpoint_every=10",
        "train.log_every=5", "train.tensorboard=false", "train.batch_size=8", "sampling.steps=2",
        "forecast.samples=4", "forecast.val_samples=2", "forecast.val_windows=2", "diffusion.levels=20",
        "sampling.stabilization=2", "forecast.tokens=increments", "forecast.max_lag=0", "forecast.level_feature=false",
        "data.name=timeseries", "forecast.dataset=table"]


def _wide(freq="D", n=120, series=2, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, series)).cumsum(axis=0) + 50, columns=[f"s{i}" for i in range(series)])
    frame.insert(0, "when", pd.date_range("2001-01-01", periods=n, freq=freq))
    return frame


def test_wide_csv_with_a_gap_and_an_empty_cell(tmp_path):
    frame = _wide()
    frame.loc[5, "s1"] = np.nan
    frame = frame.drop(index=[10, 11])                       # two days absent from the file
    frame.to_csv(tmp_path / "t.csv", index=False)
    series = load_table(tmp_path / "t.csv", prediction_length=7, test_windows=3)
    assert series.freq == "D" and series.n_series == 2 and series.name == "t"
    assert series.train.shape == (2, 120 - 21) and [t.shape[1] for t in series.test] == [106, 113, 120]
    assert np.isnan(series.train[1, 5]) and np.isnan(series.train[:, 10:12]).all()
    assert np.isfinite(series.train[0, :10]).all()


def test_long_table_pivots_items_and_aggregates_repeats():
    rows = [(f"2020-{m:02d}", item, float(m * k)) for m in range(1, 13) for k, item in ((1, "a"), (10, "b"))]
    frame = pd.DataFrame(rows * 2, columns=["month", "id", "y"])         # every row twice
    with pytest.raises(ValueError, match="repeat a timestamp; give aggregate"):
        load_table(frame, 2, 2, time="month", item="id", value="y")
    series = load_table(frame, 2, 2, time="month", item="id", value="y", aggregate="sum")
    assert series.freq == "MS" and series.n_series == 2
    np.testing.assert_array_equal(series.test[-1][1], 2 * 10 * np.arange(1, 13))


@pytest.mark.parametrize("kwargs, message", [
    (dict(time="nope"), "no column 'nope'"),
    (dict(time="text"), "'text' does not hold timestamps"),
    (dict(item="s0"), "needs value="),
    (dict(freq="fortnightly"), "not a pandas frequency"),
    (dict(freq="h"), "not on the 'h' grid"),
])
def test_table_errors_name_the_problem(kwargs, message):
    frame = _wide().assign(s0=lambda f: f.s0.astype(str) if kwargs.get("item") else f.s0)
    if kwargs.get("time") == "text":
        frame = frame.assign(text="soon")
    if kwargs.get("freq") == "h":
        frame = frame.assign(when=frame.when + pd.Timedelta(minutes=30))
        frame.loc[3, "when"] += pd.Timedelta(minutes=10)
    with pytest.raises(ValueError, match=message):
        load_table(frame, 7, 3, **kwargs)


def test_irregular_steps_need_a_frequency_and_text_values_are_refused():
    frame = _wide().iloc[[0, 1, 3, 7, 8, 20]]
    frame.loc[7, "when"] += pd.Timedelta(hours=5)
    with pytest.raises(ValueError, match="cannot infer the frequency"):
        load_table(frame, 1, 1)
    with pytest.raises(ValueError, match="'s1' is not numeric"):
        load_table(_wide().assign(s1="x"), 7, 3)


def test_period_frequencies_and_univariate_scores():
    assert period_freq("MS") == "M" and period_freq("W-MON") == "W-MON" and period_freq("h") == "h"
    rng = np.random.default_rng(0)
    hist = [rng.normal(size=(1, 30 + 4 * w)).astype(np.float32) + 5 for w in range(3)]
    truth = np.stack([h[:, -4:].T for h in hist])
    samples = (truth[:, None] + rng.normal(size=(3, 30, 4, 1)) * 0.5).astype(np.float32)
    ours = crps_sum(truth, samples)
    theirs = gluonts_metrics(hist, samples, "2001-01-01", "MS")
    assert theirs["crps_sum"] == pytest.approx(ours, rel=1e-5) and theirs["crps"] == theirs["crps_sum"]


def test_crps_sum_skips_missing_truth():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(2, 5, 3)) + 4
    samples = truth[:, None] + rng.normal(size=(2, 20, 5, 3))
    holed = truth.copy()
    holed[0, 2, 1] = np.nan
    kept = np.ones((2, 5), bool)
    kept[0, 2] = False
    assert np.isfinite(crps_sum(holed, samples))
    assert crps_sum(holed, samples) == pytest.approx(
        crps_sum(truth[kept][None, :, :], samples.transpose(0, 2, 1, 3)[kept][None].transpose(0, 2, 1, 3)))


# -------------------------------------------------------------------------- missing values


def test_missing_entries_are_filled_flagged_and_masked():
    h = np.random.default_rng(2).normal(size=(2, 60)).cumsum(axis=1).astype(np.float32)
    h[0, 30:33] = np.nan
    h[1, :5] = np.nan
    filled = fw.fill_missing(h)
    np.testing.assert_array_equal(filled[0, 30:33], h[0, 29])   # the last observation carried forward
    np.testing.assert_array_equal(filled[1, :5], h[1, 5])       # a leading gap takes the first observation
    spec = fw.WindowSpec(6, 4, level=False, tokens="increments", missing=True)
    starts = np.array([34, 50])
    tokens, cond, _, _ = fw.window_inputs(h, np.zeros((60, 1), np.float32), starts, spec, fw.typical_step(h),
                                          with_future=True)
    assert np.isfinite(tokens).all() and cond.shape[-1] == spec.cond_dim(2, 1) == 1 + 2 * 2
    assert (tokens[0, 2:5, 0] == 0).all() and tokens[0, 5, 0] != 0     # context steps 28..33: 30, 31, 32 missing
    flags = cond[:, :, -2:]
    assert flags[0, 2, 0] == 0 and flags[0, 5, 0] == 1 and (flags[:, 6:] == 1).all()   # predicted steps: 1
    observed = fw.window_observed(h, starts, spec)
    assert observed.shape == (2, 10, 2) and not observed[0, 2, 0] and observed[1].all()


def test_a_series_with_missing_values_trains_and_forecasts_end_to_end(tmp_path):
    frame = _wide(freq="MS", n=160, series=3, seed=3)
    frame.loc[:20, "s2"] = np.nan                          # a series that starts late
    frame.loc[70:74, "s0"] = np.nan                        # and a gap
    series = load_table(frame, prediction_length=6, test_windows=2)
    cfg = load_config(None, TINY)
    fd = protocol_for(series, cfg.forecast)
    assert fd.spec.missing and fd.protocol()["missing"]
    data = training_sequences(fd)
    assert data.mask is not None and data.mask.shape == data.x.shape and not data.mask.all()
    assert torch.isfinite(data.x).all()
    chosen = train_forecaster(cfg, tmp_path / "run", progress=False, fd=fd)
    forecaster = Forecaster.from_pretrained(chosen)
    assert forecaster.spec.missing
    paths = forecaster.sample([h[:, :-6] for h in series.test], series.start, 5, seed=0)
    assert paths.shape == (2, 5, 6, 3) and np.isfinite(paths).all()
    assert np.isfinite(gluonts_metrics(list(series.test), paths, series.start, series.freq)["crps_sum"])


def test_the_loss_ignores_unobserved_entries():
    from dforce.diffusion import NoiseSchedule, diffusion_forcing_loss

    class Constant(torch.nn.Module):          # its prediction does not depend on the input
        def __init__(self):
            super().__init__()
            self.out = torch.nn.Parameter(torch.zeros(2, 4, 3))

        def forward(self, x, k, cond):
            return self.out.expand_as(x)

    schedule = NoiseSchedule.make(20, "linear")
    x0, noise = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    k = torch.full((2, 4), 5)
    observed = torch.ones(2, 4, 3, dtype=torch.bool)
    observed[0, 1, 2] = observed[1, 3] = False
    changed = x0.clone()
    changed[0, 1, 2] += 100
    changed[1, 3] -= 100
    a = diffusion_forcing_loss(Constant(), schedule, x0, k, noise, target="x0", observed=observed)
    b = diffusion_forcing_loss(Constant(), schedule, changed, k, noise, target="x0", observed=observed)
    assert float(a) == pytest.approx(float(b))
    c = diffusion_forcing_loss(Constant(), schedule, changed, k, noise, target="x0")
    assert float(c) > float(a) * 10


@pytest.mark.parametrize("name, freq, n_series", [("vic_elec_daily", "D", 1), ("us_employment", "MS", 32)])
def test_catalogued_daily_and_monthly_datasets(name, freq, n_series):
    pytest.importorskip("tsdata")
    from dforce.forecasting.catalog import load_catalogued

    series = load_catalogued(f"tsdata:{name}")
    assert series.freq == freq and series.n_series == n_series and len(series.test) == 5
    assert np.isnan(series.train).any() == (name == "us_employment")   # series that start after 1939
    with pytest.raises(ValueError, match="unknown dataset"):
        load_catalogued("tsdata:nope")
