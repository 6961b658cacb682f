"""Who may use a run directory: one lock per run, and the run's config recorded to compare on resume.

* ``DIR/.lock`` is ``flock``-ed for the whole run, so a second ``train`` on the same
  directory fails at once instead of interleaving checkpoints with the first.
* ``DIR/run.json`` records the configuration a run started with. ``--resume`` with a
  different one (another lr, seed, step count, dataset, model shape or task) is refused,
  naming the keys, unless forced: a resumed run is only the same run under the same config.
* A directory that ``train`` did not create (no ``run.json``, no ``checkpoints/``) is never
  written into unless forced, so a typo in ``--out`` cannot overwrite someone's files; a
  run's own directory is only reused without ``--resume`` while it holds nothing trained.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .. import atomic
from .checkpoint import step_of
from .errors import RunDirError

LOCK, RECORD, FORMAT = ".lock", "run.json", "dforce-run"
# Keys that say where a run executes, not what it computes: a run may resume on another device
# (checkpoints load onto the model's device).
PLACEMENT = ("train.device",)
_held: set[Path] = set()   # run directories this process has locked (the lock is re-entrant per process)


@contextlib.contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``run_dir/.lock`` while the block runs; RunDirError if another process has it.

    The lock file is left in place (deleting it would let two processes lock different files).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:
        yield
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(f"{run_dir} is in use by another dforce train (pid {holder} holds {run_dir / LOCK}); "
                          "wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.add(key)
    try:
        yield
    finally:
        _held.discard(key)
        os.close(fd)


@contextlib.contextmanager
def claim(run_dir: str | Path, config: dict[str, Any], *, resume: bool, force: bool) -> Iterator[None]:
    """Check that this run may use ``run_dir``, lock it for the block and record ``config`` in ``run.json``.

    Raises RunDirError, before writing anything, when the directory is a file, is missing
    under ``resume``, is foreign or already used without ``resume``/``force``, or (under
    ``resume``) records a config that differs from ``config`` without ``force``. Under
    torchrun every rank checks, so all refuse together instead of the others waiting for
    a rank 0 that has gone (what rank 0 writes meanwhile, ``.lock`` and ``run.json`` of an
    untrained run, passes the check); only rank 0 locks and writes.
    """
    run_dir = Path(run_dir)
    check(run_dir, config, resume=resume, force=force)         # before the lock: refuse without writing
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with locked(run_dir):
        check(run_dir, config, resume=resume, force=force)     # again, now that nobody else can change it
        atomic.write_text(run_dir / RECORD, json.dumps({"format": FORMAT, "config": config}, indent=2) + "\n")
        yield


def check(run_dir: Path, config: dict[str, Any], *, resume: bool, force: bool) -> None:
    """Raise RunDirError when a run with ``config`` may not use ``run_dir`` (see :func:`claim`)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a directory")
    if not run_dir.exists():
        if resume:
            raise RunDirError(f"--resume: {run_dir} does not exist, so there is nothing to resume "
                              "(drop --resume to start a new run)")
        return
    if (run_dir / "checkpoints").exists() and not (run_dir / "checkpoints").is_dir():
        raise RunDirError(f"{run_dir / 'checkpoints'} is not a directory; move it away or choose another --out")
    entries = sorted(set(os.listdir(run_dir)) - {LOCK})
    ours = RECORD in entries or "checkpoints" in entries
    if entries and not ours and not force:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise RunDirError(f"{run_dir} is not empty and was not made by dforce train (it holds {shown}); "
                          "choose another --out, or pass --force to train into it anyway")
    if resume:
        if RECORD in entries:
            changed = {key: values for key, values in differences(_recorded(run_dir / RECORD, force), config).items()
                       if key not in PLACEMENT}
            if changed and not force:
                raise RunDirError(f"--resume: the config differs from the one {run_dir / RECORD} recorded in "
                                  f"{len(changed)} key(s): {_listing(changed)}; pass --force to resume anyway")
        return
    if _has_checkpoints(run_dir):   # --force does not discard a run's checkpoints: that stays a manual step
        raise RunDirError(f"{run_dir} already holds checkpoints; continue the run with --resume, "
                          "or choose another --out")
    if "model" in entries and not force:
        raise RunDirError(f"{run_dir} already holds a trained model; choose another --out, "
                          "or pass --force to train a new one over it")


def _has_checkpoints(run_dir: Path) -> bool:
    ckdir = run_dir / "checkpoints"
    return ckdir.is_dir() and any(step_of(p) is not None for p in ckdir.iterdir())


def _recorded(path: Path, force: bool) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("config"), dict):
            raise ValueError(f"not a {FORMAT} record")
        return record["config"]
    except (OSError, ValueError) as err:
        if force:
            return {}
        raise RunDirError(f"{path}: unreadable ({err}); pass --force to resume without comparing configs") from None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"train.lr": 0.002, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ (a key on one side only counts), as ``{key: (old, new)}``."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return {key: (a.get(key, missing), b.get(key, missing)) for key in sorted(a.keys() | b.keys())
            if _json(a.get(key, missing)) != _json(b.get(key, missing))}


def _json(value: Any) -> Any:
    """Compare values as run.json stores them (tuples become lists)."""
    return json.loads(json.dumps(value)) if isinstance(value, (list, tuple)) else value


def _listing(changed: dict[str, tuple[Any, Any]], limit: int = 8) -> str:
    show = (lambda v: "<absent>" if not isinstance(v, (str, int, float, bool, list, type(None))) else repr(v))
    items = [f"{key} {show(old)} -> {show(new)}" for key, (old, new) in list(changed.items())[:limit]]
    more = f", and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(items) + more
