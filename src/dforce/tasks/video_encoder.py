"""A tiny convolutional autoencoder whose bottleneck is the feature space of the video metrics.

``FrameEncoder`` maps frames (N, 1, S, S) in [0, 1] to features (N, 32); it is trained
once per dataset (pixel-wise cross-entropy reconstruction of training frames, ~72k
parameters at 32x32, 1000 steps: about a minute on one free CPU core, two when shared) and
cached as ``config.json`` + ``encoder.safetensors`` under
``~/.cache/dforce/video_encoder/<dataset>/``. The project ships the encoders it reports
numbers with in ``checkpoints/video_encoders/``, which take precedence over the cache, so
every evaluation scores in the same feature space. ``dforce data video-encoder`` trains
one ahead of time; ``dforce eval video`` trains it when neither is there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import DataConfig, VideoConfig

log = logging.getLogger(__name__)

FEATURES = 32
ENCODER_VERSION = 1


class FrameEncoder(nn.Module):
    """Frames (N, 1, S, S) -> features (N, FEATURES); ``decode`` maps features back to frames.

    Stride-2 3x3 convolutions halve the frame down to 4x4 (3 for S = 32, 4 for 64),
    channels 16, 32, 32(, 32); then a linear layer to the features.
    """

    def __init__(self, size: int = 32, features: int = FEATURES):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size, self.features = size, features
        n = size.bit_length() - 3                               # halvings down to 4x4
        chans = [1] + [min(16 * 2**i, 32) for i in range(n)]
        enc: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(chans[-1] * 16, features))
        dec: list[nn.Module] = [nn.Linear(features, chans[-1] * 16), nn.Unflatten(1, (chans[-1], 4, 4))]
        rev = chans[::-1]
        for i, (c_in, c_out) in enumerate(zip(rev[:-1], rev[1:])):
            dec += [nn.SiLU() if i else nn.Identity(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 1, S, S) -> (N, features)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """(N, features) -> reconstructed frames (N, 1, S, S), logits of the pixel values."""
        return self.decoder(z)

    @torch.no_grad()
    def embed(self, video: Tensor, block: int = 4096) -> Tensor:
        """Video (B, T, 1, S, S) -> features (B, T, features), in blocks of ``block`` frames."""
        flat = video.flatten(0, 1).float()
        return torch.cat([self(f) for f in flat.split(block)]).unflatten(0, video.shape[:2])


def train_encoder(frames: Tensor, steps: int = 1000, batch: int = 128, lr: float = 5e-3, seed: int = 0,
                  progress: bool = False) -> FrameEncoder:
    """Fit a FrameEncoder on frames (N, 1, S, S) in [0, 1] as an autoencoder: pixel-wise binary
    cross-entropy on the decoder's logits (MSE gets stuck predicting the blank mean on sparse
    Moving MNIST frames), Adam with cosine decay."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    enc = FrameEncoder(frames.shape[-1])
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc="encoder", unit="step", disable=None if progress else True):
        x = frames[torch.randint(len(frames), (batch,), generator=g)].float()
        loss = F.binary_cross_entropy_with_logits(enc.decode(enc(x)), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (step + 1) / steps)).item())
    enc.eval()
    with torch.no_grad():
        x = frames[:2048].float()
        log.info("frame encoder: reconstruction MSE %.5f after %d steps (pixel variance %.5f)",
                 float((torch.sigmoid(enc.decode(enc(x))) - x).pow(2).mean()), steps, float(x.var()))
    return enc


def dataset_tag(data: DataConfig, video: VideoConfig) -> str:
    """A short name of the video data: ``moving_mnist32``, ``atari-boxing32``."""
    return f"{data.name}{video.size}" if data.name == "moving_mnist" else f"atari-{video.game}{video.size}"


def cache_dir(data: DataConfig, video: VideoConfig) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dforce" / "video_encoder" / f"{dataset_tag(data, video)}-v{ENCODER_VERSION}"


def shipped_dir(data: DataConfig, video: VideoConfig) -> Path:
    """Where the project's own encoder of this dataset lives (it may not ship one)."""
    from ..zoo import CHECKPOINTS

    return CHECKPOINTS / "video_encoders" / f"{dataset_tag(data, video)}-v{ENCODER_VERSION}"


def default_dir(data: DataConfig, video: VideoConfig) -> Path:
    """The shipped encoder when there is one, else the user's cache."""
    shipped = shipped_dir(data, video)
    return shipped if (shipped / "encoder.safetensors").is_file() else cache_dir(data, video)


def training_frames(data: DataConfig, video: VideoConfig, limit: int = 50_000) -> Tensor:
    """Up to ``limit`` training frames (N, 1, S, S); Moving MNIST: from 2,000 16-frame videos of the train
    split, whatever ``data.sequences`` and ``data.length`` say (the encoder is one per dataset and size)."""
    from .video import video_data

    if data.name == "moving_mnist":
        data = DataConfig(name=data.name, sequences=2000, length=16, seed=data.seed)
    x = video_data(data, video).x.flatten(0, 1)
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:limit]]


def load_or_train(data: DataConfig, video: VideoConfig, directory: Path | None = None, steps: int = 1000,
                  progress: bool = False) -> FrameEncoder:
    """The shipped or cached encoder of this dataset, or a newly trained one (saved atomically)."""
    from safetensors.torch import load_file

    from .. import atomic

    directory = Path(directory or default_dir(data, video))
    if (directory / "encoder.safetensors").is_file():
        meta = json.loads((directory / "config.json").read_text())
        enc = FrameEncoder(meta["size"], meta["features"])
        enc.load_state_dict(load_file(str(directory / "encoder.safetensors")))
        return enc.eval()
    tic = time.time()
    frames = training_frames(data, video)
    enc = train_encoder(frames, steps, progress=progress)
    from safetensors.torch import save_file

    with atomic.new_directory(directory) as tmp:
        save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(tmp / "encoder.safetensors"))
        (tmp / "config.json").write_text(json.dumps({
            "size": enc.size, "features": enc.features, "steps": steps, "version": ENCODER_VERSION,
            "data": asdict(data), "video": asdict(video), "training_frames": len(frames),
            "train_time_s": round(time.time() - tic, 1)}, indent=2))
    return enc


# ---- `dforce data video-encoder` -------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce data video-encoder`."""
    # dest must not be "dataset": `dforce data` keeps the subcommand name there
    parser.add_argument("--dataset", dest="data_name", choices=("moving_mnist", "atari"), default="moving_mnist")
    parser.add_argument("--size", type=int, choices=(32, 64), default=32)
    parser.add_argument("--game", default=VideoConfig.game, help=f"atari: ROM id (default {VideoConfig.game})")
    parser.add_argument("--frames", type=int, default=VideoConfig.frames,
                        help=f"atari: frames of the recording to use (default {VideoConfig.frames:,})")
    parser.add_argument("--mnist-dir", default=None, help="MNIST idx files (default $DFORCE_MNIST_DIR)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> list[Path]:
    """Train (or load) the encoder and return its directory."""
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    data = DataConfig(name=args.data_name)
    video = VideoConfig(size=args.size, mnist_dir=args.mnist_dir, game=args.game, frames=args.frames)
    load_or_train(data, video, steps=args.steps, progress=not args.no_progress)
    return [default_dir(data, video)]
