"""What the sampler does with an exact denoiser: Gaussian AR(1) tokens, x_t = a x_{t-1} + sqrt(1-a^2) e_t.

    python scripts/oracle_numerics.py --record       # writes results/numerics/oracle.json

The exact denoiser (``dforce.synthetic.exact_denoiser``) is the Bayes-optimal model of Diffusion
Forcing training, so every departure from the true joint below is the sampler's, the schedule's
or the causal contract's. Defaults follow the shipped configuration: ``diffusion.levels`` 1000,
sigmoid betas, target v, DDIM with eta 0, pyramid/trapezoid slope 2. Four measurements:

* ``covariance``: Frobenius distance of the covariance of T = 8 sampled tokens from the true
  AR(1) covariance, per scheduling and step count, for the causal denoiser and for one that
  also sees the later tokens of its chunk (``causal=False``). With DDIM (eta 0) and a linear
  denoiser the output is a linear map of the initial noise, so the covariance is computed
  exactly (the map is recovered from the sampler's own output and its replayed draws);
* ``ddpm``: the same distance for ancestral DDPM steps, by Monte Carlo, beside the distance a
  sample of as many true AR(1) sequences has (the Monte Carlo floor);
* ``eps_zero_terminal``: with a zero-terminal-SNR schedule, how far samples through an eps
  prediction land from samples through v, same draws (the sampler now refuses eps there; the
  eps path is reproduced by converting the exact eps prediction with the library's own
  ``x0_from``, which is what the sampler did);
* ``stabilization``: two chunks, the first committed at level 0 / 20 / 100 / 300 as its mean
  a_k x0 (``noise_context`` false) or as a draw a_k x0 + s_k eps (true): the second chunk's
  marginal variance (truth 1), the correlation across the chunk boundary (truth a) and the
  whole rollout's covariance error, exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, get_args

import torch
from torch import Tensor

from dforce.diffusion import NoiseSchedule, by_name, rollout, x0_from
from dforce.diffusion.scheduling import Scheduling
from dforce.results import add_destination, destination, write_result
from dforce.synthetic.exact_denoiser import ExactDenoiser, ar1

SCHEDULINGS = get_args(Scheduling)


def linear_map(run: Callable[[torch.Generator], Tensor], draws: list[tuple[int, ...]], seed: int) -> Tensor:
    """M (d, n) with output = z M, for a run linear in its Gaussian draws (DDIM eta 0, linear model).

    run(generator) -> (B, n); ``draws`` are the shapes the run takes from the generator, in
    order; z (B, d) replays them. Raises if the run is not that map (a draw missed or added).
    """
    out = run(torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    z = torch.cat([torch.randn(shape, generator=g).reshape(shape[0], -1) for shape in draws], 1)
    M = torch.linalg.lstsq(z, out).solution
    residual = float((z @ M - out).abs().max())
    if residual > 1e-8:
        raise RuntimeError(f"the run is not linear in the replayed draws (residual {residual:.2e})")
    return M


def describe(cov: Tensor, truth: Tensor) -> dict[str, float]:
    """Frobenius error, mean marginal variance and mean lag-1 correlation of a token covariance."""
    sd = cov.diagonal().sqrt()
    corr = cov / (sd[:, None] * sd[None, :])
    return {"frobenius": round(float(torch.linalg.norm(cov - truth)), 4),
            "variance": round(float(cov.diagonal().mean()), 4),
            "lag1_correlation": round(float(corr.diagonal(1).mean()), 4)}


def covariance(process, schedule: NoiseSchedule, horizon: int, steps_list: list[int], slope: float,
               seed: int) -> dict[str, Any]:
    """Exact covariance errors per denoiser (causal or not), scheduling and step count (DDIM, eta 0)."""
    truth, B = process.joint_covariance(horizon), 4 * horizon
    out: dict[str, Any] = {}
    for causal in (True, False):
        model = ExactDenoiser(process, schedule, "v", causal=causal)
        out["causal" if causal else "sees_chunk"] = {
            name: {str(steps): describe(_cov(model, schedule, by_name(name, horizon, steps, slope), B, seed), truth)
                   for steps in steps_list}
            for name in SCHEDULINGS}
    return out


def _cov(model, schedule, levels: Tensor, batch: int, seed: int) -> Tensor:
    horizon = levels.shape[1]

    def run(g):
        return rollout(model, schedule, levels, horizon, batch=batch, token_shape=(1,), target=model.target,
                       generator=g)[..., 0]
    M = linear_map(run, [(batch, horizon, 1)], seed)
    return M.T @ M


def ddpm(process, schedule: NoiseSchedule, horizon: int, steps: int, slope: float, samples: int,
         seed: int) -> dict[str, Any]:
    """Monte Carlo covariance error with DDPM steps, and the error of as many true sequences."""
    truth = process.joint_covariance(horizon)
    model = ExactDenoiser(process, schedule, "v")
    errors = {}
    for name in SCHEDULINGS:
        x = rollout(model, schedule, by_name(name, horizon, steps, slope), horizon, batch=samples, token_shape=(1,),
                    target="v", step="ddpm", generator=torch.Generator().manual_seed(seed))[..., 0]
        errors[name] = round(float(torch.linalg.norm(torch.cov(x.T) - truth)), 4)
    real = process.sample(samples, horizon, seed=seed + 1).double()[..., 0]
    return {"steps": steps, "samples": samples, "frobenius": errors,
            "monte_carlo_floor": round(float(torch.linalg.norm(torch.cov(real.T) - truth)), 4)}


class ThroughEps:
    """An exact eps prediction turned into x0 by the library's eps conversion (run with target x0):
    what the sampler computed for target eps before it refused eps with a zero-terminal schedule."""

    def __init__(self, model: ExactDenoiser):
        self.model = model

    def init_state(self, batch):
        return self.model.init_state(batch)

    def append(self, x, k, cond, state):
        return self.model.append(x, k, cond, state)

    def forward_chunk(self, x, k, cond, state):
        a, s = self.model.schedule.coefficients(k, x)
        return x0_from(self.model.forward_chunk(x, k, cond, state), x, a, s, "eps")


def eps_zero_terminal(process, horizon: int, steps_list: list[int], slope: float, samples: int,
                      seed: int) -> dict[str, Any]:
    """Largest |x_eps - x_v| over ``samples`` draws (same seed), and both exact covariance errors."""
    schedule = NoiseSchedule.make(1000, "sigmoid", zero_terminal=True)
    truth = process.joint_covariance(horizon)
    v_model, eps_model = ExactDenoiser(process, schedule, "v"), ThroughEps(ExactDenoiser(process, schedule, "eps"))
    out: dict[str, Any] = {}
    for name in SCHEDULINGS:
        out[name] = {}
        for steps in steps_list:
            levels = by_name(name, horizon, steps, slope)

            def run(model, target, batch, g):
                return rollout(model, schedule, levels, horizon, batch=batch, token_shape=(1,), target=target,
                               generator=g)[..., 0]
            x_v = run(v_model, "v", samples, torch.Generator().manual_seed(seed))
            x_eps = run(eps_model, "x0", samples, torch.Generator().manual_seed(seed))
            covs = {}
            for key, (model, target) in {"v": (v_model, "v"), "eps": (eps_model, "x0")}.items():
                M = linear_map(lambda g: run(model, target, 4 * horizon, g), [(4 * horizon, horizon, 1)], seed)
                covs[key] = round(float(torch.linalg.norm(M.T @ M - truth)), 4)
            out[name][str(steps)] = {"max_abs_difference": round(float((x_eps - x_v).abs().max()), 4),
                                     "frobenius_v": covs["v"], "frobenius_eps": covs["eps"]}
    return out


def stabilization(process, schedule: NoiseSchedule, setups: dict[str, dict[str, Any]], levels_list: list[int],
                  seed: int) -> dict[str, Any]:
    """Per setup, noise_context and commit level: the second chunk after the first is committed."""
    model = ExactDenoiser(process, schedule, "v")
    out: dict[str, Any] = {}
    for setup, s in setups.items():
        H, levels = s["chunk"], by_name(s["scheduling"], s["chunk"], s["steps"], s.get("slope", 1.0))
        truth, B = process.joint_covariance(2 * H), 12 * H
        out[setup] = {**s, "length": 2 * H}
        for noise_context in (False, True):
            rows = {}
            for level in levels_list:
                def run(g):
                    return rollout(model, schedule, levels, 2 * H, batch=B, token_shape=(1,), target="v",
                                   stabilization=level, noise_context=noise_context, generator=g)[..., 0]
                draws = [(B, H, 1)] * (3 if noise_context else 2)   # chunk 1, [committed noise], chunk 2
                M = linear_map(run, draws, seed)
                cov = M.T @ M
                sd = cov.diagonal().sqrt()
                rows[str(level)] = {
                    "next_chunk_variance": round(float(cov.diagonal()[H:].mean()), 4),
                    "first_chunk_variance": round(float(cov.diagonal()[:H].mean()), 4),
                    "boundary_correlation": round(float(cov[H - 1, H] / (sd[H - 1] * sd[H])), 4),
                    "frobenius": round(float(torch.linalg.norm(cov - truth)), 4)}
            out[setup]["noise_context_" + str(noise_context).lower()] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coefficient", type=float, default=0.9, help="AR(1) coefficient a")
    parser.add_argument("--horizon", type=int, default=8, help="tokens T")
    parser.add_argument("--steps", default="10,30,100,300,1000", help="sampling steps, comma separated")
    parser.add_argument("--slope", type=float, default=2.0, help="pyramid/trapezoid slope (sampling.slope)")
    parser.add_argument("--ddpm-steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20000, help="Monte Carlo samples for the DDPM check")
    parser.add_argument("--seed", type=int, default=0)
    add_destination(parser, Path("outputs/numerics"), Path("results/numerics"))
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)   # the sampler draws in the default dtype: exact maps need float64
    tic = time.time()
    process, schedule = ar1(args.coefficient), NoiseSchedule.make(1000, "sigmoid")
    steps = [int(s) for s in args.steps.split(",")]
    setups = {
        "autoregressive_chunk4_steps100": {"scheduling": "autoregressive", "chunk": 4, "steps": 100},
        "default_sampling": {"scheduling": "pyramid", "chunk": 8, "steps": 20, "slope": 2.0},
    }
    metrics = {
        "setup": {"coefficient": args.coefficient, "horizon": args.horizon, "levels": 1000, "beta_schedule": "sigmoid",
                  "target": "v", "step": "ddim", "eta": 0.0, "slope": args.slope},
        "covariance": covariance(process, schedule, args.horizon, steps, args.slope, args.seed),
        "ddpm": ddpm(process, schedule, args.horizon, args.ddpm_steps, args.slope, args.samples, args.seed),
        "eps_zero_terminal": eps_zero_terminal(process, args.horizon, [20, 100], args.slope, 2000, args.seed),
        "stabilization": stabilization(process, schedule, setups, [0, 20, 100, 300], args.seed),
    }
    path = destination(args) / "oracle.json"
    print(write_result(path, metrics, wall_time_s=time.time() - tic, seeds={"sampling": args.seed},
                       command=["python", "scripts/oracle_numerics.py", *argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
