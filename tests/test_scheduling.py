import pytest
import torch

from dforce.diffusion import autoregressive, by_name, drop_idle_rows, full_sequence, grid_to_levels, pyramid
from dforce.diffusion import trapezoid, validate


@pytest.mark.parametrize("horizon", [1, 4, 7])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("name", ["full_sequence", "autoregressive", "pyramid", "trapezoid"])
def test_matrix_invariants(name, horizon, steps):
    m = by_name(name, horizon, steps, slope=1)
    assert m.dtype == torch.int64 and m.shape[1] == horizon
    assert (m[0] == steps).all() and (m[-1] == 0).all()
    assert (m[1:] <= m[:-1]).all()
    assert (m[1:] != m[:-1]).any(1).all(), "every row should change something"
    validate(m)


def test_pyramid_extremes():
    assert torch.equal(pyramid(6, 4, slope=0), full_sequence(6, 4))
    assert torch.equal(pyramid(6, 4, slope=4), autoregressive(6, 4))
    assert full_sequence(3, 4).shape == (5, 3)
    assert autoregressive(3, 4).shape == (13, 3)


def test_autoregressive_starts_token_only_when_previous_clean():
    m = autoregressive(4, 3)
    for t in range(1, 4):
        started = m[:, t] < 3
        assert (m[started, t - 1] == 0).all()


def test_pyramid_lag_exact():
    m = pyramid(3, 2, slope=1)
    expected = torch.tensor([[2, 2, 2], [1, 2, 2], [0, 1, 2], [0, 0, 1], [0, 0, 0]])
    assert torch.equal(m, expected)


@pytest.mark.parametrize("horizon", [5, 6])
def test_trapezoid_symmetric_for_odd_and_even(horizon):
    m = trapezoid(horizon, 3, slope=1)
    assert torch.equal(m, m.flip(1))
    lag_end = (m[:, 0] == 0).nonzero()[0]
    lag_mid = (m[:, horizon // 2] == 0).nonzero()[0]
    assert lag_mid > lag_end


def test_validate_reports_faults():
    good = pyramid(3, 2)
    with pytest.raises(ValueError, match="row 0"):
        validate(torch.cat([good[1:2], good]))
    with pytest.raises(ValueError, match="last row"):
        validate(good[:-1])
    bad = good.clone()
    bad[3, 1] = 2
    with pytest.raises(ValueError, match="column 1 rises"):
        validate(bad)
    with pytest.raises(ValueError, match="integers"):
        validate(good.float())
    with pytest.raises(ValueError, match="2-D"):
        validate(torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="scheduling"):
        by_name("zigzag", 3, 2)
    with pytest.raises(ValueError, match="horizon"):
        pyramid(0, 2)


def test_drop_idle_rows_and_grid_mapping():
    m = torch.tensor([[2, 2], [2, 2], [1, 2], [0, 0], [0, 0]])
    assert torch.equal(drop_idle_rows(m), torch.tensor([[2, 2], [1, 2], [0, 0]]))
    assert grid_to_levels(torch.tensor([0, 1, 2, 10]), 1000, 10).tolist() == [0, 100, 200, 1000]
    assert grid_to_levels(torch.tensor([0, 1, 3]), 10, 3).tolist() == [0, 3, 10]
