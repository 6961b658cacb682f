"""Command line: parse, build, call. ``main(argv) -> exit code``; user errors exit 2 with one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Sequence

from . import flags
from .config import CHOICES

log = logging.getLogger("dforce")

# `dforce eval NAME`: each module offers add_arguments(parser) and run(args) -> list[Path].
EVALS = {
    "likelihood": ("dforce.synthetic.likelihood", "ELBO of DF / teacher-forcing / full-sequence models vs the exact log-likelihood"),
    "compositional": ("dforce.synthetic.compositional", "memory vs stitching on the cross data: DF, teacher forcing and full sequence against the ideal"),
    "forecasting": ("dforce.forecasting.evaluate", "DF vs teacher forcing, full sequence, DeepAR and naive baselines (CRPS-sum)"),
    "planning": ("dforce.planning.evaluate", "Maze2D planning: DF with MCG vs ablations and Diffuser-like baselines (D4RL score)"),
    "video": ("dforce.tasks.video_eval", "long video rollouts: MSE/PSNR/SSIM, Frechet distance, divergence, speed"),
    "imitation": ("dforce.imitation.evaluate", "cued Maze2D imitation: DF with memory vs memoryless and teacher forcing, corrupted observations"),
}

SCHEDULINGS = CHOICES["sampling.scheduling"]

# `dforce data NAME`: same interface, for datasets that are generated or checked.
DATASETS = {
    "maze2d": ("dforce.planning.data", "regenerate (or load) a D4RL Maze2D random-walk dataset; --check its statistics"),
    "atari": ("dforce.tasks.atari_data", "record (or load) Atari frames with a sticky random policy, actions as conditioning"),
    "video-encoder": ("dforce.tasks.video_encoder", "train (or load) the small frame encoder used by the video metrics"),
}


class UsageError(ValueError):
    """A command line argparse refused; ``prog`` is the (sub)command it belongs to."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and bounded numbers.

    ``error`` raises instead of printing the usage and exiting, so :func:`main` reports a
    bad flag like any other bad input. Plain ``type=int``/``type=float`` flags, in every
    subcommand (the eval and data modules add their own), parse through
    :func:`flags.bounded_int`/:func:`flags.finite_float`: no NaN, inf or 20-digit integers.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("type", int, flags.bounded_int)
        self.register("type", float, flags.finite_float)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dforce", description="Diffusion Forcing: train, sample and inspect sequence diffusion models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config (or 'default') with key=value overrides")
    t.add_argument("config", help="YAML preset, e.g. configs/demo.yaml, or 'default' for the embedded config")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.width=256 train.steps=1000")
    t.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run directory")
    t.add_argument("--force", action="store_true",
                   help="train into a directory dforce did not create, or resume under a changed config")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    flags.add_device(t, train=True, default=None)   # None: the config's train.device (auto unless set)

    s = sub.add_parser("sample", help="roll a trained model out from held-out context; writes samples and a plot")
    s.add_argument("checkpoint", type=Path, help="a model directory (config.json + model.safetensors)")
    s.add_argument("--length", "--frames", type=flags.int_in(1, flags.MAX_TOKENS), default=None,
                   help="tokens (frames) to generate (default: 10x the training length)")
    s.add_argument("--context", type=flags.int_in(1, flags.MAX_TOKENS), default=4, help="real tokens given as context")
    s.add_argument("--batch", type=flags.int_in(1, flags.MAX_BATCH), default=8)
    s.add_argument("--scheduling", default=None, choices=SCHEDULINGS, help=", ".join(SCHEDULINGS))
    s.add_argument("--slope", type=flags.float_in(0, flags.MAX_SLOPE), default=None)
    s.add_argument("--steps", type=flags.int_in(1, flags.MAX_STEPS), default=None,
                   help="sampling steps per token (at most the model's diffusion levels)")
    s.add_argument("--chunk", type=flags.int_in(1, flags.MAX_TOKENS), default=None, help="tokens denoised together")
    s.add_argument("--stabilization", type=flags.non_negative_int, default=None,
                   help="noise level generated context is committed at")
    s.add_argument("--seed", type=flags.seed, default=0)
    s.add_argument("--gif", type=Path, help="video models: GIF of generated | ground truth (default OUT/samples.gif)")
    s.add_argument("--out", type=Path, default=Path("outputs/sample"))
    flags.add_device(s)

    f = sub.add_parser("forecast", help="forecast every test window of a dataset with a trained forecaster")
    f.add_argument("checkpoint", type=Path, help="a forecasting model directory (e.g. runs/exchange/best)")
    f.add_argument("--dataset", help="GluonTS name, archive, directory or CSV (default: the training dataset)")
    f.add_argument("--samples", type=flags.int_in(1, flags.MAX_BATCH),
                   help="sample paths per window (default: the training config's)")
    f.add_argument("--seed", type=flags.seed, default=0)
    f.add_argument("--plot", action="store_true", help="write a fan chart per test window")
    f.add_argument("--out", type=Path, default=Path("outputs/forecast"))
    flags.add_device(f)

    m = sub.add_parser("schedule", help="print (and plot) a scheduling matrix")
    m.add_argument("name", help="full_sequence, autoregressive, pyramid or trapezoid")
    m.add_argument("--horizon", type=flags.int_in(1, 10_000), default=8)
    m.add_argument("--steps", type=flags.int_in(1, 10_000), default=10)
    m.add_argument("--slope", type=flags.float_in(0, flags.MAX_SLOPE), default=1.0)
    m.add_argument("--plot", type=Path, help="write a heatmap PNG here")

    sub.add_parser("models", help="list the shipped checkpoints (the model zoo): name, task, size, score, command")
    tb = sub.add_parser("tables", help="regenerate the results tables in README.md and docs/ from results/**/*.json")
    tb.add_argument("--check", action="store_true", help="only report stale tables; exit 1 when there are any")
    c = sub.add_parser("show-config", help="print the resolved configuration")
    c.add_argument("config", nargs="?", default="default")
    c.add_argument("overrides", nargs="*")

    e = sub.add_parser("eval", help="run an evaluation and write results/<task>/*.json")
    tasks = e.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, (module, summary) in EVALS.items():
        importlib.import_module(module).add_arguments(tasks.add_parser(name, help=summary, description=summary))

    g = sub.add_parser("data", help="generate or check a dataset")
    kinds = g.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, (module, summary) in DATASETS.items():
        importlib.import_module(module).add_arguments(kinds.add_parser(name, help=summary, description=summary))

    d = sub.add_parser("demo", help="train a small model on synthetic oscillators and write plots to outputs/demo")
    d.add_argument("--out", type=Path, default=Path("outputs/demo"))
    d.add_argument("--steps", type=flags.positive_int, default=None,
                   help="training steps (default: the embedded config's)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--results", type=Path, help="also write the summary JSON here (e.g. results/demo/oscillators.json)")
    d.add_argument("--exchange-data", help="Exchange dataset for the forecast step (name, archive or directory; "
                                           "default: where the shipped checkpoint was trained from)")
    d.add_argument("--skip", nargs="+", default=[], choices=("forecast", "planning", "video"),
                   help="steps with shipped checkpoints to leave out")
    flags.add_device(d, train=True)
    return p


def _config(path: str, overrides: Sequence[str]):
    from .config import load_config

    return load_config(None if path == "default" else path, list(overrides))


def cmd_train(args: argparse.Namespace) -> int:
    from .config import to_dict
    from .train import check_config, run_dir, signals

    # --device goes last, so it wins over a train.device override
    cfg = _config(args.config, [*args.overrides, *([f"train.device={args.device}"] if args.device else [])])
    name = "default" if args.config == "default" else Path(args.config).stem
    out = args.out or Path("runs") / name
    check_config(cfg.train)   # before the run directory is touched
    with signals.sigterm_raises(), run_dir.claim(out, to_dict(cfg), resume=args.resume, force=args.force):
        model = _train_task(cfg, out, args)
    print(f"model: {model}")
    return 0


def _train_task(cfg, out: Path, args: argparse.Namespace) -> Path:
    """Dispatch to the domain's trainer; returns the model directory to report."""
    from .synthetic.train import train_run

    if cfg.data.name == "timeseries":  # returns the checkpoint it selected on validation
        from .forecasting.model import train_forecaster

        return train_forecaster(cfg, out, resume=args.resume, progress=not args.no_progress)
    if cfg.data.name == "maze2d":
        from .planning.train import train_planner

        train_planner(cfg, out, resume=args.resume, progress=not args.no_progress)
    elif cfg.data.name == "imitation":
        from .imitation.train import train_imitation

        train_imitation(cfg, out, resume=args.resume, progress=not args.no_progress)
    elif cfg.data.name in ("moving_mnist", "atari"):
        from .tasks.video import train_video

        train_video(cfg, out, resume=args.resume, progress=not args.no_progress)
    else:
        train_run(cfg, out, resume=args.resume, progress=not args.no_progress)
    return out / "model"


def cmd_sample(args: argparse.Namespace) -> int:
    from .synthetic.train import sample_run

    if _is_video_checkpoint(args.checkpoint):
        from .tasks.video import sample_video

        for path in sample_video(args.checkpoint, args.gif, args.out, frames=args.length, context=args.context,
                                 batch=args.batch, scheduling=args.scheduling, slope=args.slope, steps=args.steps,
                                 chunk=args.chunk, stabilization=args.stabilization, seed=args.seed,
                                 device=args.device):
            print(path)
        return 0
    files = sample_run(args.checkpoint, args.out, length=args.length, context=args.context, batch=args.batch,
                       scheduling=args.scheduling, slope=args.slope, steps=args.steps, chunk=args.chunk,
                       stabilization=args.stabilization, seed=args.seed, device=args.device)
    for path in files:
        print(path)
    return 0


def _is_video_checkpoint(name: Path) -> bool:
    """Whether a model directory's (or zoo name's) config.json names a video dataset (False when unreadable:
    the image path's loader then reports what is wrong)."""
    import json

    from .zoo import resolve

    try:
        meta = json.loads((resolve(name) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    for key in ("extra", "data"):   # any of these may be missing or of the wrong type in a broken file
        meta = meta.get(key) if isinstance(meta, dict) else None
    return isinstance(meta, dict) and meta.get("name") in ("moving_mnist", "atari")


def cmd_forecast(args: argparse.Namespace) -> int:
    from .forecasting.evaluate import forecast_run

    for path in forecast_run(args.checkpoint, args.dataset, args.out, args.samples, args.seed, args.plot,
                             args.command_line, args.device):
        print(path)
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    import torch

    from .diffusion import by_name

    levels = by_name(args.name, args.horizon, args.steps, args.slope)
    torch.set_printoptions(linewidth=200)
    print(f"# {args.name}: {levels.shape[0]} rows x {levels.shape[1]} tokens, grid levels 0..{args.steps}")
    for row in levels.tolist():
        print(" ".join(f"{v:>{len(str(args.steps))}d}" for v in row))
    if args.plot:
        from .plotting import plot_schedule

        print(plot_schedule(levels, args.plot, title=f"{args.name} (slope {args.slope})"))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import table

    print(table())
    print("load one with DiffusionForcingModel.from_pretrained(NAME) or pass NAME as --checkpoint")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from .tables import update

    stale = update(check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if args.check and stale else 0


def cmd_show_config(args: argparse.Namespace) -> int:
    from .config import to_yaml

    print(to_yaml(_config(args.config, args.overrides)), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .tasks.demo import run_demo

    for path in run_demo(args.out, steps=args.steps, progress=not args.no_progress, results=args.results,
                         command=args.command_line, exchange=args.exchange_data, skip=tuple(args.skip),
                         device=args.device):
        print(path)
    print(f"demo outputs are in {args.out}/: open {args.out}/index.html")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    for path in importlib.import_module(DATASETS[args.dataset][0]).run(args):
        print(path)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    for path in importlib.import_module(EVALS[args.task][0]).run(args):
        print(path)
    return 0


COMMANDS = {"eval": cmd_eval, "data": cmd_data, "train": cmd_train, "sample": cmd_sample, "forecast": cmd_forecast,
            "schedule": cmd_schedule, "show-config": cmd_show_config, "demo": cmd_demo, "models": cmd_models,
            "tables": cmd_tables}


# Failures of the input (arguments, configs, files, devices, sizes): one line, exit 2.
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, OverflowError, MemoryError)
TAKES_OVERRIDES = ("train", "show-config")


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may also follow flags (``train c.yaml --no-progress a=1``)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills the overrides positional before the first flag only; what follows comes back as extra
    if args.command in TAKES_OVERRIDES and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        raise UsageError(f"dforce {args.command}", f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 training diverged, 2 bad input, 128+N stopped by signal N).

    The one error boundary: every failure is a single line ``dforce <command>: ...`` on stderr,
    never a traceback (``DFORCE_DEBUG=1`` re-raises unexpected errors to show one).
    """
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "dforce"
    try:
        args = _parse(argv)
        prog = " ".join(["dforce", args.command, *([getattr(args, "task", None) or getattr(args, "dataset", "")]
                                                   if args.command in ("eval", "data") else [])])
        args.command_line = ["dforce", *argv]  # recorded in results files
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        from .train import TrainingDiverged, TrainingInterrupted

        try:
            return COMMANDS[args.command](args)
        except TrainingDiverged as err:
            print(f"{prog}: {_one_line(err)}", file=sys.stderr)
            return 1
        except TrainingInterrupted as err:
            print(f"{prog}: {_one_line(err)}", file=sys.stderr)
            return err.exit_code
    except UsageError as err:
        print(f"{err.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT)", file=sys.stderr)
        return 130
    except Exception as err:   # a bug, or a library failing on input we did not foresee: still one line
        if os.environ.get("DFORCE_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(err).__name__}: {_one_line(err)} "
              "(DFORCE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    """A message on one line: torch, safetensors and OmegaConf errors span several."""
    from .train.errors import one_line

    return one_line(err)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
