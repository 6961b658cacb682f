"""Data: synthetic generators producing (B, T, *D) tensors, a checkpointed Normalizer,
in-memory training sequences, and (with the [timeseries] extra) GluonTS/ETT loaders in
``dforce.data.timeseries``."""

from .linear_gaussian import LinearGaussian, linear_gaussian
from .normalizer import Normalizer
from .sequences import Sequences
from .synthetic import GENERATORS, cross, generate, oscillators

__all__ = ["GENERATORS", "LinearGaussian", "Normalizer", "Sequences", "cross", "generate", "linear_gaussian",
           "oscillators"]
