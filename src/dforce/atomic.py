"""Crash-safe writes: a reader sees the old file or the new one, never half of either.

Files go to a temporary name in the same directory, are flushed and fsynced, then
renamed over the target (``os.replace`` is atomic on POSIX); directories are built
under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

TMP = ".tmp-"   # temporaries are ".<name>.tmp-<random>", so leftovers of a killed write can be told apart


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (permissions as a plain ``open`` would give: 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP}")
    try:
        os.fchmod(fd, 0o666 & ~_umask())      # mkstemp makes 0600, unlike every other output

        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


@contextlib.contextmanager
def new_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it replaces ``path``.

    Everything written inside (subdirectories too) is fsynced and given the permissions of a
    plain write (0666/0777 less the umask) before the rename. An existing ``path`` is moved
    aside first and removed after, so an interrupted replace leaves ``path.old``
    (which :func:`recover` puts back), never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{TMP}"))
    try:
        mask = _umask()
        tmp.chmod(0o777 & ~mask)                # mkdtemp makes 0700
        yield tmp
        for item in sorted(tmp.rglob("*"), reverse=True):   # files before the directories holding them
            if item.is_dir():
                item.chmod(0o777 & ~mask)
                fsync_dir(item)
            else:
                item.chmod(0o666 & ~mask)       # safetensors writes 0600, unlike every other output
                with open(item, "rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(tmp)
        old = path.with_name(path.name + ".old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover(path: str | Path) -> Path:
    """If a replace of ``path`` was interrupted between its two renames, restore the old copy."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():
        os.replace(old, path)
    return path


def is_leftover(path: str | Path) -> bool:
    """Whether ``path`` is the temporary of a write that never finished (``.<name>.tmp-<random>``)."""
    name = Path(path).name
    return name.startswith(".") and TMP in name[1:]


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Delete the temporaries interrupted writes left in ``directory``; returns what was removed.

    Only call this while no other process writes there (e.g. holding the run's lock):
    a live writer's temporary looks the same as a dead one's.
    """
    removed = []
    for item in sorted(Path(directory).iterdir()) if Path(directory).is_dir() else []:
        if is_leftover(item):
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            removed.append(item)
    return removed
