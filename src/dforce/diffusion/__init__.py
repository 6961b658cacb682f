"""The Diffusion Forcing core: pure tensor math, imports only torch."""

from .forcing import Forcing, diffusion_forcing_loss, noised_inputs, training_levels
from .guidance import CostGuidance, HistoryGuidance, Inpaint, MonteCarloGuidance
from .likelihood import Proposal, elbo, nats_per_dim, subsequence_elbo
from .noise import randn, randn_like
from .parameterization import Target, eps_from_x0, prediction_from, x0_eps_from, x0_from
from .sampler import commit, ddim_step, ddpm_step, denoise_chunk, rollout, sample
from .schedule import NoiseSchedule, zero_terminal_snr
from .scheduling import (
    autoregressive,
    by_name,
    drop_idle_rows,
    full_sequence,
    grid_to_levels,
    pyramid,
    trapezoid,
    validate,
)
from .weighting import Weighting, loss_weight

__all__ = [
    "CostGuidance", "Forcing", "HistoryGuidance", "Inpaint", "MonteCarloGuidance", "NoiseSchedule",
    "Proposal", "Target", "Weighting", "autoregressive", "by_name", "commit", "ddim_step", "ddpm_step",
    "denoise_chunk", "diffusion_forcing_loss", "drop_idle_rows", "elbo", "eps_from_x0", "full_sequence",
    "grid_to_levels", "loss_weight", "nats_per_dim", "noised_inputs", "prediction_from", "pyramid", "randn",
    "randn_like", "rollout",
    "sample", "subsequence_elbo", "training_levels", "trapezoid", "validate", "x0_eps_from", "x0_from", "zero_terminal_snr",
]
