"""Sampling: walk a scheduling matrix, one model call per row, any per-token schedule.

The loop is written against the streaming protocol of ``dforce.models.protocol``:
``init_state``, ``forward_chunk`` (predict new tokens after a committed past) and
``append`` (commit tokens). Long rollouts generate chunk after chunk; finished
chunks are committed as context labelled at the *stabilization* level (paper, 3.3),
so the model treats its own output as slightly noisy and errors do not compound.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Literal, get_args

import torch
from torch import Tensor

from .guidance import CostGuidance, HistoryGuidance, Inpaint, ddim_guidance_constant
from .noise import randn, randn_like
from .parameterization import Target, eps_from_x0, x0_eps_from
from .schedule import NoiseSchedule
from .scheduling import drop_idle_rows, grid_to_levels, validate

Step = Literal["ddim", "ddpm"]
Callback = Callable[[dict[str, Any]], None]


def ddim_step(x0: Tensor, eps: Tensor, ac_from: Tensor, ac_to: Tensor, eta: float = 0.0,
              noise: Tensor | None = None) -> Tensor:
    """DDIM update from level ``from`` to the less noisy ``to`` (Song et al. 2021, eq. 12).

    ac_from, ac_to: alphas_cumprod broadcastable to x0. eta=0 is deterministic, eta=1
    has the DDPM posterior variance.
    """
    var = (1 - ac_to) / (1 - ac_from) * (1 - ac_from / ac_to)
    sigma = eta * var.clamp(min=0).sqrt()
    x = ac_to.sqrt() * x0 + (1 - ac_to - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x = x + sigma * noise
    return x.to(x0.dtype)


def ddpm_step(x_k: Tensor, x0: Tensor, ac_from: Tensor, ac_to: Tensor, noise: Tensor) -> Tensor:
    """Ancestral step: a draw from the posterior q(x_to | x_from, x0) (Ho et al. 2020, eq. 7),
    for any jump from -> to. The ratio form stays finite when ac_from is 0 (zero terminal SNR)."""
    ratio = ac_from / ac_to                                            # alpha of the jump
    mean = (ac_to.sqrt() * (1 - ratio) * x0 + ratio.sqrt() * (1 - ac_to) * x_k) / (1 - ac_from)
    var = (1 - ac_to) / (1 - ac_from) * (1 - ratio)
    return (mean + var.clamp(min=0).sqrt() * noise).to(x0.dtype)


def require_streaming(model: Any) -> None:
    """Raise TypeError unless ``model`` offers init_state, forward_chunk and append."""
    missing = [m for m in ("init_state", "forward_chunk", "append") if not hasattr(model, m)]
    if missing:
        raise TypeError(f"model lacks {missing} of the streaming protocol; wrap it in dforce.models.Recompute")


def denoise_chunk(
    model: Any,
    schedule: NoiseSchedule,
    levels: Tensor,
    x: Tensor,
    state: Any,
    *,
    cond: Tensor | None = None,
    target: Target = "v",
    step: Step = "ddim",
    eta: float = 0.0,
    guidance: CostGuidance | None = None,
    inpaint: Inpaint | None = None,
    history: tuple[HistoryGuidance, Any] | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Denoise a chunk of pure-noise tokens after the committed past in ``state``.

    levels: (M, H) scheduling matrix in grid units (row 0 all ``steps``). x: (B, H, *D)
    pure noise. cond: (B, H, C) or None. history: (HistoryGuidance, no-history state).
    Returns the clean chunk (B, H, *D). ``callback`` gets a dict per row with ``row``,
    ``rows``, ``k`` (the levels after the row, (H,)), ``x`` and ``x0_hat``.
    """
    if step not in get_args(Step):
        raise ValueError(f"step must be one of {get_args(Step)}, got {step!r}")
    if guidance is not None and guidance.form == "ddim" and step != "ddim":
        raise ValueError(f"guidance form 'ddim' moves the DDIM sample; it cannot run with step={step!r}")
    if target == "eps" and float(schedule.alphas_cumprod[-1]) == 0:
        raise ValueError("target='eps' cannot be sampled with a zero-terminal-SNR schedule (at pure noise "
                         "x0 = (x_k - s eps) / a is 0/0); use target 'v' or 'x0'")
    levels = validate(levels)
    if levels.shape[1] != x.shape[1]:
        raise ValueError(f"scheduling matrix has {levels.shape[1]} columns but the chunk has {x.shape[1]} tokens")
    steps, K = int(levels[0, 0]), schedule.levels
    grid = grid_to_levels(drop_idle_rows(levels), K, steps).to(x.device)          # (M', H) noise levels
    B = x.shape[0]
    known = None if inpaint is None else inpaint.mask.reshape(*inpaint.mask.shape, *([1] * (x.ndim - 2)))

    # Monte Carlo guidance evaluates its samples as one batch when the model can tile its state.
    batched = guidance is not None and guidance.samples > 1 and hasattr(model, "repeat_state")
    # Leading tokens that are clean for good are committed to the state and dropped from later
    # rows: the model is causal, so the remaining tokens' predictions are unchanged, and a
    # row then costs the unfinished tokens only (half the work of an autoregressive schedule).
    prune = inpaint is None and history is None
    done, c_act = 0, cond
    tiled: dict[int, tuple[Any, Any]] = {1: (state, None if history is None else history[1])}

    def predict(x_in: Tensor, k: Tensor) -> Tensor:
        n = x_in.shape[0] // B   # > 1 for Monte Carlo samples stacked sample-major
        if n not in tiled:
            tiled[n] = tuple(None if s_ is None else model.repeat_state(s_, n) for s_ in tiled[1])
        past, past_free = tiled[n]
        c = _tile(c_act, n, B)
        pred = model.forward_chunk(x_in, k, c, past)
        if history is not None:
            free = model.forward_chunk(x_in, k, c, past_free)
            pred = free + history[0].scale * (pred - free)
        return pred

    for m in range(len(grid) - 1):
        k_from, k_to = grid[m].expand(B, -1), grid[m + 1].expand(B, -1)
        finished = _leading_clean(grid[m]) if prune else 0
        if finished > done:
            state = model.append(x[:, done:finished], k_from[:, done:finished], _cols(cond, done, finished), state)
            tiled, done, c_act = {1: (state, None)}, finished, _cols(cond, finished, None)
        x_in, k_in = x[:, done:], k_from[:, done:]
        if inpaint is not None:
            x_in, k_in = _inpaint_inputs(schedule, inpaint, known, x, k_from, generator)
        a, s = schedule.coefficients(k_in, x_in)

        def to_x0(xx: Tensor) -> Tensor:
            n = xx.shape[0] // B
            kk, aa, ss = _tile(k_in, n, B), _tile(a, n, B), _tile(s, n, B)
            return x0_eps_from(predict(xx, kk), xx, aa, ss, target)[0]

        grad = None   # the "ddim" form's cost gradient, applied to the next sample below
        if guidance is None:
            with torch.no_grad():
                x0_hat, eps_hat = x0_eps_from(predict(x_in, k_in), x_in, a, s, target)
        else:
            guide = guidance if done == 0 else replace(guidance, cost=_after(guidance.cost, x[:, :done]))
            if guide.form == "x0":
                x0_hat = guide.guided_x0(to_x0, x_in, k_in == K, generator, noise_var=s**2, batched=batched)
            else:
                x0_hat, grad = guide.x0_and_gradient(to_x0, x_in, k_in == K, generator, batched=batched)
            eps_hat = eps_from_x0(x0_hat, x_in, a, s)

        k_from, k_to = k_from[:, done:], k_to[:, done:]
        ac_from, ac_to = schedule.alpha_bar(k_from, x_in), schedule.alpha_bar(k_to, x_in)
        needs_noise = step == "ddpm" or eta > 0
        noise = randn_like(x, generator)[:, done:] if needs_noise else None   # whole-chunk draws: same stream either way
        if step == "ddim":
            x_next = ddim_step(x0_hat, eps_hat, ac_from, ac_to, eta, noise)
        else:
            x_next = ddpm_step(x_in, x0_hat, ac_from, ac_to, noise)
        if grad is not None:
            final = (k_to == 0).reshape(*k_to.shape, *([1] * (x.ndim - 2)))
            const = ddim_guidance_constant((1 - ac_from).clamp(min=0).sqrt(), (1 - ac_to).clamp(min=0).sqrt(), final)
            x_next = (x_next - guidance.scale * const * grad).to(x_next.dtype)
        moving = (k_to < k_from).reshape(*k_to.shape, *([1] * (x.ndim - 2)))
        if known is not None:
            moving = moving & ~known
        x = torch.cat([x[:, :done], torch.where(moving, x_next, x[:, done:])], 1).detach()
        if callback is not None:
            callback({"row": m + 1, "rows": len(grid) - 1, "k": grid[m + 1], "x": x,
                      "x0_hat": torch.cat([x[:, :done], x0_hat.detach()], 1)})
    if known is not None:
        x = torch.where(known, inpaint.values.to(x), x)
    return x


def _leading_clean(row: Tensor) -> int:
    """How many leading entries of a levels row (H,) are 0: tokens that stay clean from here on."""
    return int((row == 0).long().cumprod(0).sum())


def _cols(t: Tensor | None, lo: int, hi: int | None) -> Tensor | None:
    """Token columns ``lo:hi`` of a (B, T, ...) tensor, or None."""
    return None if t is None else t[:, lo:hi]


def _after(cost: Any, prefix: Tensor) -> Any:
    """The chunk's cost seen from its unfinished part: ``cost`` of [prefix, x0 of the rest]."""
    return lambda x0_rest: cost(torch.cat([prefix, x0_rest], 1))


def _tile(t: Tensor | None, n: int, batch: int) -> Tensor | None:
    """``t`` with a leading ``batch`` dim repeated n times (sample-major, like ``torch.cat([t] * n)``);
    anything else (None, a broadcast size-1 dim when batch > 1) is returned as is."""
    if t is None or n == 1 or t.shape[0] != batch:
        return t
    return t.repeat(n, *([1] * (t.ndim - 1)))


def _inpaint_inputs(schedule: NoiseSchedule, inpaint: Inpaint, known: Tensor, x: Tensor, k: Tensor,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Model inputs with known tokens clean at level 0 (relabel) or re-noised to the row's level."""
    values = inpaint.values.to(x)
    if inpaint.relabel:
        return torch.where(known, values, x), torch.where(inpaint.mask, 0, k)
    return torch.where(known, schedule.add_noise(values, k, randn_like(x, generator)), x), k


def commit(model: Any, schedule: NoiseSchedule, x0: Tensor, level: int | Tensor, cond: Tensor | None, state: Any,
           noise: bool = False, generator: torch.Generator | None = None) -> Any:
    """Append clean tokens x0 (B, T, *D) to ``state`` labelled at noise ``level``: one int, or
    per-token levels (B, T) (e.g. a corrupted observation committed as unreliable).

    The input is a_k x0 (the mean of x_k) or, with ``noise``, a full draw a_k x0 + s_k eps
    (level 0 stays exactly x0: a_0 = 1, s_0 = 0).
    """
    k = torch.as_tensor(level, dtype=torch.long, device=x0.device).expand(x0.shape[:2])
    a, s = schedule.coefficients(k, x0)
    x = a * x0 + (s * randn_like(x0, generator) if noise else 0)
    return model.append(x, k, cond, state)


def rollout(
    model: Any,
    schedule: NoiseSchedule,
    levels: Tensor,
    length: int,
    *,
    context: Tensor | None = None,
    batch: int | None = None,
    token_shape: tuple[int, ...] | None = None,
    cond: Tensor | None = None,
    stabilization: int = 0,
    noise_context: bool = False,
    history: HistoryGuidance | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    **chunk_kwargs: Any,
) -> Tensor:
    """Generate ``length`` tokens after an optional context, chunk by chunk.

    levels: (M, H) scheduling matrix for one chunk of H tokens (the last chunk uses its
    first columns). context: (B, C, *D) clean tokens, or give ``batch`` and
    ``token_shape``. cond: (B, C + length, Cc) per-token conditioning or None.
    stabilization: the noise level generated tokens are committed at (0 = clean,
    which is teacher-forcing-style feedback). noise_context: commit the draw a_k x0 + s_k eps
    rather than the mean a_k x0, which a model trained on noisy pasts never saw (the mean shrinks
    the next chunk's variance as the level rises). ``chunk_kwargs`` go to :func:`denoise_chunk`
    (target, step, eta, guidance, inpaint). Returns (B, length, *D).
    """
    require_streaming(model)
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if not 0 <= stabilization <= schedule.levels:
        raise ValueError(f"stabilization must lie in [0, {schedule.levels}], got {stabilization}")
    levels = validate(levels)
    if chunk_kwargs.get("inpaint") is not None and length > levels.shape[1]:
        raise ValueError(f"inpainting covers one chunk of {levels.shape[1]} tokens; got length {length}")
    if context is not None:
        batch, token_shape, device = context.shape[0], tuple(context.shape[2:]), context.device
    if batch is None or token_shape is None:
        raise ValueError("give a context, or both batch and token_shape")
    n_ctx = 0 if context is None else context.shape[1]
    if cond is not None and cond.shape[1] != n_ctx + length:
        raise ValueError(f"cond must cover context + length = {n_ctx + length} tokens, got {cond.shape[1]}")

    def cond_at(lo: int, hi: int) -> Tensor | None:
        return None if cond is None else cond[:, lo:hi]

    state = model.init_state(batch)
    free = model.init_state(batch) if history is not None else None
    if context is not None and n_ctx:
        state = commit(model, schedule, context, 0, cond_at(0, n_ctx), state)
        free = _commit_history(model, schedule, history, context, cond_at(0, n_ctx), free, generator)

    H, out = levels.shape[1], []
    for start in range(0, length, H):
        h = min(H, length - start)
        lo = n_ctx + start
        x = randn((batch, h, *token_shape), generator, device)
        chunk_cb = None if callback is None else (lambda info, c=len(out): callback({**info, "chunk": c}))
        x0 = denoise_chunk(model, schedule, levels[:, :h], x, state, cond=cond_at(lo, lo + h),
                           history=None if history is None else (history, free), generator=generator,
                           callback=chunk_cb, **chunk_kwargs)
        out.append(x0)
        if start + h < length:  # the past only matters if more is coming
            state = commit(model, schedule, x0, stabilization, cond_at(lo, lo + h), state, noise_context, generator)
            free = _commit_history(model, schedule, history, x0, cond_at(lo, lo + h), free, generator)
    return torch.cat(out, 1)


def _commit_history(model: Any, schedule: NoiseSchedule, history: HistoryGuidance | None, x0: Tensor,
                    cond: Tensor | None, free: Any, generator: torch.Generator | None) -> Any:
    """The no-history branch: dropped history stays empty; fractional history is noised to its level."""
    if history is None or history.level is None:
        return free
    return commit(model, schedule, x0, history.level, cond, free, noise=True, generator=generator)


def sample(model: Any, schedule: NoiseSchedule, levels: Tensor, **kwargs: Any) -> Tensor:
    """One chunk of ``levels.shape[1]`` tokens: :func:`rollout` with ``length`` = the horizon."""
    return rollout(model, schedule, levels, kwargs.pop("length", levels.shape[1]), **kwargs)
