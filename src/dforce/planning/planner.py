"""Maze2D planning with Diffusion Forcing: guided plans of observations + actions, executed by MPC.

One model, trained on frame-stacked windows of the D4RL random walks
(:mod:`dforce.data.maze2d_tokens`), serves every method of the paper's Table 1:

========================  ===================  ====================  =======================
method                    scheduling           guidance              executes
========================  ===================  ====================  =======================
``df``                    pyramid              Monte Carlo (MCG)     its diffused actions
``df_no_mcg``             pyramid              one sample            its diffused actions
``df_ar``                 autoregressive       Monte Carlo (MCG)     its diffused actions
``diffuser_actions``      full sequence        one sample            its diffused actions
``diffuser_pd``           full sequence        one sample            PD tracking of its states
========================  ===================  ====================  =======================

Every plan covers the *remaining* episode (flexible horizon): at env step ``t`` of an
episode of ``T`` steps it has ``min(H, ceil((T - t) / k))`` tokens, where ``H`` is the
training window; tokens past the end of the episode are never drawn (the model was
trained with such tokens as masked, pure-noise padding, and it is causal). Plans start
from a fresh state with the current observation as the first token's conditioning
(Markovian, as the paper's ``context_frames: 0``). The first ``replan_every`` env
steps of each plan are executed, then the planner replans (MPC).

Goal guidance (paper's planner, after Diffuser's goal reaching): the cost of a plan is
the sum over its planned frames (inside the episode) of the distance between the
planned position and the goal, in maze units; :class:`~dforce.diffusion.CostGuidance`
moves the x0 estimate down its gradient, and :class:`~dforce.diffusion.MonteCarloGuidance`
averages that gradient over ``mcg_samples`` redraws of the tokens still at pure noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import devices
from ..data.maze2d_tokens import COND_DIM, FRAME_DIM, OBS_DIM, observation_stats, start_condition, unstack_frames
from ..diffusion import CostGuidance, MonteCarloGuidance, by_name
from ..diffusion.guidance import check_form
from ..envs.maze2d import EPISODE_LENGTH, GOAL_RADIUS
from ..pipeline import DiffusionForcingModel

@dataclass(frozen=True)
class Method:
    """How a method plans and acts: scheduling matrix family, Monte Carlo guidance, what is executed."""

    scheduling: str
    mcg: bool
    execute: str        # "actions" (diffused actions) or "pd" (PD tracking of planned states)


METHODS: dict[str, Method] = {
    "df": Method("pyramid", True, "actions"),
    "df_no_mcg": Method("pyramid", False, "actions"),
    "df_ar": Method("autoregressive", True, "actions"),
    "diffuser_actions": Method("full_sequence", False, "actions"),
    "diffuser_pd": Method("full_sequence", False, "pd"),
}

PD_GAINS = (1.0, 1.0)   # Diffuser's maze2d tracker: a = (p* - p) + (v* - v)


# ---- pure pieces ---------------------------------------------------------------------------------

GOAL_COSTS = ("distance", "squared")
# Width of the rest term's gate: half the goal radius, so a plan only slows where it is already
# inside the goal, not on a corridor that passes within a cell of it (a wider gate slowed
# U-Maze plans on the way and cut the reach rate, docs/planning.md).
REST_GATE = GOAL_RADIUS / 2


def goal_cost(x0_hat: Tensor, normalizer: Any, goal: Tensor, frame_stack: int, valid_frames: int | None = None,
              kind: str = "distance", rest: float = 0.0) -> Tensor:
    """Sum over planned frames of ``||position - goal||`` (``kind="distance"``, the paper's) or of its
    square (``"squared"``), in maze units, plus ``rest`` times the planned speed near the goal; (B,).

    x0_hat: (B, H, 6 k) normalized tokens; goal: (B, 2); frames at index >= ``valid_frames``
    (past the episode's end) do not count. Differentiable; the distance is smoothed at 0.
    The distance pulls every frame with the same force however close it is, so a plan
    already at the goal keeps being pushed across it; the square's pull fades at the goal.

    The rest term, ``rest * ||velocity|| * exp(-d^2 / (2 r^2))`` per frame with ``r`` half the
    goal radius (:data:`REST_GATE`; the gate held constant in the gradient), asks the plan to *arrive at rest*: the offline walks never stop, so
    without it nothing in the model says "stay", and a plan that sweeps through the goal
    at speed costs as little as one that halts there. It acts on planned states only; the
    model's own actions are what must bring the ball to rest.
    """
    if kind not in GOAL_COSTS:
        raise ValueError(f"goal cost must be one of {GOAL_COSTS}, got {kind!r}")
    obs, _ = unstack_frames(normalizer.unnormalize(x0_hat), frame_stack)            # (B, N, 4)
    sq = ((obs[..., :2] - goal[:, None, :].to(obs)) ** 2).sum(-1)                    # (B, N) squared distance
    cost = sq.add(1e-8).sqrt() if kind == "distance" else sq
    if rest:
        speed = (obs[..., 2:4] ** 2).sum(-1).add(1e-8).sqrt()                          # (B, N)
        # The gate is detached: differentiated, it would push fast frames *away* from the goal.
        cost = cost + rest * speed * torch.exp(-sq.detach() / (2 * REST_GATE ** 2))
    if valid_frames is not None and valid_frames < cost.shape[1]:
        cost = cost[:, :valid_frames]
    return cost.sum(1)


def pd_action(obs: np.ndarray, target: np.ndarray, kp: float = PD_GAINS[0], kd: float = PD_GAINS[1]) -> np.ndarray:
    """PD tracking action ``kp (p* - p) + kd (v* - v)`` clipped to [-1, 1]; obs, target: (..., 4) -> (..., 2)."""
    obs, target = np.asarray(obs, dtype=np.float64), np.asarray(target, dtype=np.float64)
    a = kp * (target[..., :2] - obs[..., :2]) + kd * (target[..., 2:4] - obs[..., 2:4])
    return np.clip(a, -1.0, 1.0)


def plan_tokens(remaining: int, horizon: int, frame_stack: int) -> int:
    """Tokens of a plan that covers ``remaining`` env steps, at most ``horizon`` (flexible horizon)."""
    if remaining < 1:
        raise ValueError(f"remaining steps must be >= 1, got {remaining}")
    return min(horizon, math.ceil(remaining / frame_stack))


@dataclass
class Plan:
    """A batch of plans in env units: observations (B, N, 4), each after actions (B, N, 2); N = tokens x k.

    ``observations[:, j]`` is the state planned after executing ``actions[:, j]`` from the
    plan's start. ``start`` (B, 4) is the observation planned from, ``t`` the env step.
    """

    observations: np.ndarray
    actions: np.ndarray
    start: np.ndarray
    t: int = 0
    rows: list[np.ndarray] = field(default_factory=list)   # optional x0 positions per denoising row (B, N, 2)

    @property
    def length(self) -> int:
        return self.actions.shape[1]


# ---- the planner ---------------------------------------------------------------------------------

class Planner:
    """Guided Diffusion Forcing planner with receding-horizon control, batched over B environments.

    ``act(obs, goal)`` takes one observation (4,) or a batch (B, 4) and goals (2,) / (B, 2)
    and returns actions in [-1, 1] of shape (2,) / (B, 2); it replans every ``replan_every``
    calls. ``plan(obs, goal)`` returns the whole :class:`Plan`. ``reset()`` starts a new
    episode (the remaining horizon counts from there; ``episode_length`` defaults to the
    maze's D4RL length). Usable in any Gymnasium loop::

        planner = Planner.from_pretrained("runs/maze2d_medium/model", "df")
        obs, info = env.reset(seed=0)
        planner.reset()
        for _ in range(600):
            obs, reward, terminated, truncated, info = env.step(planner.act(obs, info["goal"]))

    Defaults (guidance scale, MCG samples, replanning interval, horizon, sampling steps,
    slope) come from the checkpoint's training config; every one can be overridden.
    """

    def __init__(self, model: DiffusionForcingModel, method: str = "df", *, episode_length: int | None = None,
                 guidance_scale: float | None = None, guidance_weighting: str | None = None,
                 guidance_form: str | None = None, goal_cost: str | None = None, rest_weight: float | None = None,
                 guidance_clip: float | None = None,
                 mcg_samples: int | None = None,
                 replan_every: int | None = None, horizon: int | None = None, steps: int | None = None,
                 slope: float | None = None, pd_gains: tuple[float, float] = PD_GAINS, seed: int = 0,
                 keep_history: bool = False, keep_rows: bool = False):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        info = model.extra.get("planning")
        if info is None or model.cond_dim != COND_DIM or model.token_shape[0] % FRAME_DIM:
            raise ValueError(f"model (tokens {model.token_shape}, cond {model.cond_dim}) was not trained as a Maze2D "
                             "planner (dforce train configs/maze2d_*.yaml)")
        self.model, self.method, self.spec = model, method, METHODS[method]
        self.frame_stack = int(info["frame_stack"])
        trained = model.extra.get("data", {}).get("length") or model.sampling_cfg.chunk
        self.horizon = int(trained if horizon is None else horizon)   # not `or`: 0 must fail below
        self.steps = int(model.sampling_cfg.steps if steps is None else steps)
        self.slope = float(model.sampling_cfg.slope if slope is None else slope)
        self.guidance_scale = float(info.get("guidance_scale", 0.0) if guidance_scale is None else guidance_scale)
        self.guidance_weighting = guidance_weighting or info.get("guidance_weighting", "constant")
        self.guidance_form = guidance_form or info.get("guidance_form", "x0")
        self.rest_weight = float(info.get("rest_weight", 0.0) if rest_weight is None else rest_weight)
        clip = info.get("guidance_clip") if guidance_clip is None else guidance_clip
        self.guidance_clip = None if clip is None or clip == 0 else float(clip)   # 0: no clipping
        self.goal_cost = goal_cost or info.get("goal_cost", "distance")
        if self.goal_cost not in GOAL_COSTS:
            raise ValueError(f"goal_cost must be one of {GOAL_COSTS}, got {self.goal_cost!r}")
        check_form(self.guidance_form, self.guidance_weighting, ("guidance_form", "guidance_weighting"))
        self.mcg_samples = int(info.get("mcg_samples", 8) if mcg_samples is None else mcg_samples)
        self.replan_every = int(info.get("replan_every", self.frame_stack) if replan_every is None else replan_every)
        self.episode_length = int(EPISODE_LENGTH[info["maze"]] if episode_length is None else episode_length)
        self.pd_gains = tuple(float(g) for g in pd_gains)
        for name, value, low in (("horizon", self.horizon, 1), ("steps", self.steps, 1), ("mcg_samples", self.mcg_samples, 1),
                                 ("replan_every", self.replan_every, 1), ("episode_length", self.episode_length, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.guidance_clip is not None and self.guidance_clip < 0:
            raise ValueError(f"guidance_clip must be >= 0 (0: off), got {self.guidance_clip}")
        if self.guidance_scale < 0 or self.slope < 0 or self.rest_weight < 0:
            raise ValueError(f"guidance_scale, slope and rest_weight must be >= 0, got {self.guidance_scale}, "
                             f"{self.slope}, {self.rest_weight}")
        if self.replan_every > self.horizon * self.frame_stack:
            raise ValueError(f"replan_every={self.replan_every} exceeds the plan length of "
                             f"{self.horizon} tokens x {self.frame_stack} steps")
        self.generator = devices.generator(seed, model.device)
        self.keep_history, self.keep_rows = keep_history, keep_rows
        self.history: list[Plan] = []
        self.reset()

    @classmethod
    def from_pretrained(cls, directory: str | Path, method: str = "df", device: str | torch.device = "cpu",
                        **kwargs: Any) -> "Planner":
        """A planner around the model saved in ``directory`` (``kwargs`` as for the constructor)."""
        return cls(DiffusionForcingModel.from_pretrained(directory, device), method, **kwargs)

    # -- episode bookkeeping --------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new episode: forget the current plan and the history, count steps from 0."""
        self.t, self.since, self.current = 0, 0, None
        self.history = []

    def describe(self) -> dict[str, Any]:
        """The planning protocol as a JSON-ready dict."""
        return {"method": self.method, **asdict(self.spec), "horizon_tokens": self.horizon,
                "frame_stack": self.frame_stack, "sampling_steps": self.steps, "slope": self.slope,
                "guidance_scale": self.guidance_scale, "guidance_weighting": self.guidance_weighting,
                "guidance_form": self.guidance_form, "rest_weight": self.rest_weight,
                "guidance_clip": self.guidance_clip,
                "mcg_samples": self.mcg_samples if self.spec.mcg else 1, "replan_every": self.replan_every,
                "episode_length": self.episode_length,
                "pd_gains": list(self.pd_gains) if self.spec.execute == "pd" else None,
                "guidance_cost": (f"sum over planned frames of ||position - goal||{'^2' if self.goal_cost == 'squared' else ''}"
                                  + (f" + {self.rest_weight:g} ||velocity|| exp(-d^2 / 2 r^2)" if self.rest_weight else "")),
                "context": "none (fresh state; current observation conditions the first token)"}

    # -- planning -----------------------------------------------------------------------------------
    def levels(self, tokens: int) -> Tensor:
        """The method's scheduling matrix for a plan of ``tokens`` tokens, (M, tokens)."""
        return by_name(self.spec.scheduling, tokens, self.steps, self.slope)

    def guidance(self, goal: Tensor, valid_frames: int) -> CostGuidance | None:
        if self.guidance_scale == 0:
            return None
        cost = (lambda x0: goal_cost(x0, self.model.normalizer, goal, self.frame_stack, valid_frames,  # noqa: E731
                                     self.goal_cost, self.rest_weight))
        if self.spec.mcg:
            return MonteCarloGuidance(cost, self.guidance_scale, self.mcg_samples, self.guidance_weighting,
                                      self.guidance_form, self.guidance_clip)
        return CostGuidance(cost, self.guidance_scale, 1, self.guidance_weighting, self.guidance_form,
                            self.guidance_clip)

    def plan(self, obs: Any, goal: Any, remaining: int | None = None) -> Plan:
        """Plan from observations (B, 4) (or (4,)) towards goals (B, 2) (or (2,)) for ``remaining`` env steps.

        ``remaining`` defaults to what is left of the episode (at least ``replan_every``).
        Returns a :class:`Plan` with batch dim B (1 for a single observation).
        """
        obs_t, goal_t = _batch(obs, OBS_DIM, "obs"), _batch(goal, 2, "goal")
        if goal_t.shape[0] == 1 and obs_t.shape[0] > 1:
            goal_t = goal_t.expand(obs_t.shape[0], -1)
        if goal_t.shape[0] != obs_t.shape[0]:
            raise ValueError(f"obs batch {obs_t.shape[0]} and goal batch {goal_t.shape[0]} differ")
        if remaining is None:
            remaining = max(self.episode_length - self.t, self.replan_every)
        tokens = plan_tokens(remaining, self.horizon, self.frame_stack)
        model, dev = self.model, self.model.device
        mean, std = observation_stats(model.normalizer)
        cond = start_condition(((obs_t.to(dev) - mean) / std).float(), tokens)
        rows: list[np.ndarray] = []
        callback = None
        if self.keep_rows:
            def callback(info: dict) -> None:
                pos = unstack_frames(model.normalizer.unnormalize(info["x0_hat"]), self.frame_stack)[0][..., :2]
                rows.append(pos.detach().cpu().numpy())
        x = model.rollout(tokens, batch=obs_t.shape[0], levels=self.levels(tokens), cond=cond,
                          guidance=self.guidance(goal_t.to(dev), min(remaining, tokens * self.frame_stack)),
                          generator=self.generator, callback=callback)
        o, a = unstack_frames(x, self.frame_stack)
        return Plan(o.cpu().numpy().astype(np.float64), a.cpu().numpy().astype(np.float64),
                    obs_t.numpy().astype(np.float64), self.t, rows)

    # -- acting ---------------------------------------------------------------------------------
    def act(self, obs: Any, goal: Any) -> np.ndarray:
        """The action(s) in [-1, 1] for observation(s) ``obs``; replans every ``replan_every`` calls (MPC)."""
        single = np.ndim(obs) == 1
        batch = 1 if single else np.shape(obs)[0]
        if (self.current is None or self.since >= self.replan_every or self.since >= self.current.length
                or self.current.actions.shape[0] != batch):
            self.current, self.since = self.plan(obs, goal), 0
            if self.keep_history:
                self.history.append(self.current)
        j = self.since
        if self.spec.execute == "pd":
            action = pd_action(np.reshape(obs, (batch, OBS_DIM)), self.current.observations[:, j], *self.pd_gains)
        else:
            action = np.clip(self.current.actions[:, j], -1.0, 1.0)
        self.since += 1
        self.t += 1
        return action[0] if single else action


def _batch(value: Any, dim: int, name: str) -> Tensor:
    """(B, dim) float32 tensor from (dim,) or (B, dim) array-likes."""
    t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (B, {dim}), got {tuple(np.shape(value))}")
    return t
