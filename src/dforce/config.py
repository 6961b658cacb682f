"""Structured run configuration: frozen dataclasses, YAML presets, dotted overrides.

``load_config("configs/demo.yaml", ["model.width=256"])`` merges the YAML file and the
overrides onto the defaults through OmegaConf structured configs, so unknown keys and
values of the wrong type fail, then checks values against the allowed sets. Every
failure is a ``ValueError`` naming the key, the value and what is allowed. The
defaults of these dataclasses are the embedded demo configuration.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

CHOICES: dict[str, tuple[str, ...]] = {
    "model.backbone": ("rnn", "transformer", "frames"),
    "diffusion.beta_schedule": ("linear", "cosine", "sigmoid", "log_snr"),
    "diffusion.target": ("eps", "x0", "v"),
    "diffusion.weighting": ("uniform", "min_snr", "fused_snr"),
    "diffusion.forcing": ("independent", "full_sequence", "teacher_forcing"),
    "diffusion.tf_position": ("real", "token"),
    "sampling.scheduling": ("full_sequence", "autoregressive", "pyramid", "trapezoid"),
    "sampling.step": ("ddim", "ddpm"),
    "data.name": ("oscillators", "cross", "linear_gaussian", "timeseries", "maze2d", "moving_mnist", "atari",
                  "imitation"),
    "video.size": (32, 64),
    "planning.maze": ("umaze", "medium", "large"),
    "imitation.mode": ("memory", "memoryless"),
    "planning.guidance_weighting": ("variance", "constant"),
    "planning.goal_cost": ("distance", "squared"),
    "planning.guidance_form": ("x0", "ddim"),
    "train.device": ("auto", "cpu", "cuda"),
    "forecast.tokens": ("levels", "increments"),
}


@dataclass(frozen=True)
class ModelConfig:
    """The backbone network (see dforce.models)."""

    backbone: str = "rnn"
    width: int = 128
    depth: int = 2
    heads: int = 4                      # transformer only
    window: Optional[int] = None        # transformer only: tokens a token may attend to (None = all)


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, prediction target, loss weighting and how training levels are drawn."""

    levels: int = 1000
    beta_schedule: str = "sigmoid"
    zero_terminal: bool = False
    target: str = "v"
    weighting: str = "min_snr"
    snr_gamma: float = 5.0
    fused_decay: float = 0.9
    forcing: str = "independent"
    clean_prob: float = 0.0             # independent forcing: chance a training token is clean (level 0)
    tf_position: str = "real"           # teacher forcing: noised token drawn among real tokens or all positions


@dataclass(frozen=True)
class SamplingConfig:
    """Default sampling: scheduling matrix per chunk, step rule, stabilization."""

    steps: int = 20
    scheduling: str = "pyramid"
    slope: float = 2.0
    chunk: int = 8
    step: str = "ddim"
    eta: float = 0.0
    stabilization: int = 20             # noise level generated context is committed at
    noise_context: bool = True          # commit a draw a_k x0 + s_k eps, not the mean a_k x0 (docs/concepts.md)


@dataclass(frozen=True)
class DataConfig:
    """A built-in synthetic dataset (see dforce.synthetic.data)."""

    name: str = "oscillators"
    sequences: int = 4096
    length: int = 32
    window: Optional[int] = None        # train on one random crop of this many tokens per sequence
    suffixes: bool = False              # train on suffixes from uniform offsets, padded and masked
    whole_paths: float = 0.0            # with suffixes: share of sequences kept whole (offset 0)
    fresh: bool = False                 # cross only: draw new sequences for every batch
    noise: Optional[float] = None       # None: the generator's default
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging and checkpointing."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    bf16: bool = False                  # bf16 autocast on the training device (CUDA, or a CPU with AVX-512 bf16)
    compile: bool = False               # torch.compile the training forward (GPU; on this CPU it measured no gain)
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    eval_every: int = 0                 # 0: no periodic evaluation
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = True


@dataclass(frozen=True)
class ForecastConfig:
    """Probabilistic forecasting protocol, used when ``data.name`` is ``timeseries``."""

    dataset: Optional[str] = None            # GluonTS name, .tar.gz archive, dataset directory or ETT CSV
    prediction_length: Optional[int] = None  # None: the dataset's own (required for a CSV)
    context_length: Optional[int] = None     # None: equal to the prediction length (the paper's protocol)
    test_windows: int = 7                    # CSV only; GluonTS test sets define their own windows
    val_windows: int = 5                     # cut from the end of the training range, for model selection
    backtest_windows: int = 0                # held-out windows after the validation ones (dforce eval forecasting --backtest)
    tokens: str = "levels"                   # "levels" (relative to the last context value) or "increments" (x_t - x_t-1)
    max_lag: int = 800                       # seasonal lags kept: GluonTS's, from the window length up to this
    level_feature: bool = True               # condition on each window's level (see forecasting/windows.py)
    mirror: bool = False                     # also train on the negated series (no drift direction preferred)
    samples: int = 100                       # sample paths per test window
    val_samples: int = 20                    # sample paths per validation window during training


@dataclass(frozen=True)
class PlanningConfig:
    """Maze2D planning, used when ``data.name`` is ``maze2d`` (see dforce.planning).

    ``data.length`` is the plan horizon in tokens and ``data.sequences`` the number of
    training windows drawn from the dataset.
    """

    maze: str = "medium"                     # umaze, medium or large (D4RL maze2d-*-v1)
    frame_stack: int = 10                    # env steps per token (token = k x (obs, action))
    dataset_steps: Optional[int] = None      # None: D4RL's size (1M / 2M / 4M)
    dataset_seed: int = 0                    # seed of the regenerated random-walk dataset
    guidance_scale: float = 2.0              # goal guidance step on the normalized x0 estimate
    guidance_weighting: str = "constant"     # "constant" (paper) or "variance": push scaled by each token's noise variance
    guidance_form: str = "x0"                # "x0": push the x0 estimate; "ddim": push the next DDIM sample (paper's code)
    rest_weight: float = 0.0                 # arrive-at-rest term of the goal cost (planned speed inside the goal)
    guidance_clip: float = 0.0               # clip each token's guidance gradient to this norm; 0: off
    goal_cost: str = "distance"              # per-frame cost: "distance" to the goal (paper) or "squared"
    mcg_samples: int = 8                     # Monte Carlo Guidance: sampled futures per guided step
    replan_every: int = 10                   # env steps executed from each plan (MPC)


@dataclass(frozen=True)
class VideoConfig:
    """Video data, used when ``data.name`` is ``moving_mnist`` or ``atari`` (see dforce.tasks.video).

    ``data.length`` is the clip length in frames; for moving_mnist ``data.sequences`` is
    the number of training videos rendered.
    """

    size: int = 32                           # frame side in pixels: 32 or 64
    mnist_dir: Optional[str] = None          # MNIST idx files; None: $DFORCE_MNIST_DIR, else ~/.cache/dforce/mnist
    game: str = "boxing"                     # atari: any ale-py ROM id
    frames: int = 200_000                    # atari: frames recorded with the sticky random policy
    sticky: float = 0.75                     # atari: probability of repeating the previous action
    frame_skip: int = 4                      # atari: emulator frames per recorded frame
    data_dir: Optional[str] = None           # cache directory; None: ~/.cache/dforce/<dataset>


@dataclass(frozen=True)
class ImitationConfig:
    """Cued Maze2D imitation with memory, used when ``data.name`` is ``imitation`` (see dforce.imitation).

    ``memory``: one sequence of ``data.length`` tokens per demo, the first observation (with
    the cue) conditioning the first token; ``memoryless``: one-token windows conditioned on
    the current observation (``data.length`` unused). ``data.sequences`` is not used.
    ``unknown_steps`` (memory only): every token's conditioning gains one flag per env step,
    and each training batch hides the observations of random steps (the flag set, the
    values replaced by the data mean) at a per-sequence rate drawn from
    ``U(0, unknown_max_rate)`` (0 for a quarter of the sequences), so the policy learns
    what an unknown step means (dforce.imitation.masking).
    """

    mode: str = "memory"                     # memory or memoryless
    frame_stack: int = 5                     # env steps per token (token = k x (next obs, action))
    demos: int = 1000                        # scripted expert demonstrations
    demo_seed: int = 0
    action_noise: float = 0.5                # Gaussian action noise of the expert (D4RL's)
    unknown_steps: bool = False              # per-step "observation unknown" flags (memory mode)
    unknown_max_rate: float = 0.8            # largest share of steps hidden in a training sequence


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    imitation: ImitationConfig = field(default_factory=ImitationConfig)


POSITIVE = (
    "model.width", "model.depth", "model.heads", "model.window", "diffusion.levels", "diffusion.snr_gamma",
    "sampling.steps", "sampling.chunk", "data.sequences", "train.steps", "train.batch_size", "train.lr",
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "forecast.prediction_length",
    "forecast.context_length", "forecast.test_windows", "forecast.val_windows",
    "forecast.samples", "forecast.val_samples",
    "planning.frame_stack", "planning.dataset_steps", "planning.mcg_samples", "planning.replan_every",
    "video.frames", "video.frame_skip", "imitation.frame_stack", "imitation.demos",
)
NON_NEGATIVE = ("sampling.slope", "sampling.stabilization", "data.noise", "train.weight_decay",
                "train.warmup", "train.grad_clip", "train.eval_every", "forecast.max_lag", "forecast.backtest_windows",
                "planning.guidance_scale", "planning.rest_weight", "planning.guidance_clip", "imitation.action_noise")
UNIT_INTERVAL = ("diffusion.fused_decay", "diffusion.clean_prob", "data.whole_paths", "train.ema_decay",
                 "imitation.unknown_max_rate")
CLOSED_UNIT_INTERVAL = ("sampling.eta",)     # eta=1 is DDPM-like ancestral noise, still a valid DDIM step

# Sizes refused before anything is allocated: a typo such as model.width=100000 or
# train.steps=2**64 should fail in a second with a message, not after minutes of
# swapping or with a C++ overflow. The bounds are far above every shipped config.
MAX_INT = 2**31 - 1                 # any integer setting (torch and numpy index with int64, loops count steps)
MAX_PARAMETERS = 1_000_000_000      # backbone parameters (4 GB of float32 weights, ~16 GB with Adam and EMA)
MAX_LEVELS = 100_000                # diffusion.levels: the schedule tables hold one entry per level
MAX_SLOPE = 1_000.0                 # sampling.slope: the scheduling matrix grows by (chunk - 1) * slope rows
MAX_CHUNK = 4_096                   # sampling.chunk: tokens denoised together (one matrix column each)
MAX_DATA_TOKENS = 2**27             # data.sequences * data.length generated in memory


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check(cfg: RunConfig) -> RunConfig:
    """Raise ValueError for any value outside its allowed set or range; return cfg."""
    _check_numbers(cfg)
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise ValueError(f"{key}={_get(cfg, key)!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
    for key in POSITIVE:
        value = _get(cfg, key)
        if value is not None and value <= 0:
            raise ValueError(f"{key}={value} must be > 0")
    for key in NON_NEGATIVE:
        value = _get(cfg, key)
        if value is not None and value < 0:
            raise ValueError(f"{key}={value} must be >= 0")
    for key in UNIT_INTERVAL:
        if not 0 <= _get(cfg, key) < 1:
            raise ValueError(f"{key}={_get(cfg, key)} must lie in [0, 1)")
    for key in CLOSED_UNIT_INTERVAL:
        if not 0 <= _get(cfg, key) <= 1:
            raise ValueError(f"{key}={_get(cfg, key)} must lie in [0, 1]")
    _check_sizes(cfg)
    if cfg.sampling.stabilization > cfg.diffusion.levels:
        raise ValueError(f"sampling.stabilization={cfg.sampling.stabilization} exceeds diffusion.levels={cfg.diffusion.levels}")
    if cfg.data.length < 2:
        raise ValueError(f"data.length={cfg.data.length} must be >= 2")
    if cfg.data.window is not None and not 2 <= cfg.data.window <= cfg.data.length:
        raise ValueError(f"data.window={cfg.data.window} must lie in [2, data.length={cfg.data.length}]")
    if cfg.diffusion.target == "eps" and cfg.diffusion.zero_terminal:
        # At the pure-noise level a = 0 and x_k = eps: an eps prediction says nothing about x0.
        raise ValueError("diffusion.target=eps cannot be used with diffusion.zero_terminal=true (at pure noise "
                         "x0 = (x_k - s eps) / a is 0/0); use diffusion.target=v or x0, or diffusion.zero_terminal=false")
    if cfg.diffusion.clean_prob and cfg.diffusion.forcing != "independent":
        raise ValueError(f"diffusion.clean_prob={cfg.diffusion.clean_prob} applies to diffusion.forcing=independent "
                         f"only, got {cfg.diffusion.forcing}")
    if cfg.diffusion.tf_position != "real" and cfg.diffusion.forcing != "teacher_forcing":
        raise ValueError(f"diffusion.tf_position={cfg.diffusion.tf_position} applies to diffusion.forcing="
                         f"teacher_forcing only, got {cfg.diffusion.forcing}")
    if cfg.data.window is not None and cfg.data.suffixes:
        raise ValueError("data.window and data.suffixes exclude each other; choose one way to crop")
    if cfg.data.whole_paths and not cfg.data.suffixes:
        raise ValueError(f"data.whole_paths={cfg.data.whole_paths} needs data.suffixes=true (it is the share of "
                         "suffixes cut at offset 0)")
    synthetic = ("oscillators", "cross", "linear_gaussian")
    for key in ("suffixes", "fresh"):
        if getattr(cfg.data, key) and cfg.data.name not in synthetic:
            raise ValueError(f"data.{key}=true applies to the synthetic datasets ({', '.join(synthetic)}), "
                             f"not data.name={cfg.data.name}")
    if cfg.data.fresh and cfg.data.name != "cross":
        raise ValueError(f"data.fresh=true is implemented for data.name=cross only, got {cfg.data.name}")
    if cfg.data.name == "timeseries" and not cfg.forecast.dataset:
        raise ValueError("data.name=timeseries needs forecast.dataset (a GluonTS name, archive, directory or CSV)")
    if cfg.data.name in ("moving_mnist", "atari") and cfg.model.backbone != "frames":
        raise ValueError(f"model.backbone={cfg.model.backbone!r} cannot take video frames; choose frames")
    if not 0 <= cfg.video.sticky < 1:
        raise ValueError(f"video.sticky={cfg.video.sticky} must lie in [0, 1)")
    if cfg.data.name in ("maze2d", "imitation") and cfg.model.backbone not in ("rnn", "transformer"):
        raise ValueError(f"model.backbone={cfg.model.backbone!r} cannot take {cfg.data.name} tokens; choose one of rnn, transformer")
    if cfg.imitation.unknown_steps and cfg.imitation.mode != "memory":
        raise ValueError("imitation.unknown_steps=true needs imitation.mode=memory (a memoryless policy keeps no past "
                         "steps to flag)")
    return cfg


def _bound(key: str) -> str:
    """The allowed range of a numeric key, as a message fragment."""
    if key in POSITIVE:
        return "> 0"
    if key in NON_NEGATIVE:
        return ">= 0"
    if key in UNIT_INTERVAL:
        return "in [0, 1)"
    if key in CLOSED_UNIT_INTERVAL:
        return "in [0, 1]"
    return "a finite number"


def _numbers(cfg: Any, prefix: str = ""):
    """(dotted key, value) of every int or float leaf of a config (bools excluded)."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, key + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, value


def _check_numbers(cfg: RunConfig) -> None:
    """NaN/inf in any float and integers past MAX_INT (NaN passes every `<` test, so it is caught first)."""
    for key, value in _numbers(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            bound = _bound(key)
            raise ValueError(f"{key}={value} must be finite" + ("" if bound == "a finite number" else f" and {bound}"))
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ValueError(f"{key}={value} is out of range; integers must lie within +-{MAX_INT}")


def parameter_estimate(model: ModelConfig, token_shape: tuple[int, ...] = (1,), cond_dim: int = 0) -> int:
    """Approximate backbone parameter count from width, depth and token shape (within ~2x; see tests).

    rnn: two MLPs and a GRU of 6 w^2 per layer; transformer: 12 w^2 per block; frames: a
    conv U-Net whose 3x3 convolutions at widths w and 2w sum to about 835 w^2 (depth unused).
    """
    w, d = model.width, model.depth
    feat = math.prod(token_shape) if model.backbone != "frames" else token_shape[0]
    match model.backbone:
        case "rnn":
            return 6 * w * w * d + 5 * w * w + (feat + cond_dim) * w + w * feat
        case "transformer":
            return 12 * w * w * d + 4 * w * w + (feat + cond_dim) * w + w * feat
        case _:
            return 835 * w * w + 16 * w * cond_dim + 18 * w * feat


def _check_sizes(cfg: RunConfig) -> None:
    """Refuse configurations too large to allocate, before anything is built (see MAX_*)."""
    shape = (3, cfg.video.size, cfg.video.size) if cfg.model.backbone == "frames" else (1,)
    params = parameter_estimate(cfg.model, shape)
    if params > MAX_PARAMETERS:
        raise ValueError(f"model.width={cfg.model.width}, model.depth={cfg.model.depth} make a {cfg.model.backbone} "
                         f"of about {params:.3g} parameters; the limit is {MAX_PARAMETERS:.0e}")
    if cfg.diffusion.levels > MAX_LEVELS:
        raise ValueError(f"diffusion.levels={cfg.diffusion.levels} exceeds the limit of {MAX_LEVELS}")
    if cfg.sampling.steps > cfg.diffusion.levels:
        raise ValueError(f"sampling.steps={cfg.sampling.steps} exceeds diffusion.levels={cfg.diffusion.levels} "
                         "(each sampling step must lower the noise by at least one level)")
    if cfg.sampling.slope > MAX_SLOPE:
        raise ValueError(f"sampling.slope={cfg.sampling.slope} exceeds the limit of {MAX_SLOPE:g}")
    if cfg.sampling.chunk > MAX_CHUNK:
        raise ValueError(f"sampling.chunk={cfg.sampling.chunk} exceeds the limit of {MAX_CHUNK}")
    tokens = cfg.data.sequences * cfg.data.length
    if tokens > MAX_DATA_TOKENS:
        raise ValueError(f"data.sequences={cfg.data.sequences} x data.length={cfg.data.length} = {tokens} tokens "
                         f"exceeds the limit of {MAX_DATA_TOKENS}")


def section(cls: type, values: Any, where: str) -> Any:
    """A config section (e.g. ``DataConfig``) from a stored mapping, naming ``where`` when it does not fit."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: {sorted(known)}")
    return cls(**values)


def from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A checked RunConfig from a (partial) nested dict and dotted ``key=value`` overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(data, dict):
        raise ValueError(f"a configuration must be a mapping of sections, got {type(data).__name__}")
    dotlist = OmegaConf.create()
    for item in overrides:
        dotlist = OmegaConf.merge(dotlist, _parse_override(item))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), data, dotlist)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ValueError(_one_line(err)) from None
    return check(cfg)  # type: ignore[arg-type]


def _parse_override(item: str) -> Any:
    """One ``key=value`` override as an OmegaConf node; the value is parsed as YAML (a number, list, ...)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if "=" not in item or item.startswith("="):
        raise ValueError(f"override {item!r} must look like key=value (e.g. model.width=256)")
    try:
        return OmegaConf.from_dotlist([item])
    except yaml.YAMLError as err:   # '@x', a tab, an undefined alias '*a' ...
        problem = getattr(err, "problem", None) or _one_line(err)
        raise ValueError(f"override {item!r}: the value is not valid YAML ({problem}); "
                         "quote it or pass a plain number, word or list") from None
    except OmegaConfBaseException as err:
        raise ValueError(f"override {item!r}: {_one_line(err)}") from None


def _one_line(err: Exception) -> str:
    """OmegaConf errors span several lines (message, full_key, object_type); keep what names the fault."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    return f"{key}: {lines[0]}" if key else lines[0]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a YAML preset (or the embedded defaults when ``path`` is None) with overrides."""
    data = {} if path is None else read_preset(Path(path))
    return from_dict(data, overrides)


def read_preset(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's sections; ``base: other.yaml`` (relative to the preset) starts from another
    preset, whose sections this one's keys override one by one (a ``*_cpu`` / ``*_gpu`` preset
    is a few lines over the experiment it resizes)."""
    import yaml

    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'base' presets form a cycle ({' -> '.join(p.name for p in (*seen, path))})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({_one_line(err)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be the file name of another preset, got {base!r}")
    merged = read_preset(path.parent / base, (*seen, path.resolve()))
    for section, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
