"""SIGTERM and SIGINT as requests to stop between training steps, so a run saves before it exits.

Inside the loop the first signal only sets a flag: the loop finishes the step, every
process agrees to stop (the flag rides on the loss all-reduce), rank 0 writes a
checkpoint and :class:`TrainingInterrupted` carries exit code 143 or 130 to the CLI.
A second Ctrl-C stops at once. Outside the loop SIGTERM raises like SIGINT does, so
the CLI can still answer with one line and 143 instead of dying silently.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from .errors import TrainingInterrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Signal handler that remembers the first stop signal; ``signum`` is 0 until one arrives.

    A second SIGINT (Ctrl-C again) stops at once. Repeated SIGTERMs do not: the kernel sends
    the parent-death signal once per re-parenting, so a worker of a killed multi-threaded
    launcher receives it twice without anyone asking for haste.
    """

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:   # asked twice: the user will not wait for the checkpoint
            raise TrainingInterrupted(signum, "stopped at once by a second SIGINT; "
                                              "resume with --resume from the newest checkpoint on disk")
        self.signum = self.signum or signum


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Route SIGTERM/SIGINT to a StopRequest while the block runs (main thread only; elsewhere none arrive)."""
    request = StopRequest()
    with _handlers(request):
        yield request


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Make SIGTERM raise TrainingInterrupted wherever the block is, as SIGINT raises KeyboardInterrupt.

    Not under torchrun: a Python handler runs only once a blocking call returns, and a
    worker waiting to join its group would then outlast the launcher's grace period.
    """
    def raise_(signum: int, frame: Any) -> None:
        raise TrainingInterrupted(signum, "terminated by SIGTERM before training started; nothing was saved")

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    with _handlers(raise_, (signal.SIGTERM,)):
        yield


@contextlib.contextmanager
def _handlers(handler: Any, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():   # signal.signal would raise
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
