"""OU funding: the AR(1) -> OU fit, the Kalman z-score, the quality score and the signals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _market_from_arrays import market_from_arrays

from strategies import ou_funding as ouf
from strategies import ou_nb
from strategies.base import get_strategy

LN2 = np.log(2.0)


def simulate_ou(theta: float, mu: float, sigma: float, dt: float, n: int, seed: int) -> np.ndarray:
    """Exact discretisation: X[t+dt] = mu + (X[t] - mu) e^{-theta dt} + sd * N(0, 1)."""
    rng = np.random.default_rng(seed)
    b = np.exp(-theta * dt)
    sd = sigma * np.sqrt((1 - b * b) / (2 * theta))
    x = np.empty(n)
    x[0] = mu + sigma / np.sqrt(2 * theta) * rng.standard_normal()
    for t in range(1, n):
        x[t] = mu + (x[t - 1] - mu) * b + sd * rng.standard_normal()
    return x


# ------------------------------------------------------------------ the fit


@pytest.mark.parametrize("dt", [1.0, 4.0])
def test_ou_fit_recovers_simulated_parameters(dt):
    theta, mu, sigma = 0.25, 1.5e-5, 4e-5  # per hour; half-life 2.77 h
    x = simulate_ou(theta, mu, sigma, dt, 20_000, seed=3)
    th, m, s, hl = ou_nb.ou_fit_columns(x[:, None], dt, 10)[:, 0]
    assert th == pytest.approx(theta, rel=0.10)
    assert m == pytest.approx(mu, abs=4e-6)  # stderr of the mean ~1.2e-6 at dt = 1
    assert s == pytest.approx(sigma, rel=0.04)
    assert hl == pytest.approx(LN2 / theta, rel=0.10)


def test_ar1_regression_matches_numpy_polyfit():
    x = simulate_ou(0.1, 2e-5, 5e-5, 1.0, 3000, seed=5)
    x[[100, 101, 2000]] = np.nan  # pairs touching a NaN are dropped
    a, b, sd, n = ou_nb.ar1_ols(x)
    ok = np.isfinite(x[:-1]) & np.isfinite(x[1:])
    slope, icpt = np.polyfit(x[:-1][ok], x[1:][ok], 1)
    resid = x[1:][ok] - (icpt + slope * x[:-1][ok])
    assert n == ok.sum()
    assert b == pytest.approx(slope, rel=1e-9)
    assert a == pytest.approx(icpt, rel=1e-7, abs=1e-15)
    assert sd == pytest.approx(np.sqrt(resid @ resid / (ok.sum() - 2)), rel=1e-9)


@pytest.mark.parametrize("dt,half_life", [(1.0, 6.0), (4.0, 6.0), (1.0, 30.0)])
def test_half_life_of_a_noiseless_decay(dt, half_life):
    """x(t) = mu + (x0 - mu) 0.5^(t / H): the fit must return H hours, and ln2 / theta = H."""
    hours = np.arange(200) * dt
    x = 1e-5 + 4e-4 * 0.5 ** (hours / half_life)
    th, mu, s, hl = ou_nb.ou_fit_columns(x[:, None], dt, 10)[:, 0]
    assert hl == pytest.approx(half_life, rel=1e-6)
    assert hl == pytest.approx(LN2 / th, rel=1e-12)
    assert mu == pytest.approx(1e-5, rel=1e-4)
    assert np.exp(-th * hl) == pytest.approx(0.5)


def test_no_mean_reversion_gives_nan():
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 1e-5, 5000)) + np.linspace(0, 1e-2, 5000)  # drifting: b >= 1
    flat = np.full(500, 1.25e-5)
    for x in (walk, flat):
        assert np.isnan(ou_nb.ou_fit_columns(x[:, None], 1.0, 10)).all()


def test_rolling_fit_uses_only_its_window():
    x = simulate_ou(0.2, 1e-5, 3e-5, 1.0, 800, seed=8)[:, None]
    where = np.zeros_like(x, dtype=bool)
    where[[300, 799]] = True
    res = ou_nb.rolling_ou_fit(x, 200, 1.0, 48, where)
    for t in (300, 799):
        assert res[3, t, 0] == pytest.approx(ou_nb.ou_fit_columns(x[t - 199:t + 1], 1.0, 48)[3, 0])
    assert np.isnan(res[3, ~where[:, 0], 0]).all()


# ------------------------------------------------------------------ the Kalman z-score


def rolling_z_numpy(x: np.ndarray, w: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for t in range(w - 1, len(x)):
        win = x[t - w + 1:t + 1]
        out[t] = (x[t] - win.mean()) / win.std()
    return out


def test_kalman_z_far_less_extreme_than_rolling_z_on_a_single_spike():
    rng = np.random.default_rng(1)
    f = 1.25e-5 + rng.normal(0, 2e-6, 400)
    f[250] += 3e-4  # one funding spike (0.03% per hour)
    m = market_from_arrays(np.full(400, 100.0), funding=f, coins=("AAA",))
    kz = ouf.funding_z(m, ouf.Params())[:, 0]
    rz = rolling_z_numpy(f, 24)
    assert np.nanargmax(np.abs(rz)) == 250
    assert np.nanmax(np.abs(rz)) > 4.0
    assert np.nanmax(np.abs(kz)) < np.nanmax(np.abs(rz)) / 3
    assert abs(kz[250]) < ouf.LIVE.z_entry  # a lone spike of that size is no signal


def test_kalman_z_is_the_steady_state_standardised_innovation():
    """After a long flat stretch the predicted variance solves P^2 - qP - qr = 0, so a step of
    size s gives z = s / sqrt(P + r) (the Riccati fixed point, an independent formula)."""
    q, r, step = 1e-8, 5e-6, 3e-3
    y = np.zeros((3000, 1))
    y[2000:] = step
    z, level = ou_nb.kalman_zscore(y, q, r)
    p_pred = (q + np.sqrt(q * q + 4 * q * r)) / 2
    assert z[2000, 0] == pytest.approx(step / np.sqrt(p_pred + r), rel=1e-6)
    assert level[2000, 0] == pytest.approx(step * p_pred / (p_pred + r), rel=1e-6)
    assert np.isnan(z[0, 0]) and (z[1:2000, 0] == 0).all()


def test_kalman_z_is_standard_normal_under_its_own_model():
    q, r = 1e-8, 5e-6
    rng = np.random.default_rng(2)
    level = np.cumsum(rng.normal(0, np.sqrt(q), 20_000))
    y = (level + rng.normal(0, np.sqrt(r), 20_000))[:, None]
    z = ou_nb.kalman_zscore(y, q, r)[0][200:, 0]
    assert z.mean() == pytest.approx(0, abs=0.05)
    assert z.std() == pytest.approx(1, abs=0.03)


def test_kalman_skips_missing_bars():
    y = np.array([[1.0], [np.nan], [2.0]])
    z, level = ou_nb.kalman_zscore(y, 0.5, 1.0)
    # start m=1, P=r=1; NaN bar: P=1.5; next: predicted 2.0, S=3.0, z=(2-1)/sqrt(3)
    assert np.isnan(z[1, 0]) and level[1, 0] == 1.0
    assert z[2, 0] == pytest.approx(1 / np.sqrt(3.0))
    assert level[2, 0] == pytest.approx(1 + 2.0 / 3.0)


def test_quality_formula():
    assert ouf.quality(12.0, 3.0) == pytest.approx(np.exp(-1))
    assert ouf.quality(0.0, 1.5) == pytest.approx(0.5)
    assert ouf.quality(6.0, -9.0) == pytest.approx(np.exp(-0.5))
    assert ouf.quality(np.array([2.0, 24.0]), np.array([2.0, 2.0])) == pytest.approx(
        [np.exp(-2 / 12) * 2 / 3, np.exp(-2) * 2 / 3])


# ------------------------------------------------------------------ the strategy


def spike_market() -> tuple:
    """Two coins with OU funding (half-life 4 h); coin AAA spikes up at 800, BBB down at 850."""
    n = 1000
    f = np.column_stack([simulate_ou(LN2 / 4, 1.25e-5, 3e-5, 1.0, n, seed=s) for s in (11, 12)])
    f[800, 0] = 2e-3
    f[850, 1] = -2e-3
    rng = np.random.default_rng(4)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.004, (n, 2)), axis=0))
    return market_from_arrays(close, funding=f, coins=("AAA", "BBB")), f


def test_signals_fade_the_extreme_with_fitted_half_life():
    m, f = spike_market()
    s = get_strategy("ou_funding")
    p = s.default_params()
    fit = s.fit(m.slice(0, 600), p)
    assert ((fit.half_life > 2) & (fit.half_life < 8)).all()  # true 4 h, 600 noisy bars
    sig = s.generate(m, p, "live", fit)
    on = np.argwhere(sig.direction != 0)
    assert {tuple(x) for x in on} == {(800, 0), (850, 1)}
    assert sig.direction[800, 0] == -1 and sig.direction[850, 1] == 1
    z = ouf.funding_z(m, p)
    for t, c in ((800, 0), (850, 1)):
        assert sig.hold[t, c] == np.ceil(2 * fit.half_life[c])
        assert sig.score[t, c] == pytest.approx(ouf.quality(fit.half_life[c], z[t, c]))
        assert sig.stop[t, c] > 0


def test_half_life_band_and_coin_mapping():
    m, _ = spike_market()
    s = get_strategy("ou_funding")
    p = s.default_params()
    fit = s.fit(m.slice(0, 600), p)
    slow = dataclasses.replace(fit, half_life=np.array([100.0, fit.half_life[1]]))
    sig = s.generate(m, p, "live", slow)
    assert sig.direction[800, 0] == 0 and sig.direction[850, 1] == 1  # AAA's 100 h is too slow
    flipped = m.select(["BBB", "AAA"])  # fitted values follow the coin names, not positions
    sig = s.generate(flipped, p, "live", fit)
    assert sig.direction[800, 1] == -1 and sig.direction[850, 0] == 1


def test_live_needs_the_position_to_be_paid_shadow_does_not():
    n = 600
    f = np.full((n, 1), -1e-3) + np.random.default_rng(0).normal(0, 1e-6, (n, 1))
    f[500, 0] = -1e-5  # funding jumps up but stays negative: a short would pay
    m = market_from_arrays(np.full(n, 10.0), funding=f, coins=("AAA",))
    s = get_strategy("ou_funding")
    p = s.default_params()
    fit = dataclasses.replace(s.fit(m, p), half_life=np.array([5.0]))
    assert ouf.funding_z(m, p)[500, 0] > ouf.LIVE.z_entry
    assert s.generate(m, p, "live", fit).direction[500, 0] == 0
    assert s.generate(m, p, "shadow", fit).direction[500, 0] == -1


def test_rolling_fallback_fits_the_trailing_window():
    m, f = spike_market()
    s = get_strategy("ou_funding")
    p = s.default_params()
    sig = s.generate(m, p, "shadow", None)
    assert sig.direction[800, 0] == -1
    win = f[800 - p.ou_window + 1:801, 0]
    slope, _ = np.polyfit(win[:-1], win[1:], 1)
    hl = LN2 / -np.log(slope)
    assert sig.hold[800, 0] == np.ceil(2 * hl)


def test_rolling_z_method_is_a_plain_rolling_z():
    m, f = spike_market()
    p = dataclasses.replace(ouf.Params(), z_method="rolling", z_window=48)
    z = ouf.funding_z(m, p)
    assert z[800, 0] == pytest.approx(rolling_z_numpy(f[:, 0], 48)[800], rel=1e-9)
