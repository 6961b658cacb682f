"""Named numpy arrays on disk: uncompressed ``.npz`` files written atomically (dataset caches)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def save_npz(path: str | Path, data: dict[str, np.ndarray]) -> Path:
    """Write ``data`` as an uncompressed ``.npz``, atomically."""
    from ..atomic import write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **data)
    write_bytes(path, buffer.getvalue())
    return Path(path)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, loaded into memory (no pickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
