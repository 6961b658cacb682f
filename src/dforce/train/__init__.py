"""Training: one loop, EMA, atomic verified checkpoints, torchrun data parallelism."""

from .errors import CheckpointError, TrainingDiverged
from .loop import learning_rate, train

__all__ = ["CheckpointError", "TrainingDiverged", "learning_rate", "train"]
