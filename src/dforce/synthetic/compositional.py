"""`dforce eval compositional`: memory vs stitching on the cross data (paper App. E.2, Fig. 7).

Trained on straight corner-to-corner paths, a sequence model sampled with receding-horizon
control from a random start corner either reproduces the training diagonals or *stitches*
pieces of two of them into a V never seen in training, depending on what context each
plan is shown. ``--context`` picks it, per plan:

* ``1``: the last executed token (position only): at the centre all four directions are
  possible, so an exact model stitches half the time (:func:`dforce.synthetic.cross.ideal`);
* ``2``: the last two tokens (position and direction): diagonals again;
* ``all``: the whole executed past (memory): diagonals.

Each plan covers the rest of the trajectory, or ``--horizon`` tokens, and its first
``--execute`` tokens are executed (default: half a path, so the only replan is at the
centre). ``--conditioning`` sets how a plan is conditioned on its context:

* ``commit`` (default): the context tokens are committed clean to the causal state and the
  plan is denoised after them with the scheduling matrix (``--scheduling``, default the
  checkpoint's; a ``full_sequence``-trained model always uses ``full_sequence``);
* ``replacement`` (Diffuser-style inpainting): context and plan form one chunk from a fresh
  state, denoised with one shared level, the context columns re-noised to that level at
  every step (full-sequence scheduling for every model).

On validation seeds ``commit`` also conditions the full-sequence model better than
replacement (docs/compositional.md), though it never saw a clean token next to a noisy one.

Every checkpoint and context mode writes one record, ``<out>/cross-<name>-context<N>.json``
(``-memory`` for ``all``), with the class fractions, their 95% Wilson intervals and the
ideal's prediction, and one figure of sampled trajectories, a row per checkpoint and a
column per mode. ``--split val`` draws start corners and sampling noise from seeds kept
apart from the test ones, for choosing sampling options.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .. import devices, flags
from ..config import DataConfig, section
from ..diffusion import Inpaint, by_name, commit, denoise_chunk, randn
from ..pipeline import DiffusionForcingModel
from ..results import add_destination, destination
from .cross import CLASSES, END_TOL, PATH_TOL, classify, distance_to_ideal, end_corners, fractions, ideal
from .data import generate
from .likelihood import parse_checkpoints
from .train import HELD_OUT_SEED_OFFSET

DEFAULT_OUT = Path("outputs/compositional")
RECORD_DIR = Path("results/compositional")
SCHEDULINGS = ("full_sequence", "autoregressive", "pyramid", "trapezoid")
SPLITS = {"test": 0, "val": 500}        # seed offsets: validation never meets a test seed
METHODS = {"independent": "Diffusion Forcing", "teacher_forcing": "teacher forcing",
           "full_sequence": "full-sequence diffusion"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `dforce eval compositional`."""
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="[NAME=]DIR",
                        help="models trained on data.name=cross, named by the directory (its parent's when it "
                             "is called 'model') unless given as name=path")
    parser.add_argument("--context", default="1,2,all",
                        help="comma list of context modes: a number of last tokens, or 'all' (default 1,2,all)")
    parser.add_argument("--samples", type=int, default=1000, help="trajectories per checkpoint and mode (default 1000)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="plan length in tokens (default: the rest of the trajectory)")
    parser.add_argument("--execute", type=int, default=None,
                        help="tokens executed per plan (default: half a path, (length-1)/2)")
    parser.add_argument("--length", type=int, default=None,
                        help="tokens per trajectory, start included (default: the training length)")
    parser.add_argument("--scheduling", default=None,
                        help="scheduling of DF / teacher-forcing plans (default: each checkpoint's; "
                             "full-sequence models always use full_sequence)")
    parser.add_argument("--conditioning", choices=("commit", "replacement"), default="commit",
                        help="how plans see their context: committed clean to the causal state (default) or "
                             "replacement (inpainting)")
    parser.add_argument("--end-tol", type=float, default=END_TOL, help=f"corner radius (default {END_TOL})")
    parser.add_argument("--path-tol", type=float, default=PATH_TOL, help=f"distance to the cross (default {PATH_TOL})")
    parser.add_argument("--split", choices=tuple(SPLITS), default="test",
                        help="seeds of start corners and sampling: test (default) or val (for choosing options)")
    parser.add_argument("--seed", type=int, default=0, help="added to the split's seeds")
    flags.add_device(parser)
    add_destination(parser, DEFAULT_OUT, RECORD_DIR)
    parser.add_argument("--no-plot", action="store_true", help="no figure")


# ---- inputs ---------------------------------------------------------------------------------

def parse_context(text: str) -> list[int | None]:
    """'1,2,all' -> [1, 2, None] (None = the whole past); ValueError for anything else."""
    modes: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "all":
            modes.append(None)
        elif part.isdigit() and int(part) >= 1:
            modes.append(int(part))
        else:
            raise ValueError(f"--context entries must be integers >= 1 or 'all', got {part!r} in {text!r}")
    if len(set(modes)) != len(modes):
        raise ValueError(f"--context has duplicates: {text!r}")
    return modes


def mode_name(context: int | None) -> str:
    return "memory" if context is None else f"context{context}"


def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the first bad option."""
    for name, minimum in (("samples", 1), ("horizon", 1), ("execute", 1), ("length", 3)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be >= {minimum}, got {value}")
    if args.horizon is not None and args.execute is not None and args.execute > args.horizon:
        raise ValueError(f"--execute ({args.execute}) must not exceed --horizon ({args.horizon})")
    if not (args.end_tol > 0 and args.path_tol > 0):
        raise ValueError(f"--end-tol and --path-tol must be > 0, got {args.end_tol}, {args.path_tol}")
    if args.scheduling is not None and args.scheduling not in SCHEDULINGS:
        raise ValueError(f"--scheduling {args.scheduling!r} is not one of {', '.join(SCHEDULINGS)}")


def load(name: str, checkpoint: Path, device: str | torch.device = "cpu") -> tuple[DiffusionForcingModel, DataConfig]:
    """The model (on ``device``) and its training data config; ValueError unless it was trained on cross with 2-D tokens."""
    for candidate in (checkpoint, checkpoint / "model"):
        if (candidate / "config.json").is_file():
            checkpoint = candidate
            break
    model = DiffusionForcingModel.from_pretrained(checkpoint, device)
    data = section(DataConfig, model.extra.get("data", {}), "config.json extra.data")
    if data.name != "cross" or model.token_shape != (2,) or model.cond_dim:
        raise ValueError(f"checkpoint {name}={str(checkpoint)!r} was trained on data.name={data.name!r} with tokens "
                         f"{model.token_shape}; need cross with tokens (2,) and no conditioning")
    return model, data


# ---- sampling -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sampler:
    """How one checkpoint plans: its model, scheduling name and whether it inpaints its context."""

    model: DiffusionForcingModel
    scheduling: str
    replace_context: bool

    @classmethod
    def of(cls, model: DiffusionForcingModel, scheduling: str | None, conditioning: str = "commit") -> "Sampler":
        if conditioning == "replacement" or model.diffusion_cfg.forcing == "full_sequence":
            return cls(model, "full_sequence", conditioning == "replacement")
        return cls(model, scheduling or model.sampling_cfg.scheduling, False)

    @torch.no_grad()
    def plan(self, context: Tensor, horizon: int, generator: torch.Generator) -> Tensor:
        """A plan (B, horizon, 2) in data units after the context tokens (B, C, 2)."""
        m, s = self.model, self.model.sampling_cfg
        ctx = m.normalizer.normalize(context.to(m.device))
        net, schedule, (B, C) = m.backbone, m.schedule, ctx.shape[:2]
        width = C + horizon if self.replace_context else horizon
        levels = by_name(self.scheduling, width, s.steps, s.slope)
        noise = randn((B, width, 2), generator, m.device)
        kwargs = dict(target=m.diffusion_cfg.target, step=s.step, eta=s.eta, generator=generator)
        if self.replace_context:
            known = torch.zeros(B, width, dtype=torch.bool, device=m.device)
            known[:, :C] = True
            values = torch.cat([ctx, torch.zeros_like(noise[:, C:])], 1)
            inpaint = Inpaint(values=values, mask=known, relabel=False)
            out = denoise_chunk(net, schedule, levels, noise, net.init_state(B), inpaint=inpaint, **kwargs)[:, C:]
        else:
            state = commit(net, schedule, ctx, 0, None, net.init_state(B))
            out = denoise_chunk(net, schedule, levels, noise, state, **kwargs)
        return m.normalizer.unnormalize(out).cpu()


def mpc(sampler: Sampler, start: Tensor, length: int, horizon: int | None, execute: int, context: int | None,
        generator: torch.Generator) -> Tensor:
    """Receding-horizon sampling from start tokens (B, 1, 2) to trajectories (B, length, 2).

    Each plan sees the last ``context`` executed tokens (None: all of them), covers the rest
    of the trajectory (at most ``horizon`` tokens) and executes its first ``execute``.
    """
    traj = start
    while traj.shape[1] < length:
        left = length - traj.shape[1]
        plan_length = left if horizon is None else min(horizon, left)
        past = traj if context is None else traj[:, -context:]
        traj = torch.cat([traj, sampler.plan(past, plan_length, generator)[:, :min(execute, left)]], 1)
    return traj


# ---- the evaluation -------------------------------------------------------------------------

def start_corners(data: DataConfig, n: int, length: int, base: int) -> tuple[int, Tensor]:
    """The seed and ``n`` exact start corners (n, 1, 2) of a split's ``base`` (:data:`SPLITS` plus --seed),
    drawn apart from the training data's seeds."""
    seed = data.seed + HELD_OUT_SEED_OFFSET + base
    return seed, generate("cross", n, length, seed, 0.0)[:, :1]


def sampling_seed(base: int, checkpoint: int, mode: int) -> int:
    """The sampling seed of the ``checkpoint``-th model in the ``mode``-th context mode of a split's ``base``."""
    return base * 1000 + checkpoint * 10 + mode


def evaluate(sampler: Sampler, start: Tensor, length: int, execute: int, context: int | None,
             args: argparse.Namespace, seed: int) -> tuple[dict, Tensor, Tensor]:
    """Trajectories of one checkpoint in one mode: (metrics, trajectories (N, length, 2), labels (N,))."""
    g = devices.generator(seed, sampler.model.device)
    traj = mpc(sampler, start, length, args.horizon, execute, context, g)
    labels = classify(traj, args.end_tol, args.path_tol)
    measured, expected = fractions(labels), ideal(length, execute, context)
    metrics = {**measured, "ideal": expected, "distance_to_ideal": distance_to_ideal(measured, expected),
               "diagnostics": end_corners(traj, args.path_tol), "samples": int(start.shape[0])}
    return metrics, traj, labels


def describe(sampler: Sampler, data: DataConfig) -> dict:
    """What a record says about the model and how it was sampled."""
    forcing = sampler.model.diffusion_cfg.forcing
    return {"method": METHODS.get(forcing, forcing), "forcing": forcing,
            "conditioning": "replacement (inpainting)" if sampler.replace_context else "committed clean",
            "scheduling": sampler.scheduling, "sampling_steps": sampler.model.sampling_cfg.steps,
            "training_length": data.length,
            "training_data": {"suffixes": data.suffixes, "whole_paths": data.whole_paths, "fresh": data.fresh,
                              "window": data.window}}


def run(args: argparse.Namespace) -> list[Path]:
    """Sample every checkpoint in every mode, write one record per pair and the figure; returns the paths."""
    from ..results import write_result

    check_args(args)
    modes = parse_context(args.context)
    models = {name: load(name, path, args.device) for name, path in parse_checkpoints(args.checkpoints).items()}
    lengths = {data.length for _, data in models.values()}
    length = max(lengths) if args.length is None else args.length
    execute = max(1, (length - 1) // 2) if args.execute is None else args.execute
    out = destination(args)
    base = SPLITS[args.split] + args.seed
    start_seed, start = start_corners(next(iter(models.values()))[1], args.samples, length, base)
    written, panels = [], {}
    figure = out / "cross.png"
    pictures = {} if args.no_plot else {"pictures": [str(figure)]}
    for i, (name, (model, data)) in enumerate(models.items()):
        sampler = Sampler.of(model, args.scheduling, args.conditioning)
        for j, context in enumerate(modes):
            tic, seed = time.time(), sampling_seed(base, i, j)
            metrics, traj, labels = evaluate(sampler, start, length, execute, context, args, seed)
            panels[(name, mode_name(context))] = (traj, labels, metrics)
            protocol = {"checkpoint": args.checkpoints[i], "name": name, "context": "all" if context is None else context,
                        **describe(sampler, data), "samples": args.samples, "length": length, "execute": execute,
                        "horizon": "rest of the trajectory" if args.horizon is None else args.horizon, "split": args.split,
                        "end_tol": args.end_tol, "path_tol": args.path_tol}
            path = out / f"cross-{name}-{mode_name(context)}.json"
            written.append(write_result(path, metrics, wall_time_s=time.time() - tic, command=args.command_line,
                                        seeds={"start_corners": start_seed, "sampling": seed}, protocol=protocol,
                                        **pictures))
    if not args.no_plot:
        from .figure import plot_cross

        title = (f"cross, {args.split} seeds: {args.samples} trajectories per panel (48 drawn), plans of the rest "
                 f"of the path, {execute} tokens executed per plan")
        written.append(plot_cross(panels, figure, title))
    return written
