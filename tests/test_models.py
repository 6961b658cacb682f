"""Backbones obey the protocol: shapes, causality, streaming == forward, cond, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dforce.models import (
    CausalTransformer,
    Denoiser,
    FrameDenoiser,
    GRUDenoiser,
    LevelEmbedding,
    Recompute,
)

B, T, LEVELS, COND = 2, 8, 10, 3
TOKEN_DIM = 4
CHANNELS, SIZE = 2, 8
TOL = dict(atol=1e-10, rtol=1e-8)  # models run in float64


def _gru(cond_dim=COND):
    return GRUDenoiser(TOKEN_DIM, cond_dim=cond_dim, width=16, depth=2, levels=LEVELS)


def _transformer(window, cond_dim=COND, depth=2):
    return CausalTransformer(
        TOKEN_DIM, cond_dim=cond_dim, width=16, depth=depth, heads=2, window=window, levels=LEVELS, mlp_ratio=2
    )


def _frames(cond_dim=COND):
    return FrameDenoiser(CHANNELS, SIZE, cond_dim=cond_dim, width=8, levels=LEVELS)


BUILDERS = {
    "gru": _gru,
    "transformer": lambda: _transformer(None),
    "transformer_w3": lambda: _transformer(3),
    "frames": _frames,
    "recompute_gru": lambda: Recompute(_gru()),
}


@pytest.fixture(params=list(BUILDERS))
def model(request):
    torch.manual_seed(0)
    return BUILDERS[request.param]().double().eval()


def _token_shape(model):
    inner = model.model if isinstance(model, Recompute) else model
    return (CHANNELS, SIZE, SIZE) if isinstance(inner, FrameDenoiser) else (TOKEN_DIM,)


def _inputs(model, t=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, t, *_token_shape(model), generator=g, dtype=torch.float64)
    k = torch.randint(0, LEVELS + 1, (B, t), generator=g)
    c = torch.randn(B, t, COND, generator=g, dtype=torch.float64)
    return x, k, c


def _tensors(state):
    """Every tensor in a state, in a fixed order (tensor, tuple/list or dataclass)."""
    if isinstance(state, torch.Tensor):
        return [state]
    if dataclasses.is_dataclass(state):
        state = [getattr(state, f.name) for f in dataclasses.fields(state)]
    if isinstance(state, (tuple, list)):
        return [t for s in state for t in _tensors(s)]
    return []


def _close(a, b):
    torch.testing.assert_close(a, b, **TOL)


# -- protocol ------------------------------------------------------------------


def test_satisfies_protocol_and_shape(model):
    x, k, c = _inputs(model)
    assert isinstance(model, Denoiser)
    assert model(x, k, c).shape == x.shape


@pytest.mark.parametrize("what", ["x", "k", "cond"])
def test_causal(model, what):
    x, k, c = _inputs(model)
    cut = 3
    x2, k2, c2 = x.clone(), k.clone(), c.clone()
    if what == "x":
        x2[:, cut + 1 :] += 1.0
    elif what == "k":
        k2[:, cut + 1 :] = (k2[:, cut + 1 :] + LEVELS // 2) % (LEVELS + 1)
    else:
        c2[:, cut + 1 :] += 1.0
    with torch.no_grad():
        y, y2 = model(x, k, c), model(x2, k2, c2)
    _close(y2[:, : cut + 1], y[:, : cut + 1])
    assert (y2[:, cut + 1 :] - y[:, cut + 1 :]).abs().max() > 1e-6  # the change is seen later


@torch.no_grad()
def test_forward_chunk_on_empty_state_equals_forward(model):
    x, k, c = _inputs(model)
    _close(model.forward_chunk(x, k, c, model.init_state(B)), model(x, k, c))


@torch.no_grad()
def test_chunked_streaming_equals_forward(model):
    x, k, c = _inputs(model)
    full = model(x, k, c)
    state = model.init_state(B)
    bounds = [(0, 3), (3, 5), (5, T)]
    for lo, hi in bounds:
        _close(model.forward_chunk(x[:, lo:hi], k[:, lo:hi], c[:, lo:hi], state), full[:, lo:hi])
        state = model.append(x[:, lo:hi], k[:, lo:hi], c[:, lo:hi], state)


@torch.no_grad()
def test_single_token_rollout_equals_forward(model):
    t = 10  # longer than the window of transformer_w3, so the cache is trimmed
    x, k, c = _inputs(model, t=t)
    full = model(x, k, c)
    state = model.init_state(B)
    for i in range(t):
        s = slice(i, i + 1)
        _close(model.forward_chunk(x[:, s], k[:, s], c[:, s], state), full[:, s])
        state = model.append(x[:, s], k[:, s], c[:, s], state)
    if isinstance(model, CausalTransformer) and model.window is not None:
        assert state.length == model.window - 1
        assert state.pos == t


@torch.no_grad()
def test_repeated_state_serves_a_tiled_batch(model):
    x, k, c = _inputs(model)
    state = model.append(x[:, :4], k[:, :4], c[:, :4], model.init_state(B))
    alone = model.forward_chunk(x[:, 4:], k[:, 4:], c[:, 4:], state)
    other = torch.randn_like(x[:, 4:])
    tiled = model.forward_chunk(torch.cat([x[:, 4:], other]), torch.cat([k[:, 4:]] * 2), torch.cat([c[:, 4:]] * 2),
                                model.repeat_state(state, 2))
    _close(tiled[:B], alone)
    _close(tiled[B:], model.forward_chunk(other, k[:, 4:], c[:, 4:], state))


@torch.no_grad()
def test_forward_chunk_does_not_mutate_state(model):
    x, k, c = _inputs(model)
    state = model.append(x[:, :4], k[:, :4], c[:, :4], model.init_state(B))
    before = [t.clone() for t in _tensors(state)]
    model.forward_chunk(x[:, 4:], k[:, 4:], c[:, 4:], state)
    after = _tensors(state)
    assert len(before) == len(after) > 0
    for b, a in zip(before, after):
        assert torch.equal(a, b)


def test_gradients_reach_every_parameter(model):
    x, k, c = _inputs(model, t=4)
    model(x, k, c).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# -- conditioning --------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_cond_is_used_and_required(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().double()
    x, k, c = _inputs(model)
    with torch.no_grad():
        assert (model(x, k, c) - model(x, k, c + 1.0)).abs().max() > 1e-6
    with pytest.raises(ValueError, match="cond"):
        model(x, k, None)


@pytest.mark.parametrize("build", [lambda: _gru(0), lambda: _transformer(3, cond_dim=0), lambda: _frames(0)])
def test_no_cond_model_rejects_cond(build):
    model = build().double()
    x, k, c = _inputs(model)
    assert model(x, k, None).shape == x.shape
    with pytest.raises(ValueError, match="cond_dim=0"):
        model(x, k, c)


def test_bad_shapes_raise():
    model = _gru().double()
    x, k, c = _inputs(model)
    with pytest.raises(ValueError, match="x must have shape"):
        model(x[..., :2], k, c)
    with pytest.raises(ValueError, match="k must have shape"):
        model(x, k[:, :3], c)
    with pytest.raises(TypeError, match="integer"):
        model(x, k.double(), c)
    with pytest.raises(ValueError, match="state"):
        model.forward_chunk(x, k, c, model.init_state(B + 1))


def test_constructor_validation():
    with pytest.raises(ValueError, match="multiple of 4"):
        FrameDenoiser(3, 10)
    with pytest.raises(ValueError, match="width/heads"):
        CausalTransformer(2, width=20, heads=3)
    with pytest.raises(ValueError, match="window"):
        CausalTransformer(2, width=16, heads=2, window=0)
    with pytest.raises(ValueError, match="width"):
        GRUDenoiser(2, width=7)


# -- model-specific ------------------------------------------------------------


def test_gru_loop_forward_matches_fused():
    torch.manual_seed(0)
    model = _gru().double()
    x, k, c = _inputs(model)
    fused = model(x, k, c)
    g_fused = torch.autograd.grad(fused.square().sum(), list(model.parameters()))
    looped = model.loop_forward(x, k, c)
    g_loop = torch.autograd.grad(looped.square().sum(), list(model.parameters()))
    _close(looped, fused)
    for a, b in zip(g_loop, g_fused):
        _close(a, b)


def test_windowed_transformer_forgets_beyond_receptive_field():
    # depth 2, window 3: token t sees tokens >= t - 4; changing older ones changes nothing
    torch.manual_seed(0)
    model = _transformer(3).double()
    x, k, c = _inputs(model)
    x2 = x.clone()
    x2[:, 0] += 1.0
    with torch.no_grad():
        y, y2 = model(x, k, c), model(x2, k, c)
    _close(y2[:, 5:], y[:, 5:])
    assert (y2[:, 4] - y[:, 4]).abs().max() > 1e-6


def test_transformer_depends_only_on_relative_positions():
    # RoPE: a cache that starts at position 10**7 (a long rollout) changes nothing
    torch.manual_seed(0)
    model = _transformer(3).double()
    x, k, c = _inputs(model)
    far = dataclasses.replace(model.init_state(B), pos=10**7)
    with torch.no_grad():
        _close(model.forward_chunk(x, k, c, far), model(x, k, c))


def test_recompute_window_trims_past_and_matches_finite_receptive_field():
    torch.manual_seed(0)
    model = Recompute(_transformer(3), window=4).double()  # receptive field: 4 past tokens
    x, k, c = _inputs(model, t=10)
    with torch.no_grad():
        full = model(x, k, c)
        state = model.init_state(B)
        for i in range(10):
            s = slice(i, i + 1)
            _close(model.forward_chunk(x[:, s], k[:, s], c[:, s], state), full[:, s])
            state = model.append(x[:, s], k[:, s], c[:, s], state)
    assert state.length == 4
    _close(state.x, x[:, -4:])


def test_level_embedding():
    torch.manual_seed(0)
    emb = LevelEmbedding(LEVELS, 8)
    k = torch.arange(LEVELS + 1)
    e = emb(k)
    assert e.shape == (LEVELS + 1, 8)
    assert emb(k.view(1, -1, 1)).shape == (1, LEVELS + 1, 1, 8)
    assert torch.cdist(e, e).add(torch.eye(LEVELS + 1)).min() > 1e-4  # all distinct
    with pytest.raises(ValueError, match="levels"):
        LevelEmbedding(0, 8)
    with pytest.raises(ValueError, match="dim"):
        LevelEmbedding(10, 7)
