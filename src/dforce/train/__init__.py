"""Training: one loop, EMA, atomic verified checkpoints, torchrun data parallelism."""

from .errors import CheckpointError, TrainingDiverged
from .loop import check_config, learning_rate, train

__all__ = ["CheckpointError", "TrainingDiverged", "check_config", "learning_rate", "train"]
