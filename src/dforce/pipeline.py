"""A Diffusion Forcing model in one object: backbone + normalizer + noise schedule.

``DiffusionForcingModel`` trains (``forward`` returns the loss), samples
(``rollout``), and saves to / loads from a directory holding ``config.json`` and
``model.safetensors`` (weights and normalizer statistics), loadable without the
training code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import atomic
from .config import MAX_PARAMETERS, DiffusionConfig, ModelConfig, SamplingConfig, from_dict, parameter_estimate
from .data.normalizer import Normalizer
from .devices import check as torch_device  # noqa: F401  (the name callers import from here)
from .devices import resolve as resolve_device
from .diffusion import NoiseSchedule, by_name, diffusion_forcing_loss, rollout, training_levels
from .diffusion.guidance import HistoryGuidance
from .models import CausalTransformer, FrameDenoiser, GRUDenoiser, Recompute

FORMAT = "dforce-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model directory file (config.json, model.safetensors) that is unreadable, corrupted or
    does not fit its config; the message names the file. A ValueError, so the CLI prints one line."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def token_and_element_masks(mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """A training mask as (token mask (B, T) or None, observed entries (B, T, *D) or None).

    A (B, T) mask marks real tokens; a (B, T, *D) mask marks observed entries (time series
    with missing values), and a token with no observed entry counts as padding.
    """
    if mask is None or mask.ndim == 2:
        return mask, None
    return mask.flatten(2).any(-1), mask


def build_backbone(cfg: ModelConfig, token_shape: tuple[int, ...], cond_dim: int, levels: int) -> nn.Module:
    """The backbone named by ``cfg.backbone`` for tokens of ``token_shape``."""
    vector = len(token_shape) == 1
    match cfg.backbone:
        case "rnn" if vector:
            return GRUDenoiser(token_shape[0], cond_dim, cfg.width, cfg.depth, levels)
        case "transformer" if vector:
            return CausalTransformer(token_shape[0], cond_dim, cfg.width, cfg.depth, cfg.heads, cfg.window, levels)
        case "frames" if len(token_shape) == 3 and token_shape[1] == token_shape[2]:
            return FrameDenoiser(token_shape[0], token_shape[1], cond_dim, cfg.width, levels)
    raise ValueError(f"model.backbone={cfg.backbone!r} does not take tokens of shape {token_shape} "
                     "(rnn/transformer: (D,), frames: (C, S, S))")


class DiffusionForcingModel(nn.Module):
    """Backbone, normalizer and schedule; tokens in data units go in and come out."""

    def __init__(
        self,
        token_shape: tuple[int, ...],
        cond_dim: int = 0,
        model: ModelConfig = ModelConfig(),
        diffusion: DiffusionConfig = DiffusionConfig(),
        sampling: SamplingConfig = SamplingConfig(),
        extra: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.token_shape, self.cond_dim = tuple(token_shape), cond_dim
        self.model_cfg, self.diffusion_cfg, self.sampling_cfg = model, diffusion, sampling
        self.extra = dict(extra or {})          # provenance (data, training) saved alongside
        self.backbone = build_backbone(model, self.token_shape, cond_dim, diffusion.levels)
        self.normalizer = Normalizer(self.token_shape)
        d = diffusion
        self.schedule = NoiseSchedule.make(d.levels, d.beta_schedule, d.zero_terminal)  # type: ignore[arg-type]

    # ---- training -------------------------------------------------------------------------
    def draw_levels_and_noise(self, x0: Tensor, mask: Tensor | None = None,
                              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training levels (B, T) and noise (B, T, *D) for a batch, on the generator's device
        (x0's device without one): drawn where they are used, so a GPU step copies nothing."""
        B, T = x0.shape[:2]
        device = x0.device if generator is None else generator.device
        mask, _ = token_and_element_masks(mask)
        mask = None if mask is None else mask.to(device)
        k = training_levels(B, T, self.schedule.levels, self.diffusion_cfg.forcing, mask, generator,  # type: ignore[arg-type]
                            device=device, clean_prob=self.diffusion_cfg.clean_prob,
                            tf_position=self.diffusion_cfg.tf_position)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        return k, noise

    def forward(self, x0: Tensor, k: Tensor, noise: Tensor, mask: Tensor | None = None,
                cond: Tensor | None = None) -> Tensor:
        """The Diffusion Forcing loss (scalar) of raw tokens x0 (B, T, *D) at levels k (B, T).

        mask: (B, T) real tokens, or (B, T, *D) observed entries (see :func:`token_and_element_masks`).
        """
        d = self.diffusion_cfg
        mask, observed = token_and_element_masks(mask)
        return diffusion_forcing_loss(
            self.backbone, self.schedule, self.normalizer.normalize(x0), k, noise,
            target=d.target, weighting=d.weighting, snr_gamma=d.snr_gamma,  # type: ignore[arg-type]
            fused_decay=d.fused_decay, mask=mask, cond=cond, observed=observed,
        )

    # ---- sampling -------------------------------------------------------------------------
    def scheduling_matrix(self, name: str | None = None, horizon: int | None = None, steps: int | None = None,
                          slope: float | None = None) -> Tensor:
        """A scheduling matrix (M, H) from the sampling defaults, any argument overridden."""
        s = self.sampling_cfg
        steps = s.steps if steps is None else steps   # `steps or s.steps` would turn an explicit 0 into the default
        if steps > self.schedule.levels:
            raise ValueError(f"steps={steps} exceeds the model's diffusion levels ({self.schedule.levels}): "
                             "each sampling step must lower the noise by at least one level")
        return by_name(s.scheduling if name is None else name, s.chunk if horizon is None else horizon, steps,
                       s.slope if slope is None else slope)

    @torch.no_grad()
    def rollout(
        self,
        length: int,
        context: Tensor | None = None,
        *,
        batch: int | None = None,
        levels: Tensor | None = None,
        cond: Tensor | None = None,
        stabilization: int | None = None,
        recompute: bool = False,
        recompute_window: int | None = None,
        history: HistoryGuidance | None = None,
        generator: torch.Generator | None = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> Tensor:
        """Generate ``length`` tokens (B, length, *D) in data units after an optional context (B, C, *D).

        ``levels`` defaults to the configured scheduling matrix per chunk; ``recompute``
        re-runs the network over the whole past at every step (the slow reference path),
        or over the last ``recompute_window`` tokens only (a sliding-window model).
        ``kwargs`` go to :func:`dforce.diffusion.denoise_chunk` (guidance, inpaint, eta, step).
        """
        s = self.sampling_cfg
        net = Recompute(self.backbone, recompute_window) if recompute else self.backbone
        ctx = None if context is None else self.normalizer.normalize(context.to(self.device))
        kwargs.setdefault("step", s.step)
        kwargs.setdefault("eta", s.eta)
        out = rollout(
            net, self.schedule, self.scheduling_matrix() if levels is None else levels, length,
            context=ctx, batch=batch, token_shape=self.token_shape, cond=cond,
            stabilization=s.stabilization if stabilization is None else stabilization,
            noise_context=s.noise_context, history=history, generator=generator, callback=callback,
            device=self.device, target=self.diffusion_cfg.target, **kwargs,
        )
        return self.normalizer.unnormalize(out)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- persistence ----------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "token_shape": list(self.token_shape), "cond_dim": self.cond_dim,
            "model": asdict(self.model_cfg), "diffusion": asdict(self.diffusion_cfg),
            "sampling": asdict(self.sampling_cfg), "extra": self.extra,
        }

    def write_files(self, directory: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into an existing directory (not atomic)."""
        from safetensors.torch import save_file

        state = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        (directory / "config.json").write_text(json.dumps(self.config_dict(), indent=2) + "\n")
        save_file(state, str(directory / "model.safetensors"), metadata={"format": FORMAT})

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` atomically; returns the directory."""
        with atomic.new_directory(directory) as tmp:
            self.write_files(tmp)
        return Path(directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to the Hugging Face Hub (``huggingface_hub`` and a token needed); see :func:`dforce.zoo.push_to_hub`."""
        from .zoo import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "DiffusionForcingModel":
        """Load a directory written by :meth:`save_pretrained`, a zoo name (``dforce models``,
        e.g. ``"maze2d-umaze"``) or ``hf://owner/repo[@revision]``, onto ``device`` (``"auto"``: CUDA if present)."""
        from .zoo import resolve

        directory = atomic.recover(resolve(directory))
        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        if not config_path.is_file() or not weights_path.is_file():
            raise ValueError(f"{str(directory)!r} is not a dforce model directory (needs config.json and model.safetensors)")
        meta = read_model_config(config_path)
        try:
            cfg = from_dict({key: meta[key] for key in ("model", "diffusion", "sampling")})
        except ValueError as err:
            raise ModelFileError(config_path, str(err)) from None
        shape, cond_dim = tuple(meta["token_shape"]), meta["cond_dim"]
        params = parameter_estimate(cfg.model, shape, cond_dim)
        if params > MAX_PARAMETERS:   # before allocating: a config.json can name any size
            raise ModelFileError(config_path, f"describes a model of about {params:.3g} parameters "
                                              f"(limit {MAX_PARAMETERS:.0e})")
        try:
            model = cls(shape, cond_dim, cfg.model, cfg.diffusion, cfg.sampling, meta.get("extra"))
        except ValueError as err:
            raise ModelFileError(config_path, str(err)) from None
        model.load_state_dict(read_weights(weights_path, model))
        return model.to(resolve_device(device)).eval()


def read_model_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, checked for the keys and types ``from_pretrained`` reads."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(path, f"cannot be read ({_one_line(err)})") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(path, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(path, f"the top level must be an object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ModelFileError(path, f"format {meta.get('format')!r} is not {FORMAT!r}")
    version = meta.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:   # type(): True is an int too
        raise ModelFileError(path, f"format_version {version!r} is not supported (this dforce reads "
                                   f"{', '.join(map(str, range(1, FORMAT_VERSION + 1)))})")
    for key in ("token_shape", "cond_dim", "model", "diffusion", "sampling"):
        if key not in meta:
            raise ModelFileError(path, f"missing key {key!r}")
    shape = meta["token_shape"]
    if not isinstance(shape, list) or not shape or not all(type(n) is int and n >= 1 for n in shape):
        raise ModelFileError(path, f"token_shape must be a non-empty list of positive integers, got {shape!r}")
    if type(meta["cond_dim"]) is not int or meta["cond_dim"] < 0:
        raise ModelFileError(path, f"cond_dim must be a non-negative integer, got {meta['cond_dim']!r}")
    for key in ("model", "diffusion", "sampling", "extra"):
        if key in meta and not isinstance(meta[key], dict) and not (key == "extra" and meta[key] is None):
            raise ModelFileError(path, f"{key!r} must be an object, got {type(meta[key]).__name__}")
    return meta


def read_weights(path: Path, model: nn.Module) -> dict[str, Tensor]:
    """``model.safetensors`` as a state dict that fits ``model`` exactly, every float finite."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as err:   # SafetensorError (truncated, zeroed, random bytes) derives from Exception only
        raise ModelFileError(path, f"is not a readable safetensors file ({_one_line(err)})") from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(path, f"does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelFileError(path, f"{name} has shape {tuple(tensor.shape)} but config.json needs "
                                       f"{tuple(expected[name].shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelFileError(path, f"{name} holds NaN or infinite values; the weights are unusable")
    return state


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
