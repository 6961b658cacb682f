"""Causal sequence denoisers with a streaming path (see ``protocol``)."""

from .embeddings import LevelEmbedding
from .frames import FrameDenoiser
from .protocol import Denoiser, State
from .recompute import Recompute
from .rnn import GRUDenoiser
from .transformer import CausalTransformer

__all__ = ["Denoiser", "State", "LevelEmbedding", "GRUDenoiser", "CausalTransformer", "FrameDenoiser", "Recompute"]
