"""Forecast windows: tokens and per-token conditioning for context + prediction windows.

One function, :func:`window_inputs`, builds what the model sees for any set of windows,
so training windows and test windows can never be built differently. A window with
forecast start ``s`` covers steps ``[s - C, s + P)`` of a series normalized by
train-split statistics (``series_stats``): ``C`` context steps, ``P`` predicted ones.

* Tokens are scaled per window from the context only. Level tokens are ``(h - loc) / scale``,
  increment tokens ``(h_t - h_{t-1}) / scale`` (``spec.tokens``), with
  ``loc`` the last context value and ``scale`` the mean absolute one-step change over
  the context (the role GluonTS's per-window scaler plays in TimeGrad/DeepAR), floored
  at a fraction of the series' typical step over the training range (a context that
  happens to be flat must not blow the window up). A random walk then has increments
  of order one, whatever its level or volatility. Tokens are clipped to
  ``TOKEN_CLIP`` (about the 99.9th percentile of |token| on Exchange).
  Why increments: on a random-walk-like series one step is a small fraction of a level
  token's spread across a window, so a model of levels must resolve the signal that
  matters (the next move) as a small difference of large numbers; an increment token
  *is* that move, of order one at every step. Levels are recovered by a cumulative sum
  from ``loc`` (:meth:`WindowSpec.levels`).
* Conditioning at step t (TimeGrad-style covariates): GluonTS time features of t;
  seasonal lags ``h[t - l] - loc`` for lags ``l >= C + P`` (so every lag of every token
  lies before the window: observed history at test time, never a generated value);
  the window's ``log(scale)`` for every series; and, when ``spec.level`` is set, its
  level ``loc`` (in train-std units), which lets a model learn level-dependent
  behaviour such as mean reversion, and also lets it learn spurious drifts.

Series identity needs no embedding here: one token holds all N series, each at its own
coordinate, so the network's input weights are already per series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKEN_KINDS = ("levels", "increments")
FLOOR_FRACTION = 0.5  # a window's scale is at least this fraction of the series' typical step
TOKEN_CLIP = 40.0     # |tokens| beyond this are clipped: a rare jump (a currency devaluation) must not
                      # dominate the per-dimension statistics every other window is normalized by


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry, seasonal lags (all >= ``length``) and the token kind ("levels" or "increments")."""

    context_length: int
    prediction_length: int
    lags: tuple[int, ...] = ()
    level: bool = True
    tokens: str = "levels"
    missing: bool = False         # the data has missing values: condition on which context entries were observed

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_KINDS:
            raise ValueError(f"tokens={self.tokens!r} is not one of {', '.join(TOKEN_KINDS)}")
        if self.context_length < 2 or self.prediction_length < 1:
            raise ValueError(f"need context_length >= 2 and prediction_length >= 1; got "
                             f"{self.context_length}, {self.prediction_length}")
        if any(lag < self.length for lag in self.lags):
            raise ValueError(f"seasonal lags must be >= the window length {self.length} (no lag may reach "
                             f"into the window); got {list(self.lags)}")

    @property
    def length(self) -> int:
        return self.context_length + self.prediction_length

    @property
    def history(self) -> int:
        """Steps needed before a forecast start: the context, the longest lag, and one more for increments."""
        return self.context_length + max(self.lags, default=0) + int(self.tokens == "increments")

    def levels(self, tokens: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Predicted tokens (M, ..., P, N) back to normalized levels; loc/scale (M, N).

        Increments are summed along the step axis (-2) from the last context value.
        """
        if self.tokens == "increments":
            tokens = np.cumsum(tokens, axis=-2)
        return unscale(tokens, loc, scale)

    def cond_dim(self, n_series: int, n_time_features: int) -> int:
        return n_time_features + n_series * (len(self.lags) + 1 + int(self.level) + int(self.missing))


def seasonal_lags(freq: str, window_length: int, max_lag: int) -> tuple[int, ...]:
    """GluonTS's lags for ``freq`` within [window_length, max_lag], one per season.

    GluonTS lists lags in triplets around each seasonal period (l-1, l, l+1); the centre
    is kept, since the RNN sees neighbouring steps through the context anyway.
    """
    from gluonts.time_feature import get_lags_for_frequency

    lags = sorted({lag for lag in get_lags_for_frequency(freq) if window_length <= lag <= max_lag})
    runs: list[list[int]] = []
    for lag in lags:
        if runs and lag == runs[-1][-1] + 1:
            runs[-1].append(lag)
        else:
            runs.append([lag])
    return tuple(run[len(run) // 2] for run in runs)


def typical_step(h: np.ndarray) -> np.ndarray:
    """(N,) mean absolute one-step change of each series of h (N, T), floored at 1e-6."""
    return np.maximum(np.nanmean(np.abs(np.diff(h, axis=1)), axis=1), 1e-6).astype(np.float32)


def window_scale(h: np.ndarray, starts: np.ndarray, context_length: int,
                 step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loc, scale), each (M, N), from the context steps [s - C, s) of each start s.

    h: (N, T) normalized series; step: (N,) typical steps from the training range. loc is
    the last context value; scale the mean absolute one-step change over the context,
    at least ``FLOOR_FRACTION * step``.
    """
    ctx = h[:, starts[:, None] + np.arange(-context_length, 0)]                   # (N, M, C)
    loc = ctx[:, :, -1].T
    scale = np.maximum(np.abs(np.diff(ctx, axis=2)).mean(axis=2).T, FLOOR_FRACTION * step)
    return loc.astype(np.float32), scale.astype(np.float32)


def window_inputs(h: np.ndarray, time_feats: np.ndarray, starts: np.ndarray, spec: WindowSpec, step: np.ndarray,
                  with_future: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens and conditioning for the windows with forecast starts ``starts``.

    h: (N, T) normalized series; only steps before ``s`` are read, plus ``[s, s + P)`` when
    ``with_future`` (training windows). time_feats: (T', F) with T' >= max(starts) + P.
    step: (N,) ``typical_step`` of the training range (the scale floor).
    Returns tokens (M, C [+ P], N), cond (M, C + P, Cc), loc (M, N), scale (M, N), float32.
    """
    C, P = spec.context_length, spec.prediction_length
    starts = np.asarray(starts, dtype=np.int64)
    if starts.ndim != 1 or len(starts) == 0:
        raise ValueError(f"starts must be a non-empty 1-D array, got shape {starts.shape}")
    if starts.min() < spec.history:
        raise ValueError(f"a forecast start needs {spec.history} steps of history (context + longest lag); "
                         f"got a start at {int(starts.min())}")
    if starts.max() + P > len(time_feats) or (with_future and starts.max() + P > h.shape[1]):
        raise ValueError(f"a window ending at {int(starts.max()) + P} runs past the series or its time features")
    observed = np.isfinite(h)
    h = fill_missing(h)
    loc, scale = window_scale(h, starts, C, step)
    steps = starts[:, None] + np.arange(-C, P)                                     # (M, C + P)
    seen = steps if with_future else steps[:, :C]
    base = h[:, seen - 1] if spec.tokens == "increments" else loc.T[:, :, None]   # what each token is relative to
    tokens = np.clip((h[:, seen] - base).transpose(1, 2, 0) / scale[:, None], -TOKEN_CLIP, TOKEN_CLIP)
    tokens = np.where(observed[:, seen].transpose(1, 2, 0), tokens, 0.0)           # a missing entry: no move
    lagged = [h[:, steps - lag].transpose(1, 2, 0) - loc[:, None] for lag in spec.lags]   # each (M, L, N)
    static = np.concatenate([loc, np.log(scale)] if spec.level else [np.log(scale)], axis=1)
    static = static[:, None].repeat(C + P, axis=1)
    flags = [context_observed(observed, steps, C)] if spec.missing else []
    cond = np.concatenate([time_feats[steps], *lagged, static, *flags], axis=2)
    return tokens.astype(np.float32), cond.astype(np.float32), loc, scale


def context_observed(observed: np.ndarray, steps: np.ndarray, context_length: int) -> np.ndarray:
    """(M, C + P, N) float: 1 where a context entry was observed; 1 at every predicted step.

    Predicted steps are always flagged observed, in training as at test time, so the flag
    never tells the model which targets are missing.
    """
    flags = np.ones((*steps.shape, observed.shape[0]), np.float32)
    flags[:, :context_length] = observed[:, steps[:, :context_length]].transpose(1, 2, 0)
    return flags


def window_observed(h: np.ndarray, starts: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """(M, C + P, N) bool: which entries of each training window were observed (the loss mask)."""
    steps = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(-spec.context_length, spec.prediction_length)
    return np.isfinite(h[:, steps]).transpose(1, 2, 0)


def fill_missing(h: np.ndarray) -> np.ndarray:
    """h (N, T) with each NaN replaced by the last observed value before it (the first after it for a
    leading gap; 0 for a series never observed). Finite arrays are returned as they are."""
    missing = ~np.isfinite(h)
    if not missing.any():
        return h
    T = h.shape[1]
    last = np.where(~missing, np.arange(T), -1)
    np.maximum.accumulate(last, axis=1, out=last)
    first = np.where(~missing, np.arange(T), T)
    first = np.minimum.accumulate(first[:, ::-1], axis=1)[:, ::-1]
    source = np.where(last >= 0, last, np.minimum(first, T - 1))
    filled = np.take_along_axis(h, source, axis=1)
    return np.where(np.isfinite(filled), filled, 0.0).astype(h.dtype)


def unscale(tokens: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Back from window units to normalized units: tokens (M, ..., N), loc/scale (M, N)."""
    extra = (1,) * (tokens.ndim - 2)
    shape = (loc.shape[0], *extra, loc.shape[1])
    return tokens * scale.reshape(shape) + loc.reshape(shape)


def training_starts(length: int, spec: WindowSpec, stride: int = 1) -> np.ndarray:
    """Forecast starts of every training window inside a range of ``length`` steps."""
    last = length - spec.prediction_length
    if last < spec.history:
        raise ValueError(f"a training range of {length} steps is too short for windows needing "
                         f"{spec.history} steps of history and {spec.prediction_length} to predict")
    return np.arange(spec.history, last + 1, stride, dtype=np.int64)
