"""dforce: Diffusion Forcing in practice.

A sequence diffusion model trained with independent per-token noise levels, then
sampled with any per-token schedule (full sequence, next token, or in between)
and guided. See README.md for the concepts and a quick start.
"""

from .pipeline import DiffusionForcingModel

__version__ = "0.1.0"
__all__ = ["DiffusionForcingModel", "__version__"]
