"""Data: a checkpointed Normalizer, training sequences (in memory or drawn fresh per batch) and
the domain loaders (``dforce.data.timeseries`` with the [timeseries] extra, Maze2D, video).
The synthetic generators live in :mod:`dforce.synthetic`."""

from .normalizer import Normalizer
from .sequences import FreshSequences, Sequences, random_windows, suffixes

__all__ = ["FreshSequences", "Normalizer", "Sequences", "random_windows", "suffixes"]
