import pytest
import torch

from dforce.diffusion import (
    CostGuidance, HistoryGuidance, Inpaint, MonteCarloGuidance, NoiseSchedule, autoregressive,
    full_sequence, pyramid, rollout, sample,
)
from dforce.models import GRUDenoiser, Recompute
from helpers import NoRepeat


class Oracle(torch.nn.Module):
    """Knows the data: predicts the true x0 (or eps) of every token at its absolute position."""

    def __init__(self, data, schedule=None, target="x0"):
        super().__init__()
        self.data, self.schedule, self.target = data, schedule, target

    def init_state(self, batch):
        return 0

    def append(self, x, k, cond, state):
        return state + x.shape[1]

    def forward_chunk(self, x, k, cond, state):
        x0 = self.data[:, state:state + x.shape[1]]
        if self.target == "x0":
            return x0
        a, s = self.schedule.coefficients(k, x)
        return (x - a * x0) / s

    def forward(self, x, k, cond=None):
        return self.forward_chunk(x, k, cond, 0)


@pytest.mark.parametrize("target", ["x0", "eps"])
@pytest.mark.parametrize("levels", [full_sequence(5, 4), autoregressive(5, 3), pyramid(5, 6, 2)])
def test_oracle_denoiser_recovers_data_exactly(levels, target):
    torch.manual_seed(0)
    schedule = NoiseSchedule.make(100)
    data = torch.randn(2, 17, 3, dtype=torch.float64)
    model = Oracle(data, schedule, target)
    out = rollout(model, schedule, levels, 13, context=data[:, :4], target=target, stabilization=10,
                  step="ddim", eta=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, data[:, 4:], rtol=1e-6, atol=1e-6)


def test_ddpm_with_oracle_recovers_data():
    schedule = NoiseSchedule.make(50)
    data = torch.randn(3, 6, 2, dtype=torch.float64)
    out = sample(Oracle(data), schedule, pyramid(6, 10, 1), batch=3, token_shape=(2,), target="x0",
                 step="ddpm", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.double(), data)


def _gru(seed=0, cond_dim=0):
    torch.manual_seed(seed)
    return GRUDenoiser(token_dim=3, cond_dim=cond_dim, width=16, depth=1, levels=100).double().eval()


def test_same_seed_same_samples_and_different_seed_differs():
    net, schedule = _gru(), NoiseSchedule.make(100)
    ctx = torch.randn(2, 3, 3, dtype=torch.float64)

    def run(seed):
        return rollout(net, schedule, pyramid(4, 5, 1), 9, context=ctx, stabilization=5, noise_context=True,
                       step="ddpm", generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


def test_streaming_rollout_equals_recompute_rollout():
    net, schedule = _gru(cond_dim=2), NoiseSchedule.make(100)
    ctx = torch.randn(2, 3, 3, dtype=torch.float64)
    cond = torch.randn(2, 3 + 10, 2, dtype=torch.float64)
    kw = dict(context=ctx, cond=cond, stabilization=7, step="ddim", eta=1.0)
    a = rollout(net, schedule, pyramid(4, 5, 2), 10, generator=torch.Generator().manual_seed(3), **kw)
    b = rollout(Recompute(net), schedule, pyramid(4, 5, 2), 10, generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(a, b)


def test_context_and_inpainted_tokens_are_never_modified():
    net, schedule = _gru(), NoiseSchedule.make(100)
    ctx = torch.randn(2, 3, 3, dtype=torch.float64)
    ctx_copy = ctx.clone()
    known = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[True, False, False, False, True], [False, False, True, False, False]])
    for relabel in (True, False):
        out = sample(net, schedule, pyramid(5, 4, 1), context=ctx, inpaint=Inpaint(known, mask, relabel),
                     generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[mask], known[mask])
        assert not torch.allclose(out[~mask], known[~mask])
    assert torch.equal(ctx, ctx_copy)


def test_callback_sees_every_row():
    net, schedule = _gru(), NoiseSchedule.make(100)
    seen = []
    rollout(net, schedule, pyramid(3, 4, 1), 5, batch=1, token_shape=(3,), callback=seen.append)
    rows = [(info["chunk"], info["row"]) for info in seen]
    assert rows == [(0, r) for r in range(1, 7)] + [(1, r) for r in range(1, 6)]
    assert seen[-1]["k"].tolist() == [0, 0]


def _goal_cost(x0_hat):
    """Squared distance of the last token's first feature to 3."""
    return (x0_hat[:, -1, 0] - 3.0) ** 2


@pytest.mark.parametrize("guidance", [CostGuidance(_goal_cost, 2.0), MonteCarloGuidance(_goal_cost, 2.0, 4)])
def test_guidance_lowers_cost_against_unguided_run_from_same_seed(guidance):
    net, schedule = _gru(), NoiseSchedule.make(100)
    ctx = torch.randn(4, 2, 3, dtype=torch.float64)

    def run(g):
        return sample(net, schedule, pyramid(6, 8, 1), context=ctx, guidance=g,
                      generator=torch.Generator().manual_seed(0))
    plain, guided = run(None), run(guidance)
    assert _goal_cost(guided).mean() < 0.5 * _goal_cost(plain).mean()


def test_monte_carlo_guidance_redraws_only_fresh_tokens():
    x = torch.randn(2, 4, 3)
    fresh = torch.tensor([[False, False, True, True]] * 2)
    seen = []

    def denoise(xx):
        seen.append(xx.detach().clone())
        return xx * 1.0

    MonteCarloGuidance(lambda x0: x0.sum((1, 2)), 0.1, samples=3).guided_x0(denoise, x, fresh)
    assert len(seen) == 3
    for other in seen[1:]:
        assert torch.equal(other[:, :2], x[:, :2]) and not torch.allclose(other[:, 2:], x[:, 2:])


@pytest.mark.parametrize("wrap", [lambda n: n, Recompute])
@pytest.mark.parametrize("weighting", ["constant", "variance"])
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_monte_carlo_guidance_equals_sequential(wrap, weighting, batch):
    net, schedule = _gru(cond_dim=2), NoiseSchedule.make(100)
    ctx, cond = torch.randn(batch, 2, 3, dtype=torch.float64), torch.randn(batch, 8, 2, dtype=torch.float64)
    guidance = MonteCarloGuidance(_goal_cost, 2.0, 4, weighting=weighting)

    def run(model):
        return sample(model, schedule, pyramid(6, 6, 1), context=ctx, cond=cond, guidance=guidance,
                      generator=torch.Generator().manual_seed(0))
    batched, sequential = run(wrap(net)), run(NoRepeat(wrap(net)))
    assert torch.allclose(batched, sequential, atol=1e-10)
    assert not torch.allclose(batched, run_plain(net, schedule, ctx, cond), atol=1e-3)


def run_plain(net, schedule, ctx, cond):
    return sample(net, schedule, pyramid(6, 6, 1), context=ctx, cond=cond, generator=torch.Generator().manual_seed(0))


def test_variance_weighted_guidance_leaves_clean_tokens_alone():
    x = torch.randn(2, 4, 3)
    fresh = torch.zeros(2, 4, dtype=torch.bool)
    noise_var = torch.tensor([0.0, 0.0, 0.5, 1.0]).reshape(1, 4, 1)
    guided = CostGuidance(lambda x0: x0.sum((1, 2)), 0.1, weighting="variance").guided_x0(
        lambda xx: xx * 1.0, x, fresh, noise_var=noise_var)
    assert torch.equal(guided[:, :2], x[:, :2])                      # sigma^2 = 0: no push
    assert torch.allclose(guided[:, 2:], x[:, 2:] - 0.1 * noise_var[:, 2:])   # d(sum)/dx = 1
    with pytest.raises(ValueError, match="noise_var"):
        CostGuidance(lambda x0: x0.sum((1, 2)), 0.1, weighting="variance").guided_x0(lambda xx: xx, x, fresh)
    with pytest.raises(ValueError, match="weighting"):
        CostGuidance(lambda x0: x0.sum((1, 2)), 0.1, weighting="linear")


@pytest.mark.parametrize("levels", [autoregressive(6, 4), pyramid(6, 4, 1)])
@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("step", ["ddim", "ddpm"])
def test_committing_finished_tokens_changes_nothing(levels, guided, step):
    """Finished leading tokens are committed to the state and dropped from later rows; an
    inpainting mask with nothing known switches that off and must give the same chunk."""
    net, schedule = _gru(cond_dim=2), NoiseSchedule.make(100)
    ctx, cond = torch.randn(3, 2, 3, dtype=torch.float64), torch.randn(3, 8, 2, dtype=torch.float64)
    nothing_known = Inpaint(torch.zeros(3, 6, 3, dtype=torch.float64), torch.zeros(3, 6, dtype=torch.bool))
    rows = []

    def run(inpaint):
        return sample(net, schedule, levels, context=ctx, cond=cond, step=step,
                      guidance=CostGuidance(_goal_cost, 2.0) if guided else None, inpaint=inpaint,
                      generator=torch.Generator().manual_seed(0), callback=rows.append)
    pruned, plain = run(None), run(nothing_known)
    torch.testing.assert_close(pruned, plain)
    half = len(rows) // 2
    for a, b in zip(rows[:half], rows[half:]):              # every row's x and x0 estimate, whole chunk
        torch.testing.assert_close(a["x"], b["x"])
        assert a["x0_hat"].shape == b["x0_hat"].shape == (3, 6, 3)


def test_history_guidance_scale_one_equals_plain_and_other_scales_differ():
    net, schedule = _gru(), NoiseSchedule.make(100)
    ctx = torch.randn(2, 4, 3, dtype=torch.float64)

    def run(h):
        return rollout(net, schedule, pyramid(3, 4, 1), 6, context=ctx, history=h, stabilization=3,
                       generator=torch.Generator().manual_seed(0))
    plain = run(None)
    torch.testing.assert_close(run(HistoryGuidance(1.0)), plain)
    assert not torch.allclose(run(HistoryGuidance(2.0)), plain)
    assert not torch.allclose(run(HistoryGuidance(2.0, level=50)), run(HistoryGuidance(2.0)))


def test_rollout_input_errors():
    net, schedule = _gru(), NoiseSchedule.make(100)
    with pytest.raises(ValueError, match="batch and token_shape"):
        rollout(net, schedule, pyramid(3, 4), 5)
    with pytest.raises(ValueError, match="stabilization"):
        rollout(net, schedule, pyramid(3, 4), 5, batch=1, token_shape=(3,), stabilization=101)
    with pytest.raises(ValueError, match="cond must cover"):
        rollout(_gru(cond_dim=2), schedule, pyramid(3, 4), 5, batch=1, token_shape=(3,), cond=torch.zeros(1, 3, 2))
    with pytest.raises(TypeError, match="Recompute"):
        rollout(torch.nn.Linear(3, 3), schedule, pyramid(3, 4), 5, batch=1, token_shape=(3,))
    with pytest.raises(ValueError, match="step"):
        rollout(net, schedule, pyramid(3, 4), 5, batch=1, token_shape=(3,), step="euler")


def test_ddim_guidance_constant_sums_to_half_and_vanishes_on_the_last_step():
    """The paper's per-step constant s_from (s_from - s_to) telescopes to about 1/2 over a chain from
    pure noise (a Riemann sum of the integral of s ds), and is 0 on the step that lands on level 0."""
    from dforce.diffusion.guidance import ddim_guidance_constant

    schedule = NoiseSchedule.make(1000, "sigmoid")
    for steps in (20, 50, 200):
        k = torch.linspace(1000, 0, steps + 1).round().long()
        s = (1 - schedule.alphas_cumprod[k]).sqrt()
        const = ddim_guidance_constant(s[:-1], s[1:], k[1:] == 0)
        assert const[-1] == 0 and (const[:-1] > 0).all()
        assert 0.35 < float(const.sum()) < 0.6


def test_ddim_form_guidance_moves_toward_lower_cost_and_not_on_a_single_final_step():
    net, schedule = _gru(), NoiseSchedule.make(100)
    ctx = torch.randn(4, 2, 3, dtype=torch.float64)

    def run(g, levels):
        return sample(net, schedule, levels, context=ctx, guidance=g, generator=torch.Generator().manual_seed(0))
    ddim = CostGuidance(_goal_cost, 8.0, form="ddim")
    plain, guided = run(None, pyramid(6, 8, 1)), run(ddim, pyramid(6, 8, 1))
    assert _goal_cost(guided).mean() < 0.5 * _goal_cost(plain).mean()
    one_step = full_sequence(6, 1)                       # every token goes from pure noise to clean at once
    torch.testing.assert_close(run(ddim, one_step), run(None, one_step))
    assert not torch.allclose(run(CostGuidance(_goal_cost, 8.0), one_step), run(None, one_step))


def test_ddim_form_guidance_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="form"):
        CostGuidance(_goal_cost, 1.0, form="eps")
    with pytest.raises(ValueError, match="weighting"):
        CostGuidance(_goal_cost, 1.0, weighting="variance", form="ddim")
    net, schedule = _gru(), NoiseSchedule.make(100)
    with pytest.raises(ValueError, match="ddpm"):
        sample(net, schedule, pyramid(6, 8, 1), context=torch.randn(1, 2, 3, dtype=torch.float64), step="ddpm",
               guidance=CostGuidance(_goal_cost, 1.0, form="ddim"))


def test_guidance_clip_bounds_each_tokens_gradient_norm_and_keeps_its_direction():
    from dforce.diffusion.guidance import clip_token_norm

    grad = torch.zeros(2, 3, 4, 5)
    grad[0, 0] = 3.0                                   # norm 3 * sqrt(20) ~ 13.4: clipped to 2
    grad[1, 2, 0, 0] = 0.5                             # norm 0.5: left alone
    clipped = clip_token_norm(grad, 2.0)
    norms = clipped.flatten(2).norm(dim=-1)
    assert norms[0, 0] == pytest.approx(2.0) and norms[1, 2] == pytest.approx(0.5) and norms.sum() == pytest.approx(2.5)
    assert torch.allclose(clipped[0, 0] / clipped[0, 0].norm(), grad[0, 0] / grad[0, 0].norm())
    assert clip_token_norm(grad, None) is grad
    x = torch.randn(2, 4, 3)
    fresh = torch.zeros(2, 4, dtype=torch.bool)
    _, g = CostGuidance(lambda x0: 100 * x0.sum((1, 2)), 1.0, max_norm=1.0).x0_and_gradient(lambda xx: xx * 1.0, x, fresh)
    assert torch.allclose(g.norm(dim=-1), torch.ones(2, 4))
    with pytest.raises(ValueError, match="max_norm"):
        CostGuidance(_goal_cost, 1.0, max_norm=0.0)
