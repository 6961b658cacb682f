"""Data: a checkpointed Normalizer, training sequences (in memory or drawn fresh per batch) and
the domain loaders (Maze2D, video; time series live in :mod:`dforce.forecasting`).
The synthetic generators live in :mod:`dforce.synthetic`."""

from .normalizer import Normalizer
from .sequences import FreshSequences, Sequences, random_windows, suffixes

__all__ = ["FreshSequences", "Normalizer", "Sequences", "random_windows", "suffixes"]
