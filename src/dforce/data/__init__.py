"""Data: synthetic generators producing (B, T, *D) tensors and a checkpointed Normalizer."""

from .normalizer import Normalizer
from .synthetic import GENERATORS, cross, generate, oscillators

__all__ = ["GENERATORS", "Normalizer", "cross", "generate", "oscillators"]
