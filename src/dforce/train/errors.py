"""Why a training run stopped, as exception types the CLI maps to exit codes.

``CheckpointError`` and ``RunDirError`` are ``ValueError``s, so the CLI prints them as
one line and exits 2 like any other bad input; ``TrainingDiverged`` exits 1 and
``TrainingInterrupted`` exits 128 + the signal number, as a shell reports a signal.
"""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the checkpoints on disk are left as they were."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training; ``exit_code`` is 128 + the signal number (143, 130)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum

    @staticmethod
    def name(signum: int) -> str:
        return signal.Signals(signum).name


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupted or does not fit the model; the message names the file."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


class RunDirError(ValueError):
    """A run directory that this run may not use (foreign, locked, missing, or holding another config)."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message squeezed onto one line (torch and safetensors errors span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
