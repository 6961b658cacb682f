"""Video: train the frame backbone on Moving MNIST or Atari, roll it out, write GIFs.

Frames are tokens of shape (1, S, S) with S = ``video.size``; a video is (B, T, 1, S, S)
with values in [0, 1]. Atari videos carry the one-hot action that produced each frame
as per-token conditioning (B, T, n_actions); Moving MNIST has none.

* :func:`video_data` / :func:`held_out` — training clips and long held-out videos;
* :func:`train_video` — ``dforce train configs/video_*.yaml``;
* :class:`VideoRollout` — N frames from a context with the streaming path (the frame
  backbone's ConvGRU state: O(N) time, model memory flat in N), stabilization and
  optional history guidance;
* :func:`sample_video` — ``dforce sample CHECKPOINT --frames N --gif out.gif``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import devices
from ..config import DataConfig, RunConfig, VideoConfig
from ..data.sequences import Sequences
from ..diffusion.guidance import HistoryGuidance
from ..pipeline import DiffusionForcingModel

log = logging.getLogger(__name__)

VIDEO_DATA = ("moving_mnist", "atari")
HELD_OUT_SEED_OFFSET = 1_000       # held-out Moving MNIST videos use a seed training never uses


def is_video(model: DiffusionForcingModel) -> bool:
    """True when ``model`` was trained on a video dataset of this module."""
    return model.extra.get("data", {}).get("name") in VIDEO_DATA


def _atari(data: DataConfig, video: VideoConfig, progress: bool = False) -> dict[str, np.ndarray]:
    from ..data.atari import load_or_record

    return load_or_record(video.game, video.frames, video.size, data.seed, video.sticky, video.frame_skip,
                          video.data_dir, progress=progress)


def video_data(data: DataConfig, video: VideoConfig, progress: bool = False) -> Sequences:
    """Training clips: x (N, data.length, 1, S, S) in [0, 1], cond (N, T, n_actions) for atari else None.

    moving_mnist renders ``data.sequences`` videos (cached as uint8 .npy); atari cuts the
    train episodes of the cached recording into non-overlapping clips (``data.sequences``
    is not used: every clip is kept).
    """
    if data.name == "moving_mnist":
        from ..data.moving_mnist import load_or_generate

        x = load_or_generate(data.sequences, data.length, video.size, data.seed, "train", video.mnist_dir,
                             data_dir=video.data_dir)
        return Sequences(torch.from_numpy(x))
    if data.name == "atari":
        from ..data.atari import clips

        x, cond = clips(_atari(data, video, progress), data.length, "train")
        return Sequences(x, cond)
    raise ValueError(f"data.name={data.name!r} is not a video dataset; choose one of {', '.join(VIDEO_DATA)}")


def held_out(data: DataConfig, video: VideoConfig, n: int, length: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """``n`` test videos for a rollout of ``length`` frames in total (context included).

    Returns (real, cond): real (n, L, 1, S, S) with L <= length, the ground truth that
    exists; cond (n, length, n_actions) or None. Moving MNIST videos have any length
    (L = length). Atari test episodes can end before the rollout does: L is capped at the
    length of the n-th longest test episode, so that the videos come from min(n, episodes)
    different episodes; they are the non-overlapping L-frame clips of the test episodes,
    reused in turn when there are fewer than ``n``. Actions after the real ones continue
    the sticky random policy (seeded by ``seed``).
    """
    if n < 1 or length < 1:
        raise ValueError(f"need n >= 1 and length >= 1, got {n}, {length}")
    if data.name == "moving_mnist":
        from ..data.moving_mnist import MovingMNIST

        x = MovingMNIST(n, length, video.size, data.seed + HELD_OUT_SEED_OFFSET + seed, "test", video.mnist_dir).array()
        return torch.from_numpy(x), None
    if data.name != "atari":
        raise ValueError(f"data.name={data.name!r} is not a video dataset; choose one of {', '.join(VIDEO_DATA)}")
    from ..data.atari import clips, split_episodes

    rec = _atari(data, video)
    test_ids = rec["episode"][split_episodes(rec["episode"], "test")]
    lengths = np.sort(np.unique(test_ids, return_counts=True)[1])[::-1]               # longest first
    real_length = min(length, int(lengths[min(n, len(lengths)) - 1])) if len(lengths) else 0
    if real_length < 2:
        raise ValueError("the Atari recording has no test episode of 2 frames or more; record more frames")
    x, a = clips(rec, real_length, "test")
    if len(x) < n:
        log.warning("only %d Atari test clips of %d frames for %d videos: clips are reused", len(x), real_length, n)
    pick = torch.arange(n) % len(x)
    x, a = x[pick], a[pick]
    if length > a.shape[1]:
        a = torch.cat([a, sticky_actions(a[:, -1].argmax(-1), length - a.shape[1], a.shape[-1], video.sticky, seed)], 1)
    return x, a


def sticky_actions(last: Tensor, length: int, n_actions: int, sticky: float, seed: int) -> Tensor:
    """One-hot actions (B, length, n_actions) continuing the sticky random policy from ``last`` (B,)."""
    g = torch.Generator().manual_seed(seed)
    out, a = [], last.clone()
    for _ in range(length):
        keep = torch.rand(a.shape, generator=g) < sticky
        a = torch.where(keep, a, torch.randint(n_actions, a.shape, generator=g))
        out.append(a)
    return torch.nn.functional.one_hot(torch.stack(out, 1), n_actions).float()


def train_video(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
                progress: bool = True) -> DiffusionForcingModel:
    """Train the frame backbone on the configured video data; returns the EMA model (saved in run_dir/model)."""
    from ..train import train

    if cfg.data.window is not None:
        raise ValueError(f"data.window={cfg.data.window} is not used by video data (data.length is the clip length); "
                         "leave it unset")
    data = video_data(cfg.data, cfg.video, progress)
    log.info("training on %s: %d clips of %d frames %s%s", cfg.data.name, len(data), cfg.data.length, data.token_shape,
             f", {data.cond_dim} actions" if data.cond_dim else "")
    torch.manual_seed(cfg.train.seed)
    model = DiffusionForcingModel(data.token_shape, data.cond_dim, cfg.model, cfg.diffusion, cfg.sampling,
                                  extra={"data": asdict(cfg.data), "train": asdict(cfg.train),
                                         "video": asdict(cfg.video)})
    return train(model, data, cfg.train, run_dir, resume=resume, progress=progress,
                 evaluate=periodic_rollout(cfg) if cfg.train.eval_every else None)


def periodic_rollout(cfg: RunConfig, context: int = 4, multiple: int = 4, batch: int = 4):
    """An evaluation callback: MSE of the first training length and mean intensity at the end of a rollout."""
    real, cond = held_out(cfg.data, cfg.video, batch, context + multiple * cfg.data.length)

    def evaluate(model: DiffusionForcingModel, step: int) -> dict[str, float]:
        roll = VideoRollout(model)
        gen = roll(real[:, :context], multiple * cfg.data.length, cond, generator=devices.generator(step, model.device))
        n = min(cfg.data.length, real.shape[1] - context)
        return {"mse_first_window": float((gen[:, :n] - real[:, context:context + n]).pow(2).mean()),
                "mean_last_window": float(gen[:, -cfg.data.length:].mean()),
                "mean_real": float(real.mean())}
    return evaluate


@dataclass
class VideoRollout:
    """Roll a video model out with the streaming path.

    ``stabilization``: noise level generated frames are committed at (None: the model's
    sampling default; 0: no stabilization). ``history``: history guidance (DFoT) or None.
    ``levels``: the scheduling matrix per chunk (None: the model's default).
    """

    model: DiffusionForcingModel
    stabilization: int | None = None
    history: HistoryGuidance | None = None
    levels: Tensor | None = None

    def __call__(self, context: Tensor, frames: int, cond: Tensor | None = None, *,
                 generator: torch.Generator | None = None, recompute: bool = False,
                 recompute_window: int | None = None, callback: Any = None) -> Tensor:
        """context (B, C, 1, S, S) in [0, 1], cond (B, C + frames, A) or None -> (B, frames, 1, S, S) in [0, 1].

        Time is O(frames) and the model state is constant in ``frames`` (the output itself
        is O(frames)). ``recompute`` re-runs the network over the whole past at every step
        (the slow reference path, O(frames^2)), or over the last ``recompute_window`` frames
        (how a video model without a streaming state rolls out).
        """
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if cond is not None:
            cond = cond[:, :context.shape[1] + frames].to(self.model.device)
        out = self.model.rollout(frames, context, cond=cond, levels=self.levels, stabilization=self.stabilization,
                                 history=self.history, recompute=recompute, recompute_window=recompute_window,
                                 generator=generator, callback=callback)
        return out.clamp(0, 1).cpu()


def tile_frames(columns: list[Tensor], scale: int = 2, max_rows: int = 4) -> np.ndarray:
    """Videos side by side, one row per sequence: list of (B, T, 1, S, S) in [0, 1] -> (T, H', W') uint8.

    Shorter videos (ground truth that ends) are padded with gray; a 1-pixel white line
    separates panels.
    """
    T = max(c.shape[1] for c in columns)
    B = min(min(c.shape[0] for c in columns), max_rows)
    S = columns[0].shape[-1]
    panels = []
    for c in columns:
        c = c[:B, :, 0].float()
        if c.shape[1] < T:
            c = torch.cat([c, torch.full((B, T - c.shape[1], S, S), 0.5)], 1)
        panels.append(c)
    grid = torch.ones(T, B * (S + 1) - 1, len(panels) * (S + 1) - 1)
    for i in range(B):
        for j, p in enumerate(panels):
            grid[:, i * (S + 1):i * (S + 1) + S, j * (S + 1):j * (S + 1) + S] = p[i]
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_gif(path: str | Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write (T, H, W) uint8 grayscale frames as a looping GIF (identical consecutive frames may merge)."""
    import imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.repeat(frames[..., None], 3, axis=-1)          # Pillow cannot pack some grayscale GIF palettes
    imageio.mimsave(path, list(rgb), duration=1000 / fps, loop=0)
    return path


def sample_video(checkpoint: Path, gif: Path | None, out: Path, *, frames: int | None = None, context: int = 4,
                 batch: int = 4, scheduling: str | None = None, slope: float | None = None, steps: int | None = None,
                 chunk: int | None = None, stabilization: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu") -> list[Path]:
    """Roll a video checkpoint out on ``device`` from held-out contexts; writes a GIF (generated | truth) and samples.npz.

    samples.npz holds uint8 ``generated`` (B, context + frames, 1, S, S), context included,
    and ``real`` (B, L, 1, S, S), the ground truth that exists. Sampling settings default
    to the checkpoint's.
    """
    model = DiffusionForcingModel.from_pretrained(checkpoint, device)
    if not is_video(model):
        raise ValueError(f"{checkpoint} was not trained on video data ({', '.join(VIDEO_DATA)})")
    data, video = DataConfig(**model.extra["data"]), VideoConfig(**model.extra.get("video", {}))
    frames = 10 * data.length if frames is None else frames   # not `or`: an explicit 0 is an error, not the default
    if context < 1 or batch < 1 or frames < 1:
        raise ValueError(f"need context, batch and frames >= 1; got {context}, {batch}, {frames}")
    real, cond = held_out(data, video, batch, context + frames, seed)
    if real.shape[1] <= context:
        raise ValueError(f"--context {context} leaves no ground truth: test clips hold {real.shape[1]} frames")
    tic = time.time()
    levels = model.scheduling_matrix(scheduling, chunk, steps, slope)
    gen = VideoRollout(model, stabilization, levels=levels)(real[:, :context], frames, cond,
                                                            generator=devices.generator(seed, model.device))
    log.info("generated %d x %d frames in %.1fs", batch, frames, time.time() - tic)
    full = torch.cat([real[:, :context], gen], 1)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "samples.npz"]
    np.savez_compressed(files[0], generated=(full.numpy() * 255).round().astype(np.uint8),
                        real=(real.numpy() * 255).round().astype(np.uint8), context=context)
    files.append(write_gif(gif or out / "samples.gif", tile_frames([full, real])))
    return files
