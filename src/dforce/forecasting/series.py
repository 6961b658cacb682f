"""Multivariate time series for probabilistic forecasting (TimeGrad / GluonTS protocol).

Arrays in, tensors out:

* ``load_gluonts`` reads a GluonTS dataset (``*_nips`` benchmarks of Salinas et al. 2019
  as used by TimeGrad) by name, from a ``.tar.gz`` archive or from an extracted directory;
  ``load_ett`` reads an ETDataset CSV. Both return a ``MultivariateSeries``: a train
  target (N, T_train) and rolling test windows (N, T_w), each ending at a test cut.
* ``series_stats`` gives per-series mean/std from the train split only.
* ``covariates`` / ``time_features`` / ``lagged_targets`` build TimeGrad-style inputs;
  every feature at time t depends only on timestamps and on target values before t.
* ``windows`` cuts (M, context + prediction, N) training tokens (one token per time step
  holding all N series); ``test_inputs`` gives (context, truth) for a test window.

gluonts and pandas (the ``[timeseries]`` extra) are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import tarfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import atomic
from ..data.normalizer import STD_FLOOR


@dataclass(frozen=True)
class MultivariateSeries:
    """N aligned series sharing one start and one frequency.

    train: (N, T_train) float32, the training range.
    test: one (N, T_w) float32 array per rolling test window w, each the full history up
        to and including the window's forecast range: its last ``prediction_length``
        steps are the truth, everything before is context. Windows are in time order.
    freq: pandas frequency string ("B", "h", ...); start: pandas Timestamp of step 0.
    covariates: (K, T_all) float32 or None: series known in advance (GluonTS
        ``feat_dynamic_real``: temperature, prices, holidays), from step 0 over at least
        the training range, and over every window that is forecast.
    """

    name: str
    train: np.ndarray
    test: tuple[np.ndarray, ...]
    freq: str
    start: Any
    prediction_length: int
    covariates: np.ndarray | None = None

    @property
    def n_series(self) -> int:
        return int(self.train.shape[0])

    @property
    def series_ids(self) -> np.ndarray:
        """(N,) int64 series indices, for a model's series embedding."""
        return np.arange(self.n_series, dtype=np.int64)

    def forecast_start(self, w: int) -> int:
        """Index (from ``start``) of the first predicted step of test window w."""
        return int(self.test[w].shape[1]) - self.prediction_length

    def index(self, length: int):
        """pandas DatetimeIndex of the first ``length`` steps."""
        import pandas as pd

        return pd.date_range(start=self.start, periods=length, freq=self.freq)


# ---------------------------------------------------------------------------------- loading


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dforce/gluonts``, with ``~/.cache`` when XDG_CACHE_HOME is unset."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dforce" / "gluonts"


def load_gluonts(name_or_path: str | Path, cache_dir: str | Path | None = None) -> MultivariateSeries:
    """Load a GluonTS dataset as a ``MultivariateSeries``.

    ``name_or_path`` is one of
    * a directory holding ``train/``, ``test/`` and a ``metadata.json`` (either GluonTS's
      current format ``{"freq", "prediction_length", ...}`` or the raw 2019 format
      ``{"time_granularity": ...}``, found directly or in ``metadata/``);
    * a ``.tar.gz`` / ``.tgz`` archive of such a directory: it is only read, and its
      contents are extracted into ``cache_dir/archives/<stem>`` (reused afterwards);
    * a GluonTS repository name (``"exchange_rate_nips"``), fetched with
      ``gluonts.dataset.repository.get_dataset(name, path=cache_dir)`` (downloads if online).

    Test-set layout (GluonTS ``*_nips``): the test file repeats the N training series once
    per rolling window, window-major (entries w*N .. w*N+N-1 are window w; GluonTS tags
    them ``feat_static_cat = entry % N``), each entry ``prediction_length`` longer than the
    previous window's. When the metadata has no prediction length (raw archives) it is
    inferred from those length steps, which must all be equal.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = Path(name_or_path)
    if path.is_dir():
        return _load_dir(path, name=path.name)
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise ValueError(f"expected a .tar.gz/.tgz archive or a directory, got file {str(path)!r}")
        stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        return _load_dir(_extract_copy(path, cache / "archives" / stem), name=stem)
    if os.sep in str(name_or_path) or str(name_or_path).endswith((".tar.gz", ".tgz")):
        raise FileNotFoundError(f"no dataset file or directory at {str(name_or_path)!r}")
    return _load_repository(str(name_or_path), cache)


def _extract_copy(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` (atomically: built aside, then renamed) unless already done.

    The archive is opened read-only and never moved or deleted (GluonTS's own downloader
    deletes the archives it extracts, which is why we do not hand it ours).
    """
    if (dest / ".complete").exists():
        return dest
    with atomic.new_directory(dest) as tmp, tarfile.open(archive, "r:*") as tar:
        tar.extractall(tmp, filter="data")
        (tmp / ".complete").touch()
    return dest


def _dataset_root(path: Path) -> Path:
    """The directory holding ``train/`` and ``test/``: ``path`` itself or one child of it."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    found = [c for c in sorted(path.iterdir()) if (c / "train").is_dir() and (c / "test").is_dir()]
    if len(found) != 1:
        raise ValueError(f"{str(path)!r} must contain train/ and test/ (directly or in one subdirectory)")
    return found[0]


def _read_metadata(root: Path) -> tuple[str, int | None]:
    """(freq, prediction_length or None) from metadata.json in ``root`` or ``root/metadata``."""
    for candidate in (root / "metadata.json", root / "metadata" / "metadata.json"):
        if candidate.is_file():
            meta = json.loads(candidate.read_text())
            break
    else:
        raise ValueError(f"no metadata.json in {str(root)!r} or {str(root / 'metadata')!r}")
    freq = meta.get("freq", meta.get("time_granularity"))
    if not freq:
        raise ValueError(f"metadata in {str(root)!r} names no frequency ('freq' or 'time_granularity'): {meta}")
    pl = meta.get("prediction_length")
    return str(freq), (int(pl) if pl is not None else None)


def _load_dir(path: Path, name: str) -> MultivariateSeries:
    """Read train/test JSON lines with GluonTS's ``FileDataset`` and group the test windows."""
    from gluonts.dataset.common import FileDataset

    root = _dataset_root(path)
    freq, pl = _read_metadata(root)
    with _quiet_periods():
        train = list(FileDataset(root / "train", freq=freq, pattern="[!._]*"))
        test = list(FileDataset(root / "test", freq=freq, pattern="[!._]*"))
        return _assemble(name, train, test, freq, pl)


@contextmanager
def _quiet_periods() -> Iterator[None]:
    """GluonTS stores starts as pandas Periods, which pandas>=2.2 deprecates for "B": silence it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BDay freq is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*PeriodDtype\[B\] is deprecated", category=FutureWarning)
        yield


def _load_repository(name: str, cache: Path) -> MultivariateSeries:
    """GluonTS repository dataset (processed format, downloaded on first use)."""
    from gluonts.dataset.repository import dataset_names, get_dataset

    if name not in dataset_names:
        raise ValueError(f"unknown GluonTS dataset {name!r}; not a path either. Known: {sorted(dataset_names)}")
    cache.mkdir(parents=True, exist_ok=True)
    with _quiet_periods():
        ds = get_dataset(name, path=cache)
        return _assemble(name, list(ds.train), list(ds.test), ds.metadata.freq, ds.metadata.prediction_length)


def _assemble(name: str, train: list[dict], test: list[dict], freq: str, pl: int | None) -> MultivariateSeries:
    """Stack train entries to (N, T) and group test entries window-major into (N, T_w) arrays."""
    n = len(train)
    if n == 0 or len(test) == 0 or len(test) % n:
        raise ValueError(f"{name}: need N>0 train series and a multiple of N test entries; got {n} and {len(test)}")
    start = _common_start([e["start"] for e in train + test], name)
    train_arr = _stack([e["target"] for e in train], f"{name} train")
    windows = []
    for w in range(len(test) // n):
        chunk = test[w * n:(w + 1) * n]
        cats = [e.get("feat_static_cat") for e in chunk]
        if all(c is not None for c in cats) and [int(c[0]) for c in cats] != list(range(n)):
            raise ValueError(f"{name}: test window {w} entries are not series 0..{n - 1} in order: {cats}")
        windows.append(_stack([e["target"] for e in chunk], f"{name} test window {w}"))
    ends = [train_arr.shape[1]] + [a.shape[1] for a in windows]
    steps = set(np.diff(ends).tolist())
    if pl is None:
        if len(steps) != 1:
            raise ValueError(f"{name}: cannot infer prediction_length, window ends {ends} are not evenly spaced")
        pl = steps.pop()
    if pl < 1 or any(s < pl for s in np.diff(ends)):
        raise ValueError(f"{name}: test windows must each end >= prediction_length={pl} after the last; ends {ends}")
    return MultivariateSeries(name, train_arr, tuple(windows), freq, start, int(pl))


def as_timestamp(start: Any):
    """A pandas Timestamp from a Timestamp, a pandas Period (GluonTS starts) or anything pd.Timestamp takes."""
    import pandas as pd

    return start.to_timestamp() if isinstance(start, pd.Period) else pd.Timestamp(start)


def _common_start(starts: list, name: str):
    """The shared start of all entries as a pandas Timestamp (aligned multivariate data)."""
    stamps = {as_timestamp(s) for s in starts}
    if len(stamps) != 1:
        raise ValueError(f"{name}: series must share one start to be stacked, got {sorted(stamps)[:5]}")
    return stamps.pop()


def _stack(targets: list, what: str) -> np.ndarray:
    lengths = {len(t) for t in targets}
    if len(lengths) != 1:
        raise ValueError(f"{what}: series lengths differ {sorted(lengths)}; cannot stack")
    return np.stack([np.asarray(t, dtype=np.float32) for t in targets])


def load_ett(path: str | Path, prediction_length: int = 24, test_windows: int = 7) -> MultivariateSeries:
    """ETDataset hourly CSV (ETTh1/ETTh2: ``date`` + 7 columns) under the rolling protocol of :func:`load_table`.

    (Our choice, mirroring the GluonTS ``*_nips`` rolling evaluation, not the 12/4/4-month
    split of the Informer papers.) Series are all columns but ``date``, in file order.
    """
    return load_table(path, prediction_length, test_windows, time="date", freq="h")


def load_table(source: Any, prediction_length: int, test_windows: int, *, time: str | None = None,
               value: str | None = None, item: str | None = None, freq: str | None = None,
               time_format: str | None = None, aggregate: str | None = None, name: str | None = None
               ) -> MultivariateSeries:
    """A CSV file or pandas DataFrame as a ``MultivariateSeries`` under the rolling protocol.

    Two layouts:

    * wide: a time column (``time``, default the first column) and one numeric column
      per series (``value`` picks a single one);
    * long: ``time``, ``item`` (series id) and ``value`` columns, one row per observation.

    Timestamps are parsed with ``pd.to_datetime`` (``time_format`` if given). ``freq`` (any
    pandas frequency) is inferred when not given. Steps missing from the frequency grid
    and empty cells become NaN (missing values). Rows sharing a timestamp (and item) are
    combined with ``aggregate`` ("sum", "mean", ...; without it they are an error).

    Protocol: with T steps, the last ``test_windows * prediction_length`` are the test range;
    window w ends at ``T - (test_windows - 1 - w) * prediction_length`` and forecasts its
    last ``prediction_length`` steps, ``test[w]`` being the whole history up to that end;
    ``train`` is everything before the first window's forecast start.
    """
    import pandas as pd

    label = name or (Path(source).name if isinstance(source, (str, Path)) else "DataFrame")
    if prediction_length < 1 or test_windows < 1:
        raise ValueError(f"{label}: need prediction_length >= 1 and test_windows >= 1; got {prediction_length}, "
                         f"{test_windows}")
    frame = _read_frame(source, label)
    wide = _wide(frame, label, time or str(frame.columns[0]), value, item, time_format, aggregate)
    wide = _on_grid(wide, label, freq)
    target = wide.to_numpy(dtype=np.float32).T                                    # (N, T)
    t_total = target.shape[1]
    cut = t_total - test_windows * prediction_length
    if cut < 2:
        raise ValueError(f"{label}: {t_total} steps leave no training range for {test_windows} test windows of "
                         f"{prediction_length}")
    ends = [t_total - (test_windows - 1 - w) * prediction_length for w in range(test_windows)]
    test = tuple(target[:, :e].copy() for e in ends)
    stem = label.removesuffix(".gz").removesuffix(".csv")
    return MultivariateSeries(stem, target[:, :cut].copy(), test, wide.index.freqstr, wide.index[0],
                              prediction_length)


def _read_frame(source: Any, label: str):
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {str(path)!r}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{label}: not a readable CSV ({str(e).splitlines()[0]})") from None
    if frame.shape[1] < 2:
        raise ValueError(f"{label}: need a time column and at least one value column, got columns {list(frame.columns)}")
    return frame


def _wide(frame: Any, label: str, time: str, value: str | None, item: str | None, time_format: str | None,
          aggregate: str | None):
    """(T, N) DataFrame indexed by parsed timestamps, one numeric column per series."""
    import pandas as pd

    needed = [c for c in (time, value, item) if c is not None]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise ValueError(f"{label}: no column {absent[0]!r}; columns are {list(frame.columns)}")
    if item is not None and value is None:
        raise ValueError(f"{label}: a long table (item={item!r}) needs value= naming the value column")
    try:
        stamps = pd.to_datetime(frame[time], format=time_format)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{label}: column {time!r} does not hold timestamps ({str(e).splitlines()[0]})") from None
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_localize(None)
    frame = frame.assign(**{time: stamps})
    if item is not None:
        keys = [time, item]
        columns = [value]
    else:
        keys = [time]
        columns = [value] if value is not None else [c for c in frame.columns if c != time]
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"{label}: column {bad[0]!r} is not numeric")
    if frame.duplicated(keys).any():
        if aggregate is None:
            raise ValueError(f"{label}: {int(frame.duplicated(keys).sum())} rows repeat a timestamp; give aggregate= "
                             "to combine them")
        frame = frame.groupby(keys, as_index=False)[columns].agg(aggregate)
    if item is not None:
        return frame.pivot(index=time, columns=item, values=value).sort_index()
    return frame.set_index(time)[columns].sort_index()


def _infer_freq(index: Any) -> str | None:
    """pandas' inferred frequency of ``index``, or of its first stretch of 5 regular steps when it has gaps
    (the whole index must then lie on that grid, which the caller checks)."""
    import pandas as pd

    if len(index) < 3:
        return None
    freq = pd.infer_freq(index)
    for i in range(min(len(index) - 4, 50)):
        if freq is not None:
            break
        freq = pd.infer_freq(index[i:i + 5])
    return freq


def _on_grid(wide: Any, label: str, freq: str | None):
    """``wide`` reindexed onto its frequency's full grid (absent steps NaN); the index gets the freq."""
    import pandas as pd

    index = pd.DatetimeIndex(wide.index)
    if freq is None:
        freq = _infer_freq(index)
        if freq is None:
            raise ValueError(f"{label}: cannot infer the frequency (irregular steps); give freq=")
    try:
        grid = pd.date_range(index[0], index[-1], freq=freq)
    except ValueError as e:
        raise ValueError(f"{label}: freq={freq!r} is not a pandas frequency ({str(e).splitlines()[0]})") from None
    off = index.difference(grid)
    if len(off):
        raise ValueError(f"{label}: {len(off)} timestamps are not on the {freq!r} grid, e.g. {off[0]}")
    return wide.reindex(grid)


# ------------------------------------------------------------------------- normalization


def series_stats(train: np.ndarray, std_floor: float = STD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-series (mean, std), each (N, 1) float32, from the train split (N, T) only.

    NaNs are ignored; std is floored at ``std_floor`` so a constant series stays finite.
    """
    if train.ndim != 2:
        raise ValueError(f"train must be (N, T), got shape {train.shape}")
    mean = np.nanmean(train, axis=1, keepdims=True)
    std = np.maximum(np.nanstd(train, axis=1, keepdims=True), std_floor)
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std for x (N, T) and stats (N, 1)."""
    return ((x - mean) / std).astype(np.float32)


# ---------------------------------------------------------------------------- covariates


def _as_index(index):
    """A pandas DatetimeIndex/PeriodIndex, or one built from (start, freq, length)."""
    import pandas as pd

    if isinstance(index, (pd.DatetimeIndex, pd.PeriodIndex)):
        return index
    if isinstance(index, tuple) and len(index) == 3:
        start, freq, length = index
        return pd.date_range(start=as_timestamp(start), periods=int(length), freq=freq)
    raise TypeError(f"index must be a pandas DatetimeIndex/PeriodIndex or (start, freq, length); got {type(index)}")


def time_features(index) -> np.ndarray:
    """(T, F) float32 GluonTS time features (``time_features_from_frequency_str``) at each step.

    They depend on the timestamps only, so step t never sees the target.
    """
    from gluonts.time_feature import time_features_from_frequency_str

    idx = _as_index(index)
    if idx.freqstr is None:
        raise ValueError("index has no frequency; build it with pandas date_range/period_range")
    feats = time_features_from_frequency_str(idx.freqstr)
    return np.stack([np.asarray(f(idx), dtype=np.float32) for f in feats], axis=-1)


def default_lags(freq: str, max_lag: int) -> list[int]:
    """GluonTS ``get_lags_for_frequency(freq)`` keeping only lags in [1, max_lag].

    The cap: a lag L at the first context step needs L steps of history before the window.
    TimeGrad feeds up to ~780 business days of extra history for Exchange; we keep the
    lags the caller can afford, typically ``max_lag = context_length`` (lags then stay
    inside the context + prediction window) or the history available before the window.
    """
    from gluonts.time_feature import get_lags_for_frequency

    if max_lag < 1:
        raise ValueError(f"max_lag must be >= 1, got {max_lag}")
    return [lag for lag in get_lags_for_frequency(freq) if 1 <= lag <= max_lag]


def lagged_targets(target: np.ndarray, lags: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lagged values: out[n, t, j] = target[n, t - lags[j]], zero where t - lag < 0.

    target (N, T); returns (values (N, T, L) float32, mask (N, T, L) bool, True = available).
    Lags must be > 0, so step t uses only strictly earlier values (no future leakage).
    """
    if target.ndim != 2:
        raise ValueError(f"target must be (N, T), got shape {target.shape}")
    if len(lags) == 0 or any(int(lag) < 1 for lag in lags):
        raise ValueError(f"lags must be a non-empty list of ints >= 1, got {list(lags)}")
    n, t = target.shape
    values = np.zeros((n, t, len(lags)), dtype=np.float32)
    mask = np.zeros((n, t, len(lags)), dtype=bool)
    for j, lag in enumerate(int(lag) for lag in lags):
        if lag < t:
            values[:, lag:, j] = target[:, : t - lag]
            mask[:, lag:, j] = True
    return values, mask


@dataclass(frozen=True)
class Covariates:
    """time: (T, F) float32 time features; series_ids: (N,) int64; lags: the lags to use."""

    time: np.ndarray
    series_ids: np.ndarray
    lags: tuple[int, ...]


def covariates(index, n_series: int, lags: Sequence[int] | None = None, max_lag: int | None = None) -> Covariates:
    """TimeGrad-style covariates for the steps of ``index``.

    ``index``: pandas DatetimeIndex/PeriodIndex with a freq, or (start, freq, length).
    ``lags`` defaults to ``default_lags(freq, max_lag)`` (``max_lag`` defaults to the
    index length). Lagged values themselves come from ``lagged_targets(target, lags)``;
    the series embedding is a model concern, so only the integer ids are given.
    """
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    idx = _as_index(index)
    if lags is None:
        lags = default_lags(idx.freqstr, max_lag if max_lag is not None else len(idx))
    return Covariates(time_features(idx), np.arange(n_series, dtype=np.int64), tuple(int(lag) for lag in lags))


# ------------------------------------------------------------------------------ windows


def windows(series: np.ndarray | Tensor, context_length: int, prediction_length: int, stride: int = 1) -> Tensor:
    """Training windows (M, context_length + prediction_length, N) float32 from (N, T).

    Window m covers steps [m*stride, m*stride + L); one token per time step holds all N
    series. Pass the normalized train range only, so no window touches the test range.
    """
    x = torch.as_tensor(series, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"series must be (N, T), got shape {tuple(x.shape)}")
    if context_length < 0 or prediction_length < 1 or stride < 1:
        raise ValueError(f"need context_length>=0, prediction_length>=1, stride>=1; got "
                         f"{context_length}, {prediction_length}, {stride}")
    length = context_length + prediction_length
    if length > x.shape[1]:
        raise ValueError(f"window length {length} exceeds the series length {x.shape[1]}")
    return x.unfold(1, length, stride).permute(1, 2, 0).contiguous()         # (M, L, N)


def test_inputs(ms: MultivariateSeries, w: int, context_length: int) -> tuple[Tensor, Tensor]:
    """(context (context_length, N), truth (prediction_length, N)) for test window w, raw scale."""
    if not 0 <= w < len(ms.test):
        raise ValueError(f"window w must be in [0, {len(ms.test)}), got {w}")
    start = ms.forecast_start(w)
    if not 0 <= context_length <= start:
        raise ValueError(f"context_length must be in [0, {start}] for window {w}, got {context_length}")
    arr = torch.as_tensor(ms.test[w])
    return arr[:, start - context_length:start].T.contiguous(), arr[:, start:].T.contiguous()
