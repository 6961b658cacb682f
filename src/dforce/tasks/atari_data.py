"""``dforce data atari``: record (or load from the cache) Atari frames with a sticky random policy."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import VideoConfig
from ..data.atari import GAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce data atari`."""
    parser.add_argument("--game", default=VideoConfig.game,
                        help=f"ale-py ROM id (tested: {', '.join(GAMES)}; default {VideoConfig.game})")
    parser.add_argument("--frames", type=int, default=VideoConfig.frames,
                        help=f"frames to record (default {VideoConfig.frames:,})")
    parser.add_argument("--size", type=int, choices=(32, 64), default=32, help="frame side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="emulator and policy seed (default 0)")
    parser.add_argument("--sticky", type=float, default=0.75, help="probability of repeating the previous action")
    parser.add_argument("--frame-skip", type=int, default=4, help="emulator frames per recorded frame (default 4)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="cache directory (default $XDG_CACHE_HOME/dforce/atari)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> list[Path]:
    """Record or load the frames; prints a one-line summary and returns the cache file."""
    import numpy as np

    from ..data.atari import cache_path, load_or_record

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if not 0 <= args.sticky < 1 or args.frame_skip < 1:
        raise ValueError(f"need --sticky in [0, 1) and --frame-skip >= 1; got {args.sticky}, {args.frame_skip}")
    path = cache_path(args.game, args.frames, args.size, args.seed, args.sticky, args.frame_skip, args.data_dir)
    cached = path.exists()
    tic = time.time()
    data = load_or_record(args.game, args.frames, args.size, args.seed, args.sticky, args.frame_skip, args.data_dir,
                          progress=not args.no_progress)
    wall = time.time() - tic
    episodes = len(np.unique(data["episode"]))
    print(f"atari-{args.game}: {len(data['frames']):,} frames of {args.size}x{args.size}, {episodes} episodes, "
          f"{int(data['n_actions'])} actions {'loaded from' if cached else 'recorded into'} {path}"
          + ("" if cached else f" in {wall:.1f} s"))
    return [path]
