"""``dforce eval video``: long rollouts of a video model, scored frame by frame.

For ``--rollouts`` held-out test videos the model gets ``--context`` real frames and
generates ``max(horizon multiples) x data.length`` frames (streaming path). Written to
``<out>/<dataset>-<method>.json`` (``--out``, default ``outputs/video``; ``--record``: the shipped
``results/video``) with a PNG of every metric vs frame index:

* vs the ground truth, where it exists (Moving MNIST: always; Atari: until the test
  episode ends): MSE, PSNR, SSIM per frame index;
* pixel statistics per frame index: mean intensity, fraction of saturated pixels;
* Fréchet distance, in the feature space of a small frame autoencoder
  (:mod:`dforce.tasks.video_encoder`), between generated frames and real held-out
  frames, per bin of ``data.length`` frame indices (frames of all rollouts in the bin);
  ``fd_real`` is the same distance between real held-out and real training frames;
* divergence: each frame's distance to its nearest real training frame in feature
  space, averaged over the last ``--window`` frames (causal): the score. The threshold
  is fixed from real data only: the ``--quantile`` (default 0.99) over
  ``--calibration`` real held-out videos (drawn apart from the evaluated ones) of each
  video's *largest* score over the whole horizon, so that about 1% of real videos
  would be flagged anywhere in the horizon (a per-frame quantile would flag almost
  every long real video somewhere). A rollout "diverged at frame t" when its score
  first exceeds the threshold, and is stable at horizon h when that happens after
  frame h (never: stable throughout). ``real_stable_fraction`` applies the same test
  to the real continuations of the evaluated contexts: the false alarm rate;
* speed: frames/s of one rollout of ``--speed-frames`` frames (default 1000), streaming
  (ConvGRU state) vs recomputing a sliding window of the last ``--speed-window`` frames
  (default the training length) at every denoising step, as a video model without a
  streaming state would.

Methods set the sampling defaults of a checkpoint: ``df`` its own; ``df_nostab``
stabilization 0 (the DF model without stabilization, no extra training); ``tf``
(teacher forcing) autoregressive scheduling with clean context; ``fs`` (causal
full-sequence) full-sequence chunks with clean context.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from .. import devices, flags
from ..results import add_destination, destination
from ..config import CHOICES

log = logging.getLogger(__name__)

METHODS = {
    # name: (scheduling, stabilization); None = the checkpoint's own sampling config
    "df": (None, None),
    "df_nostab": (None, 0),
    "tf": ("autoregressive", 0),
    "fs": ("full_sequence", 0),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval video`."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="a video model directory (runs/<name>/model)")
    parser.add_argument("--method", required=True, choices=tuple(METHODS), help="label and sampling defaults")
    parser.add_argument("--horizon-multiples", default="1,10,50",
                        help="rollout lengths as multiples of the training length (default 1,10,50)")
    parser.add_argument("--rollouts", type=int, default=16, help="test videos rolled out (default 16)")
    parser.add_argument("--batch", type=int, default=16, help="rollouts generated together (default 16)")
    parser.add_argument("--context", type=int, default=4, help="real frames given as context (default 4)")
    parser.add_argument("--stabilization", type=int, default=None, help="override the method's stabilization level")
    parser.add_argument("--scheduling", default=None, choices=CHOICES["sampling.scheduling"], help="override the scheduling (full_sequence, autoregressive, "
                                                            "pyramid, trapezoid)")
    parser.add_argument("--history-scale", type=float, default=None,
                        help="history guidance scale (DFoT; 1 = none); off when not given")
    parser.add_argument("--history-level", type=int, default=None,
                        help="history guidance: noise the history to this level (default: drop it)")
    parser.add_argument("--window", type=flags.positive_int, default=None, help="divergence score window (default data.length)")
    parser.add_argument("--quantile", type=float, default=0.99, help="divergence threshold quantile (default 0.99)")
    parser.add_argument("--calibration", type=int, default=128,
                        help="real held-out videos that fix the divergence threshold (default 128)")
    parser.add_argument("--speed-frames", type=int, default=1000,
                        help="frames of the timed rollout, streaming vs recomputing a window (default 1000; 0: skip)")
    parser.add_argument("--speed-window", type=int, default=None,
                        help="frames the recomputing rollout re-runs at every step (default data.length)")
    parser.add_argument("--encoder", type=Path, default=None, help="frame encoder directory (default: the cache)")
    parser.add_argument("--encoder-steps", type=int, default=1000,
                        help="training steps when the encoder is not there yet (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    flags.add_device(parser)
    add_destination(parser, Path("outputs/video"), Path("results/video"))   # <out>/<dataset>-<method>.json
    parser.add_argument("--no-progress", action="store_true")


def parse_multiples(text: str) -> list[int]:
    """'1,10,50' -> [1, 10, 50]; ValueError naming the bad item."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--horizon-multiples must be comma-separated positive integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise ValueError(f"--horizon-multiples must be comma-separated positive integers, got {text!r}")
    return values


def run(args: argparse.Namespace) -> list[Path]:
    """Roll out, score and write the results JSON and plot; returns the files written."""
    from tqdm.auto import tqdm

    from ..config import DataConfig, VideoConfig
    from ..diffusion.guidance import HistoryGuidance
    from ..pipeline import DiffusionForcingModel
    from ..plotting import plot_video_metrics
    from ..results import write_result
    from .video import VideoRollout, held_out, is_video
    from .video_encoder import dataset_tag, load_or_train, training_frames

    multiples = parse_multiples(args.horizon_multiples)
    for name in ("rollouts", "batch", "context", "calibration", "encoder_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.speed_frames < 0 or (args.speed_window is not None and args.speed_window < 1):
        raise ValueError(f"need --speed-frames >= 0 and --speed-window >= 1, got {args.speed_frames}, {args.speed_window}")
    if not 0 < args.quantile < 1:
        raise ValueError(f"--quantile must lie in (0, 1), got {args.quantile}")
    tic = time.time()
    model = DiffusionForcingModel.from_pretrained(args.checkpoint, args.device)
    if not is_video(model):
        raise ValueError(f"{args.checkpoint} was not trained on video data (moving_mnist, atari)")
    data, video = DataConfig(**model.extra["data"]), VideoConfig(**model.extra.get("video", {}))
    L = data.length
    window = L if args.window is None else args.window
    scheduling, stabilization = METHODS[args.method]
    scheduling = scheduling if args.scheduling is None else args.scheduling
    stabilization = stabilization if args.stabilization is None else args.stabilization
    levels = model.scheduling_matrix(scheduling)
    history = None if args.history_scale is None else HistoryGuidance(args.history_scale, args.history_level)
    roll = VideoRollout(model, stabilization, history, levels)
    horizon = multiples[-1] * L

    # ---- rollouts ------------------------------------------------------------------------
    real, cond = held_out(data, video, args.rollouts, args.context + horizon, args.seed)
    gen = []
    for i, lo in enumerate(tqdm(range(0, args.rollouts, args.batch), desc="rollouts", unit="batch",
                                disable=None if not args.no_progress else True)):
        hi = min(lo + args.batch, args.rollouts)
        gen.append(roll(real[lo:hi, :args.context], horizon, None if cond is None else cond[lo:hi],
                        generator=devices.generator(args.seed * 100_003 + i, model.device)))
    gen = torch.cat(gen)                                          # (R, horizon, 1, S, S)
    truth = real[:, args.context:]                                # (R, <= horizon, 1, S, S)
    rollout_s = time.time() - tic

    # ---- metrics -------------------------------------------------------------------------
    encoder = load_or_train(data, video, args.encoder, args.encoder_steps, progress=not args.no_progress)
    train_feats = encoder.embed(training_frames(data, video, limit=20_000)[:, None])[:, 0]   # (N, F)
    calib, _ = held_out(data, video, args.calibration, args.context + horizon, args.seed + 1)
    metrics = score(gen, truth, encoder, train_feats, L, window, args.quantile, multiples, calib[:, args.context:])
    if args.speed_frames > 0:
        one, one_cond = held_out(data, video, 1, args.context + args.speed_frames, args.seed)  # actions long enough
        metrics["speed"] = rollout_speed(roll, one[:, :args.context], one_cond, args.speed_frames,
                                         L if args.speed_window is None else args.speed_window, args.seed)
    metrics["rollout_wall_s"] = round(rollout_s, 2)

    tag = dataset_tag(data, video)
    stem = destination(args) / f"{tag}-{args.method}"
    plot = plot_video_metrics(_curves({"generated": metrics}, metrics), stem.with_suffix(".png"), L,
                              {"score": metrics["divergence"]["threshold"]},
                              title=f"{tag} {args.method}: {args.rollouts} rollouts of {horizon} frames")
    result = write_result(
        stem.with_suffix(".json"), metrics, wall_time_s=time.time() - tic, seeds={"rollout": args.seed},
        command=getattr(args, "command_line", None), dataset=tag, method=args.method, checkpoint=str(args.checkpoint),
        protocol={"context": args.context, "rollouts": args.rollouts, "train_length": L, "horizon": horizon,
                  "horizon_multiples": multiples, "scheduling": scheduling or model.sampling_cfg.scheduling,
                  "stabilization": model.sampling_cfg.stabilization if stabilization is None else stabilization,
                  "sampling": model.config_dict()["sampling"],
                  "history_guidance": None if history is None else {"scale": history.scale, "level": history.level},
                  "divergence": f"nearest-training-frame feature distance, mean over the last {window} frames; "
                                f"threshold = {args.quantile} quantile over {args.calibration} real held-out videos "
                                "of each video's maximum score",
                  "frechet": f"per bin of {L} frame indices vs real held-out frames, features of the frame encoder"})
    return [result, plot, plot_methods(args.out, tag)]


def plot_methods(directory: Path, tag: str) -> Path:
    """Every method's per-frame curves for one dataset on one figure, ``<tag>-methods.png``.

    Reads all ``<tag>-<method>.json`` records in ``directory`` (those that eval video
    writes); real-data references come from the record with the longest rollout.
    """
    import json

    from ..plotting import plot_video_metrics

    records = {}
    for path in sorted(directory.glob(f"{tag}-*.json")):
        record = json.loads(path.read_text())
        if record.get("dataset") == tag and "per_frame" in record.get("metrics", {}):
            records[record.get("method", path.stem[len(tag) + 1:])] = record["metrics"]
    if not records:
        raise ValueError(f"no video records of {tag} in {directory}")
    longest = max(records.values(), key=lambda m: len(m["per_frame"]["mean"]))
    return plot_video_metrics(_curves(records, longest), directory / f"{tag}-methods.png", longest["fd"]["bin"],
                              {"score": longest["divergence"]["threshold"]}, title=f"{tag}: every method")


def _curves(records: dict[str, dict], reference: dict) -> dict[str, dict[str, list[float]]]:
    """Per-frame curves {metric: {label: values}} of records' metrics {label: metrics}, with the real-data
    curves of ``reference`` (a record's metrics) beside them; metrics no record has are left out."""
    curves: dict[str, dict[str, list[float]]] = {m: {} for m in ("mse", "psnr", "ssim", "mean", "saturated", "score", "fd")}
    for label, metrics in records.items():
        per = metrics["per_frame"]
        for m in ("mse", "psnr", "ssim", "mean", "saturated", "score"):
            if m in per:
                curves[m][label] = per[m]
        curves["fd"][label] = _fd_curve(metrics["fd"], len(per["mean"]))
    frames = len(reference["per_frame"]["mean"])
    for m in ("mean", "saturated", "score"):
        curves[m]["real"] = reference["per_frame"][f"{m}_real"]
    curves["fd"]["real vs train"] = [reference["fd"]["real"]] * frames
    return {m: c for m, c in curves.items() if c}


def _fd_curve(fd: dict, frames: int) -> list[float]:
    """The per-bin Fréchet distances of a record's ``fd`` entry repeated over each bin's frames, ``frames`` long."""
    return [v for v in fd["per_bin"] for _ in range(fd["bin"])][:frames]


def score(gen: Tensor, truth: Tensor, encoder, train_feats: Tensor, train_length: int, window: int, quantile: float,
          multiples: list[int], calibration: Tensor) -> dict:
    """All metrics of rollouts gen (R, N, 1, S, S) against truth (R, N' <= N, 1, S, S); see the module docstring.

    calibration: real held-out videos (R', N'', 1, S, S) that fix the divergence threshold.
    """
    from . import video_metrics as vm

    R, N = gen.shape[:2]
    n = min(N, truth.shape[1])
    per: dict[str, list[float]] = {}
    if n:
        per["mse"] = vm.nan_mean(vm.mse(gen[:, :n], truth[:, :n]))
        per["psnr"] = vm.nan_mean(vm.psnr(gen[:, :n], truth[:, :n]))
        per["ssim"] = vm.nan_mean(vm.ssim(gen[:, :n], truth[:, :n]))
    for name, values in vm.pixel_stats(gen).items():
        per[name] = vm.nan_mean(values)
    for name, values in vm.pixel_stats(truth).items():
        per[f"{name}_real"] = vm.nan_mean(values)

    f_gen, f_real = encoder.embed(gen), encoder.embed(truth)                         # (R, N, F), (R, N', F)
    d_gen = vm.nearest_distance(f_gen.flatten(0, 1), train_feats).reshape(R, N)
    d_real = vm.nearest_distance(f_real.flatten(0, 1), train_feats).reshape(R, -1)
    s_gen, s_real = vm.running_mean(d_gen, window), vm.running_mean(d_real, window)
    f_cal = encoder.embed(calibration)
    d_cal = vm.nearest_distance(f_cal.flatten(0, 1), train_feats).reshape(len(calibration), -1)
    threshold = vm.divergence_threshold(vm.running_mean(d_cal, window).amax(1), quantile)
    first, first_real = vm.first_divergence(s_gen, threshold), vm.first_divergence(s_real, threshold)
    per["score"], per["score_real"] = vm.nan_mean(s_gen), vm.nan_mean(s_real)

    real_pool = f_real.flatten(0, 1)
    bins = [f_gen[:, lo:lo + train_length].flatten(0, 1) for lo in range(0, N, train_length)]
    fd_bins = [vm.frechet_features(b, real_pool) for b in bins]
    fd_real = vm.frechet_features(real_pool, train_feats)

    def at(values: list[float], m: int) -> float | None:
        return values[m * train_length - 1] if len(values) >= m * train_length else None

    horizons = {}
    for m in multiples:
        h = m * train_length
        horizons[f"{m}x"] = {
            "frames": h,
            "stable_fraction": vm.stable_fraction(first, h),
            "real_stable_fraction": vm.stable_fraction(first_real, h) if truth.shape[1] >= h else None,
            "mse_mean": float(torch.tensor(per["mse"][:h]).mean()) if n >= h else None,
            "psnr_mean": float(torch.tensor(per["psnr"][:h]).mean()) if n >= h else None,
            "ssim_mean": float(torch.tensor(per["ssim"][:h]).mean()) if n >= h else None,
            "fd_last_bin": fd_bins[m - 1] if m - 1 < len(fd_bins) else None,
            "mean_intensity_at": at(per["mean"], m),
            "saturated_at": at(per["saturated"], m),
        }
    return {
        "horizons": horizons,
        "divergence": {"threshold": threshold, "window": window, "quantile": quantile,
                       "calibration_videos": len(calibration), "calibration_frames": calibration.shape[1],
                       "first_divergence": first.tolist(), "first_divergence_real": first_real.tolist(),
                       "never": N},
        "fd": {"per_bin": fd_bins, "bin": train_length, "real": fd_real},
        "ground_truth_frames": n,
        "per_frame": {k: [round(v, 6) for v in vals] for k, vals in per.items()},
    }


def rollout_speed(roll, context: Tensor, cond: Tensor | None, frames: int, window: int, seed: int) -> dict[str, float]:
    """Frames/s of one rollout (batch ``context.shape[0]``) streaming vs recomputing the last ``window`` frames."""
    out = {"frames": frames, "batch": context.shape[0], "recompute_window": window}
    for name, recompute in (("streaming", False), ("recompute", True)):
        tic = time.time()
        roll(context, frames, cond, generator=devices.generator(seed, roll.model.device), recompute=recompute,
             recompute_window=window)
        out[f"{name}_frames_per_s"] = round(frames / (time.time() - tic), 3)
    out["speedup"] = round(out["streaming_frames_per_s"] / out["recompute_frames_per_s"], 3)
    return out
