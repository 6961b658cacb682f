"""`dforce eval compositional`: memory vs memoryless MPC on the cross dataset (paper App. E.2, Fig. 7).

The cross data are straight constant-speed paths from a corner of [-1, 1]^2 to the
opposite corner. One trained model is sampled from N held-out start tokens (a random
corner each) in two modes, both model-predictive control with the same plan length
(``--horizon``) and tokens executed per replan (``--execute``), until the trajectory
has ``--length`` tokens (default: the training length; start token included):

* ``memory``: each replanning step's context is the *whole executed past*.
* ``memoryless``: each replanning step sees only the *last executed token*.
  ``--forget drop`` (default) gives the model a one-token context, so it also loses
  track of time; ``--forget noise`` keeps the older tokens' slots but replaces them by
  their fully-noised version at level K (Diffusion Forcing's own way of saying
  "unknown": the model was trained on tokens at every level), so only the content
  is forgotten.

Each plan is one chunk of the configured scheduling matrix (``sampling.scheduling``)
with ``--horizon`` columns; context tokens are clean (level 0).

Classification of a trajectory x (T, 2) whose start corner is c = sign(x_0):

* ``diagonal``: ``|x_T - (-c)| <= END_TOL`` (ends at the opposite corner) and every
  point lies within ``PATH_TOL`` of the diagonal through c and -c;
* ``stitched``: ``|x_T - a| <= END_TOL`` for one of the two adjacent corners
  a = (c_0, -c_1), (-c_0, c_1): it turned onto the other diagonal;
* ``other``: everything else (ends elsewhere, back at its start, or reaches the
  opposite corner by a detour).

END_TOL = 0.3 and PATH_TOL = 0.3 (corners are 2 apart, data noise std 0.01); both are
options and are recorded in the results JSON. Fractions come with binomial standard
errors sqrt(p (1 - p) / N).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ..config import DataConfig
from ..data.synthetic import generate
from ..diffusion import commit, denoise_chunk
from ..pipeline import DiffusionForcingModel
from .synthetic import HELD_OUT_SEED_OFFSET

CLASSES = ("diagonal", "stitched", "other")
COLORS = ["tab:blue", "tab:red", "0.6"]
END_TOL = 0.3
PATH_TOL = 0.3
FORGET = ("drop", "noise")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval compositional`."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="model directory trained on data.name=cross")
    parser.add_argument("--samples", type=int, default=500, help="trajectories per mode (default 500)")
    parser.add_argument("--horizon", type=int, default=8, help="MPC plan length in tokens (default 8)")
    parser.add_argument("--execute", type=int, default=4, help="tokens executed per replan (default 4)")
    parser.add_argument("--length", type=int, default=None,
                        help="tokens per trajectory, start included (default: the training length)")
    parser.add_argument("--forget", choices=FORGET, default="drop",
                        help="memoryless context: drop the past (default) or replace it by pure noise")
    parser.add_argument("--end-tol", type=float, default=END_TOL, help=f"corner radius (default {END_TOL})")
    parser.add_argument("--path-tol", type=float, default=PATH_TOL, help=f"distance to the diagonal (default {PATH_TOL})")
    parser.add_argument("--seed", type=int, default=0, help="start corners and sampling noise")
    parser.add_argument("--out", type=Path, default=Path("results/compositional/cross.json"))
    parser.add_argument("--plot", type=Path, default=None, help="PNG (default: next to the JSON)")


# ---- classification ------------------------------------------------------------------------

def classify(traj: Tensor, end_tol: float = END_TOL, path_tol: float = PATH_TOL) -> Tensor:
    """Label trajectories (N, T, 2) as indices into ``CLASSES`` (N,) int64; see the module docstring."""
    if traj.ndim != 3 or traj.shape[-1] != 2 or traj.shape[1] < 2:
        raise ValueError(f"traj must be (N, T>=2, 2), got shape {tuple(traj.shape)}")
    if end_tol <= 0 or path_tol <= 0:
        raise ValueError(f"end_tol and path_tol must be > 0, got {end_tol}, {path_tol}")
    corner = torch.where(traj[:, 0] >= 0, 1.0, -1.0)                               # (N, 2)
    end = traj[:, -1]
    near = lambda target: (end - target).norm(dim=-1) <= end_tol                    # noqa: E731
    direction = corner / math.sqrt(2.0)
    off_diagonal = (traj[..., 0] * direction[:, None, 1] - traj[..., 1] * direction[:, None, 0]).abs()  # (N, T)
    diagonal = near(-corner) & (off_diagonal.amax(1) <= path_tol)
    flip = torch.tensor([[1.0, -1.0]])
    stitched = near(corner * flip) | near(-corner * flip)
    labels = torch.full((traj.shape[0],), CLASSES.index("other"), dtype=torch.long)
    labels[stitched] = CLASSES.index("stitched")
    labels[diagonal] = CLASSES.index("diagonal")
    return labels


def fractions(labels: Tensor) -> dict[str, dict[str, float]]:
    """Per class: fraction, binomial standard error and count of labels (N,)."""
    n = labels.numel()
    out = {}
    for i, name in enumerate(CLASSES):
        count = int((labels == i).sum())
        p = count / n
        out[name] = {"fraction": p, "stderr": math.sqrt(p * (1 - p) / n), "count": count}
    return out


def end_corners(traj: Tensor) -> dict[str, float]:
    """Diagnostics without tolerances, trajectories (N, T, 2): which corner each end point is nearest to
    (fractions of "opposite", "adjacent", "start") and the median distance to that corner."""
    corner = torch.where(traj[:, 0] >= 0, 1.0, -1.0)                               # (N, 2)
    candidates = torch.stack([-corner, corner * torch.tensor([1.0, -1.0]), corner * torch.tensor([-1.0, 1.0]),
                              corner], 1)                                        # (N, 4, 2)
    dist = (traj[:, -1:, :] - candidates).norm(dim=-1)                           # (N, 4)
    nearest, which = dist.min(1)
    kind = torch.tensor([0, 1, 1, 2])[which]
    return {"end_nearest_opposite": float((kind == 0).float().mean()),
            "end_nearest_adjacent": float((kind == 1).float().mean()),
            "end_nearest_start": float((kind == 2).float().mean()),
            "end_distance_to_nearest_corner_median": float(nearest.median())}


# ---- sampling --------------------------------------------------------------------------------

@torch.no_grad()
def plan(model: DiffusionForcingModel, past: Tensor, horizon: int, levels: Tensor, forget: str | None,
         generator: torch.Generator) -> Tensor:
    """A plan (B, horizon, 2) in data units after the executed past (B, P, 2).

    forget None: the whole past is clean context; "drop": only past[:, -1:]; "noise":
    past[:, :-1] committed at the top noise level K (fully noised), the last token clean.
    """
    net, schedule, dev = model.backbone, model.schedule, model.device
    x = model.normalizer.normalize(past.to(dev))
    if forget == "drop":
        x = x[:, -1:]
    state = net.init_state(x.shape[0])
    if forget == "noise" and x.shape[1] > 1:
        state = commit(net, schedule, x[:, :-1], schedule.levels, None, state, noise=True, generator=generator)
        x = x[:, -1:]
    state = commit(net, schedule, x, 0, None, state)
    noise = torch.randn((x.shape[0], horizon, *model.token_shape), generator=generator, device=dev)
    s = model.sampling_cfg
    out = denoise_chunk(net, schedule, levels, noise, state, target=model.diffusion_cfg.target,  # type: ignore[arg-type]
                        step=s.step, eta=s.eta, generator=generator)  # type: ignore[arg-type]
    return model.normalizer.unnormalize(out).cpu()


def mpc(model: DiffusionForcingModel, start: Tensor, length: int, horizon: int, execute: int, forget: str | None,
        generator: torch.Generator) -> Tensor:
    """Receding-horizon sampling from start tokens (B, 1, 2) to trajectories (B, length, 2)."""
    levels = model.scheduling_matrix(horizon=horizon)
    traj = start
    while traj.shape[1] < length:
        take = min(execute, length - traj.shape[1])
        traj = torch.cat([traj, plan(model, traj, horizon, levels, forget, generator)[:, :take]], 1)
    return traj


# ---- the evaluation --------------------------------------------------------------------------

def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the first bad option."""
    for name, minimum in (("samples", 1), ("horizon", 1), ("execute", 1), ("length", 2)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be >= {minimum}, got {value}")
    if args.execute > args.horizon:
        raise ValueError(f"--execute ({args.execute}) must not exceed --horizon ({args.horizon})")
    if args.end_tol <= 0 or args.path_tol <= 0:
        raise ValueError(f"--end-tol and --path-tol must be > 0, got {args.end_tol}, {args.path_tol}")


def load(checkpoint: Path) -> tuple[DiffusionForcingModel, DataConfig]:
    """The model and its training data config; ValueError unless it was trained on cross with 2-D tokens."""
    model = DiffusionForcingModel.from_pretrained(checkpoint)
    data = DataConfig(**model.extra.get("data", {}))
    if data.name != "cross" or model.token_shape != (2,):
        raise ValueError(f"--checkpoint {str(checkpoint)!r} was trained on data.name={data.name!r} with tokens "
                         f"{model.token_shape}; need cross with tokens (2,)")
    return model, data


def run(args: argparse.Namespace) -> list[Path]:
    """Sample both modes, classify, write the results JSON and the two-panel PNG; returns their paths."""
    from ..plotting import plot_labelled_panels
    from ..results import write_result

    check_args(args)
    model, data = load(args.checkpoint)
    length = args.length or data.length
    start_seed = data.seed + HELD_OUT_SEED_OFFSET + args.seed
    start = generate("cross", args.samples, length, start_seed, data.noise)[:, :1]       # (N, 1, 2)
    modes = {"memory": None, "memoryless": args.forget}
    tic, trajectories, labels, metrics = time.time(), {}, {}, {}
    for i, (mode, forget) in enumerate(modes.items()):
        g = torch.Generator(model.device).manual_seed(args.seed * 100 + i)
        trajectories[mode] = mpc(model, start, length, args.horizon, args.execute, forget, g)
        labels[mode] = classify(trajectories[mode], args.end_tol, args.path_tol)
        metrics[mode] = {**fractions(labels[mode]), "diagnostics": end_corners(trajectories[mode])}
    wall = time.time() - tic
    titles = {"memory": "memory: context = whole executed past",
              "memoryless": f"memoryless: context = last token ({args.forget})"}
    plot_path = args.plot or args.out.with_suffix(".png")
    plot = plot_labelled_panels({titles[m]: (trajectories[m], labels[m]) for m in modes}, list(CLASSES), plot_path,
                                COLORS, title=f"cross, MPC horizon {args.horizon}, execute {args.execute}, "
                                              f"N={args.samples} per mode (64 drawn)")
    protocol = {
        "checkpoint": str(args.checkpoint), "samples_per_mode": args.samples,
        "length": length, "training_length": data.length,
        "horizon": args.horizon, "execute": args.execute, "forget": args.forget,
        "memory_context": "whole executed past, clean",
        "scheduling_rows": model.scheduling_matrix(horizon=args.horizon).shape[0],
        "sampling_steps": model.sampling_cfg.steps,
        "scheduling": model.sampling_cfg.scheduling, "step": model.sampling_cfg.step,
        "classes": {"diagonal": "ends within end_tol of the opposite corner, all points within path_tol of that diagonal",
                    "stitched": "ends within end_tol of an adjacent corner", "other": "anything else"},
        "end_tol": args.end_tol, "path_tol": args.path_tol,
    }
    result = write_result(args.out, metrics, wall_time_s=wall, command=args.command_line,
                          seeds={"start_corners": start_seed, "sampling": args.seed}, protocol=protocol,
                          plot=str(plot))
    return [result, plot]
