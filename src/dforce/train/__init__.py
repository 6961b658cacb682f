"""Training: one loop, EMA, atomic verified checkpoints, torchrun data parallelism."""

from .errors import CheckpointError, RunDirError, TrainingDiverged, TrainingInterrupted
from .loop import check_config, learning_rate, train

__all__ = ["CheckpointError", "RunDirError", "TrainingDiverged", "TrainingInterrupted", "check_config",
           "learning_rate", "train"]
