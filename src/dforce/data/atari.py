"""Atari frames recorded with a sticky random policy, for action-conditioned video models.

Needs the ``[video]`` extra (``ale-py`` >= 0.9, which ships the ROMs); it is imported
only when recording. A recording is a dict of numpy arrays, cached as ``.npz``:

* ``frames``  (N, size, size) uint8 grayscale, the 210x160 screen area-downsampled;
  each recorded frame is the pixel-wise max of the last two of ``frame_skip``
  emulator frames (removes sprite flicker), the usual Atari preprocessing;
* ``actions`` (N,) int64: index into the game's minimal action set of the action
  that *produced* frame t (taken after frame t-1); 0 (NOOP) at an episode's first frame;
* ``episode`` (N,) int64: episode id of each frame (a new one after game over);
* ``n_actions`` () int64, the size of the minimal action set.

Policy: with probability ``sticky`` repeat the previous action, otherwise draw one
uniformly (seeded). The emulator's own sticky actions are off, so the recorded
action is the one executed.

Training tokens (:func:`clips`): non-overlapping clips of ``length`` frames inside
episodes, frames (T, 1, size, size) float32 in [0, 1] with the one-hot action that
produced each frame as per-token conditioning (T, n_actions). The last 10% of episodes
(at least one) are the test split.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .arrays import load_npz, save_npz

GENERATOR_VERSION = 1
GAMES = ("boxing", "breakout", "pong")   # tested; any ROM id ale-py knows is accepted
TEST_FRACTION = 0.1


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dforce/atari`` (default ``~/.cache/dforce/atari``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dforce" / "atari"


def cache_path(game: str, frames: int, size: int, seed: int = 0, sticky: float = 0.75, frame_skip: int = 4,
               data_dir: str | Path | None = None) -> Path:
    """Where :func:`load_or_record` keeps a recording."""
    name = f"{game}-f{frames}-s{size}-seed{seed}-sticky{sticky:g}-skip{frame_skip}-gen{GENERATOR_VERSION}.npz"
    return Path(data_dir or cache_dir()) / name


def _ale(game: str, seed: int):
    """An ALEInterface with ``game`` loaded; clear errors when ale-py or the ROM is missing."""
    try:
        import ale_py
        from ale_py import ALEInterface, roms
    except ImportError:
        raise ValueError("Atari recording needs ale-py >= 0.9 (the [video] extra): pip install ale-py") from None
    try:
        with warnings.catch_warnings():   # ale-py warns before returning None for unknown ids
            warnings.simplefilter("ignore")
            rom = roms.get_rom_path(game)
    except Exception:  # ale-py raises different types across versions for unknown ids
        rom = None
    if rom is None:
        raise ValueError(f"unknown Atari game {game!r}; try one of {', '.join(GAMES)} (any ale-py ROM id works)")
    ale = ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", int(seed) % (2**31))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(rom)
    return ale


def downsample(screens: np.ndarray, size: int) -> np.ndarray:
    """Grayscale screens (n, 210, 160) uint8 -> (n, size, size) uint8 by area averaging."""
    x = torch.from_numpy(screens.astype(np.float32))[:, None]
    y = F.adaptive_avg_pool2d(x, (size, size))[:, 0]
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def record(game: str, frames: int, size: int = 32, seed: int = 0, sticky: float = 0.75, frame_skip: int = 4,
           progress: bool = False) -> dict[str, np.ndarray]:
    """Record ``frames`` frames of ``game`` with the sticky random policy (see module docstring)."""
    if frames < 1 or size < 4 or size % 4 or frame_skip < 1 or not 0 <= sticky < 1:
        raise ValueError(f"need frames>=1, size a multiple of 4, frame_skip>=1, sticky in [0, 1); "
                         f"got {frames}, {size}, {frame_skip}, {sticky}")
    from tqdm.auto import tqdm

    ale = _ale(game, seed)
    action_set = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    out = np.empty((frames, size, size), np.uint8)
    actions = np.zeros(frames, np.int64)
    episode = np.zeros(frames, np.int64)
    block, screens = 1024, []
    ep, prev, first = 0, 0, True
    with tqdm(total=frames, desc=f"atari-{game}", unit="frame", disable=None if progress else True) as bar:
        for t in range(frames):
            if first:
                a = 0
                screen = ale.getScreenGrayscale()
            else:
                a = prev if rng.random() < sticky else int(rng.integers(len(action_set)))
                last = []
                for i in range(frame_skip):
                    ale.act(action_set[a])
                    if i >= frame_skip - 2:
                        last.append(ale.getScreenGrayscale())
                screen = np.maximum.reduce(last)
            screens.append(screen)
            actions[t], episode[t], prev, first = a, ep, a, False
            if ale.game_over():
                ale.reset_game()
                ep, prev, first = ep + 1, 0, True
            if len(screens) == block or t == frames - 1:
                out[t + 1 - len(screens):t + 1] = downsample(np.stack(screens), size)
                screens = []
            bar.update(1)
    return {"frames": out, "actions": actions, "episode": episode, "n_actions": np.array(len(action_set)),
            "game": np.array(game)}


def load_or_record(game: str, frames: int, size: int = 32, seed: int = 0, sticky: float = 0.75, frame_skip: int = 4,
                   data_dir: str | Path | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """The cached recording, or a new one written (atomically) to the cache."""
    path = cache_path(game, frames, size, seed, sticky, frame_skip, data_dir)
    if path.is_file():
        return load_npz(path)
    data = record(game, frames, size, seed, sticky, frame_skip, progress)
    save_npz(path, data)
    return data


def split_episodes(episode: np.ndarray, split: str) -> np.ndarray:
    """Boolean (N,) mask of the frames in ``split``: the last 10% of episodes (at least one) are ``test``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    ids = np.unique(episode)
    n_test = max(1, int(round(TEST_FRACTION * len(ids)))) if len(ids) > 1 else 0
    test = np.isin(episode, ids[len(ids) - n_test:])
    return test if split == "test" else ~test


def clips(data: dict[str, np.ndarray], length: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping clips inside episodes of ``split``.

    Returns frames (N, length, 1, size, size) float32 in [0, 1] and one-hot actions
    (N, length, n_actions) float32, the action that produced each frame.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    keep = split_episodes(data["episode"], split)
    starts = []
    for ep in np.unique(data["episode"][keep]):
        idx = np.flatnonzero(data["episode"] == ep)
        starts += list(range(int(idx[0]), int(idx[-1]) + 2 - length, length))
    if not starts:
        raise ValueError(f"no {split} episode holds {length} frames; record more frames or shorten data.length")
    index = torch.tensor(starts)[:, None] + torch.arange(length)                    # (N, T)
    x = torch.from_numpy(data["frames"])[index].float().div(255)[:, :, None]
    a = F.one_hot(torch.from_numpy(data["actions"])[index], int(data["n_actions"])).float()
    return x, a
