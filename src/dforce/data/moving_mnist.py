"""Moving MNIST: digits bouncing inside a square canvas, generated on the fly from the MNIST idx files.

Videos are float32 arrays of shape (N, T, 1, H, W) with values in [0, 1] (multiples of
1/255: frames are quantized so that a cached uint8 array is exact). Each video holds
``digits`` (default 2) digits with random start positions and velocities; a digit
reflects off the walls (its position follows a triangle wave), and overlapping digits
combine by a pixel-wise max.

Digits come from the MNIST *test* file (t10k, 10,000 images, the one small enough to
ship): images ``[0, 8000)`` for the ``train`` split and ``[8000, 10000)`` for ``test``.
When only the training file (train-images-idx3-ubyte) is present, the same split
applies to its first 10,000 images. Digits are scaled to fit: 28 -> 16 pixels on a 32
canvas, 28 pixels on 64 (in general ``28`` if size >= 64 else ``size // 2``).
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1          # bump when the generated videos change for a given seed
SPLITS = {"train": (0, 8000), "test": (8000, 10000)}
IMAGE_FILES = ("t10k-images-idx3-ubyte", "train-images-idx3-ubyte")
ENV_DIR = "DFORCE_MNIST_DIR"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dforce/moving_mnist`` (default ``~/.cache/dforce/moving_mnist``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dforce" / "moving_mnist"


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzipped or not) as a numpy array: images (N, 28, 28) uint8, labels (N,) uint8.

    Format: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then
    one big-endian int32 per dimension and the data.
    """
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an idx file (gzipped when ``path`` ends in .gz); :func:`read_idx` reads it back."""
    array = np.ascontiguousarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">i4").tobytes() + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, 1) if path.suffix == ".gz" else raw)
    return path


def write_stand_in(directory: str | Path, n: int = 10_000, seed: int = 0) -> Path:
    """A stand-in for the MNIST test file where MNIST cannot be had (tests, throughput checks).

    Writes ``directory/t10k-images-idx3-ubyte.gz``: ``n`` 28 x 28 images, each a bright
    ring of random centre, radius and width (digit-sized, blank background). Not digits:
    models trained on it say nothing about Moving MNIST, only that the code runs.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28].astype(np.float32)                                  # (28, 28)
    cy, cx = rng.uniform(10, 18, (2, n, 1, 1)).astype(np.float32)
    radius, width = rng.uniform(4, 9, (n, 1, 1)), rng.uniform(1.2, 3, (n, 1, 1))
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)                                  # (n, 28, 28)
    images = np.clip(1.5 - np.abs(dist - radius) / width, 0, 1)
    return write_idx(Path(directory) / f"{IMAGE_FILES[0]}.gz", np.rint(images * 255))


def find_images(directory: str | Path | None = None) -> Path:
    """The MNIST image file in ``directory`` (default ``$DFORCE_MNIST_DIR``, else ``~/.cache/dforce/mnist``)."""
    root = Path(directory or os.environ.get(ENV_DIR) or cache_dir().parent / "mnist")
    for name in IMAGE_FILES:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no MNIST images ({' or '.join(n + '[.gz]' for n in IMAGE_FILES)}) in {root}; "
                            f"download them there, or set {ENV_DIR} / video.mnist_dir")


def load_digits(directory: str | Path | None = None, split: str = "train", digit_size: int = 28) -> np.ndarray:
    """The split's digit images (N, digit_size, digit_size) float32 in [0, 1], resized with antialiasing."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    images = read_idx(find_images(directory))
    lo, hi = SPLITS[split]
    if images.ndim != 3 or len(images) < hi:
        raise ValueError(f"need at least {hi} images of shape (28, 28); got {images.shape}")
    x = torch.from_numpy(images[lo:hi].astype(np.float32) / 255.0)[:, None]          # (N, 1, 28, 28)
    if digit_size != x.shape[-1]:
        x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp(0, 1).numpy()


def digit_size_for(size: int) -> int:
    """28 on canvases of 64 px or more, else half the canvas (16 on 32)."""
    return 28 if size >= 64 else size // 2


def bounce(start: np.ndarray, velocity: np.ndarray, steps: int, limit: int) -> np.ndarray:
    """Positions of points moving at ``velocity`` inside [0, limit], reflecting off both ends.

    start, velocity: (...,) floats -> (..., steps) integer positions in [0, limit]. The
    unfolded path p0 + v t is folded with a triangle wave of period 2 * limit.
    """
    if limit == 0:
        return np.zeros((*start.shape, steps), np.int64)
    p = start[..., None] + velocity[..., None] * np.arange(steps)                    # (..., T)
    m = np.mod(p, 2 * limit)
    return np.rint(np.where(m <= limit, m, 2 * limit - m)).astype(np.int64)


class MovingMNIST(torch.utils.data.Dataset):
    """``n`` seeded Moving MNIST videos, each (T, 1, size, size) float32 in [0, 1].

    All random parameters (digit ids, start positions, velocities) are drawn in the
    constructor from ``seed``, so ``dataset[i]`` is the same video however it is reached,
    and equals ``dataset.array()[i]``. Speeds are uniform in [1, 2] pixels per frame on a
    32 canvas and scale with the canvas (2 to 4 on 64); directions are uniform.
    """

    def __init__(self, n: int, length: int, size: int = 32, seed: int = 0, split: str = "train",
                 mnist_dir: str | Path | None = None, digits: int = 2):
        if n < 1 or length < 1 or digits < 1:
            raise ValueError(f"need n, length, digits >= 1; got {n}, {length}, {digits}")
        if size not in (32, 64):
            raise ValueError(f"size must be 32 or 64, got {size}")
        self.n, self.length, self.size, self.seed, self.split, self.digits = n, length, size, seed, split, digits
        self.images = load_digits(mnist_dir, split, digit_size_for(size))             # (M, d, d)
        d = self.images.shape[-1]
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        self.ids = rng.integers(0, len(self.images), (n, digits))                     # (n, digits)
        start = rng.uniform(0, size - d, (n, digits, 2))
        angle = rng.uniform(0, 2 * np.pi, (n, digits))
        speed = rng.uniform(1.0, 2.0, (n, digits)) * size / 32
        velocity = speed[..., None] * np.stack([np.sin(angle), np.cos(angle)], -1)   # (n, digits, 2): (dy, dx)
        self.positions = bounce(start, velocity, length, size - d)                   # (n, digits, 2, T)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        """Video ``i`` as a (T, 1, size, size) float32 tensor."""
        return torch.from_numpy(self._render(np.array([i]))[0])

    def array(self, block: int = 1024) -> np.ndarray:
        """All videos (n, T, 1, size, size) float32, rendered in blocks of ``block`` videos."""
        return np.concatenate([self._render(np.arange(s, min(s + block, self.n))) for s in range(0, self.n, block)])

    def _render(self, index: np.ndarray) -> np.ndarray:
        """Videos at ``index`` (b,) -> (b, T, 1, size, size), pasting each digit with a pixel-wise max."""
        d, T, b = self.images.shape[-1], self.length, len(index)
        canvas = np.zeros((b, T, self.size, self.size), np.float32)
        rows = np.arange(b)[:, None, None]
        offs = np.arange(d)
        for j in range(self.digits):
            patch = self.images[self.ids[index, j]]                                   # (b, d, d)
            for t in range(T):
                y, x = self.positions[index, j, 0, t], self.positions[index, j, 1, t]   # (b,)
                ys, xs = (y[:, None] + offs)[:, :, None], (x[:, None] + offs)[:, None, :]
                canvas[rows, t, ys, xs] = np.maximum(canvas[rows, t, ys, xs], patch)
        return (np.rint(canvas * 255) / 255).astype(np.float32)[:, :, None]


def cache_path(n: int, length: int, size: int, seed: int, split: str, data_dir: str | Path | None = None) -> Path:
    """Where :func:`load_or_generate` keeps a rendered dataset (uint8 .npy)."""
    name = f"{split}-n{n}-t{length}-s{size}-seed{seed}-gen{GENERATOR_VERSION}.npy"
    return Path(data_dir or cache_dir()) / name


def load_or_generate(n: int, length: int, size: int = 32, seed: int = 0, split: str = "train",
                     mnist_dir: str | Path | None = None, cache: bool = True,
                     data_dir: str | Path | None = None) -> np.ndarray:
    """(n, T, 1, size, size) float32 videos; rendered once and kept as uint8 .npy when ``cache``."""
    path = cache_path(n, length, size, seed, split, data_dir)
    if cache and path.is_file():
        return np.load(path).astype(np.float32) / 255.0
    videos = MovingMNIST(n, length, size, seed, split, mnist_dir).array()
    if cache:
        import io

        from ..atomic import write_bytes

        buffer = io.BytesIO()
        np.save(buffer, np.rint(videos * 255).astype(np.uint8))
        write_bytes(path, buffer.getvalue())
        log.info("cached %d Moving MNIST videos in %s", n, path)
    return videos
