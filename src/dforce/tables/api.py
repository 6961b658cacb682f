"""The Python API reference (docs/api.md): signatures and docstring summaries of the public names.

Generated from the code, so it cannot drift from it: each module lists what users import
(its ``__all__``, or the names below for modules without one), classes with their public
methods. Only the first paragraph of each docstring is shown; the code has the rest.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from pathlib import Path

from ..records import ROOT

# module -> names (None: the module's __all__), in reading order.
MODULES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("dforce", ("DiffusionForcingModel",)),
    ("dforce.diffusion", None),
    ("dforce.models", None),
    ("dforce.data", None),
    ("dforce.train", None),
    ("dforce.zoo", ("entries", "resolve", "push_to_hub")),
    ("dforce.synthetic.data", ("GENERATORS", "generate", "oscillators", "cross", "cross_paths", "cross_suffixes")),
    ("dforce.synthetic.linear_gaussian", ("LinearGaussian", "linear_gaussian")),
    ("dforce.synthetic.exact_denoiser", ("ExactDenoiser", "ar1")),
    ("dforce.synthetic.train", ("training_data", "held_out", "train_run", "sample_run")),
    ("dforce.synthetic.cross", ("classify", "fractions", "ideal")),
    ("dforce.stats", ("wilson", "binomial_stderr")),
    ("dforce.planning.planner", ("Planner", "Plan", "goal_cost", "pd_action")),
    ("dforce.planning.train", ("train_planner",)),
    ("dforce.planning.farama", ("make_pointmaze", "D4RLFrame", "dforce_maze", "maze_of_map", "frame_offset",
                                "position_to_d4rl", "position_to_farama", "observation_to_d4rl",
                                "action_to_farama", "action_to_d4rl")),
    ("dforce.forecasting.model", ("Forecaster", "train_forecaster")),
    ("dforce.forecasting.gluonts_api", ("DiffusionForcingEstimator", "DiffusionForcingPredictor")),
    ("dforce.tasks.video", ("VideoRollout", "train_video", "held_out", "sample_video", "write_gif")),
    ("dforce.envs.maze2d", ("make", "make_batch", "normalized_score", "shortest_path_waypoints")),
    ("dforce.imitation.maze", ("CuedMaze",)),
    ("dforce.imitation.policy", ("ImitationPolicy",)),
    ("dforce.imitation.corruption", ("Corruption",)),
    ("dforce.imitation.masking", ("UnknownStepSequences", "blank_unknown")),
    ("dforce.data.maze2d", ("generate", "load_or_generate", "load_hdf5", "check")),
    ("dforce.data.moving_mnist", ("MovingMNIST", "load_digits", "load_or_generate")),
    ("dforce.data.atari", ("record", "load_or_record", "clips")),
)


def summary(obj: object) -> str:
    """The first paragraph of the docstring, on one line ('' without one)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


class _Raw(str):
    """A string that prints without quotes (annotations kept as written, short defaults)."""

    def __repr__(self) -> str:
        return str(self)


def _default(value: object) -> object:
    """Config dataclass defaults shortened to ``Name()``, paths made machine-independent."""
    if dataclasses.is_dataclass(value):
        return _Raw(f"{type(value).__name__}()")
    if isinstance(value, Path):
        inside = value.is_absolute() and value.is_relative_to(ROOT)
        return _Raw(f"<project>/{value.relative_to(ROOT)}" if inside else str(value))
    return value


def signature(obj: object, bound: bool = False) -> str:
    """``(args) -> ret`` with annotations as written in the source ('' for objects without one).

    ``bound``: drop the first parameter (``self`` of a method).
    """
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    raw = lambda a: _Raw(a) if isinstance(a, str) else a  # noqa: E731 - postponed annotations are strings
    params = [p.replace(annotation=raw(p.annotation), default=_default(p.default))
              for p in list(sig.parameters.values())[1 if bound else 0:]]
    return str(sig.replace(parameters=params, return_annotation=raw(sig.return_annotation)))


def methods(cls: type) -> list[tuple[str, object]]:
    """Public functions and properties defined on ``cls`` itself (``__call__`` included), in source order."""
    kinds = (property, classmethod, staticmethod)
    return [(name, value) for name, value in vars(cls).items()
            if (not name.startswith("_") or name == "__call__")
            and (inspect.isfunction(value) or isinstance(value, kinds))]


def describe(name: str, obj: object) -> list[str]:
    """Markdown lines for one public name."""
    if typing.get_origin(obj) is typing.Literal:
        return [f"### `{name}`", "", "One of " + ", ".join(f"`{a!r}`" for a in typing.get_args(obj)) + ".", ""]
    if getattr(obj, "__module__", None) == "typing":
        return [f"### `{name}`", "", f"`{name} = {obj!r}`", ""]
    if inspect.isclass(obj):
        sig = "" if getattr(obj, "_is_protocol", False) else signature(obj)
        lines = [f"### `{name}{sig}`", "", summary(obj), ""]
        for meth, value in methods(obj):
            target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            sig = "" if isinstance(value, property) else signature(target, bound=not isinstance(value, staticmethod))
            lines.append(f"* `{meth}{sig}`" + (f": {summary(target)}" if summary(target) else ""))
        return lines + [""]
    if callable(obj):
        return [f"### `{name}{signature(obj)}`", "", summary(obj), ""]
    keys = f" with keys {', '.join(f'`{k}`' for k in obj)}" if isinstance(obj, dict) else ""
    return [f"### `{name}`", "", f"A `{type(obj).__name__}`{keys}.", ""]


def reference(root: Path | None = None) -> str:
    """The whole reference as markdown (``root`` unused: the code imported is the code documented)."""
    lines = []
    for module_name, names in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", summary(module), ""]
        for name in names or module.__all__:
            if name.startswith("__"):
                continue
            lines += describe(name, getattr(module, name))
    return "\n".join(lines)
