"""Training: one loop, EMA, atomic checkpoints, torchrun data parallelism."""

from .loop import TrainingDiverged, learning_rate, train

__all__ = ["TrainingDiverged", "learning_rate", "train"]
