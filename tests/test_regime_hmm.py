"""Regime features and the Gaussian HMM: values against pandas/hmmlearn, and causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _regime_synth import perturbed_after, planted_market

from strategies.regime.features import FEATURES, regime_features
from strategies.regime.hmm import (
    HMMConfig,
    filtered_proba,
    fit_market_hmm,
    fit_state_classes,
    market_proba,
    proba_to_classes,
)
from strategies.regime.labels import LabelSpec, fit_barriers, forward_labels


@pytest.fixture(scope="module")
def planted():
    return planted_market(n=1600, seed=0)


@pytest.fixture(scope="module")
def fitted(planted):
    m, _ = planted
    cfg = HMMConfig(n_states=2, n_restarts=3, n_iter=40, features=("ret_24h", "vol_24h"))
    return fit_market_hmm(m.slice(0, 1000), cfg)


# ---------------------------------------------------------------- features


def test_features_match_pandas(planted):
    m, _ = planted
    f = regime_features(m)
    assert f.values.shape == (m.n_bars, m.n_coins, len(FEATURES))
    c = pd.Series(np.log(m.close[:, 1]))
    r = c.diff()
    np.testing.assert_allclose(f.get("ret_1h")[:, 1], r, equal_nan=True)
    np.testing.assert_allclose(f.get("ret_24h")[:, 1], c.diff(24), equal_nan=True)
    np.testing.assert_allclose(f.get("vol_24h")[:, 1], np.log(r.rolling(24).std(ddof=0)), equal_nan=True)
    np.testing.assert_allclose(f.get("drawdown")[:, 1], c - c.cummax())
    v = pd.Series(m.volume[:, 1])
    vt = np.log(v.ewm(span=24, adjust=False, min_periods=24).mean()
                / v.ewm(span=168, adjust=False, min_periods=168).mean())
    np.testing.assert_allclose(f.get("volume_trend")[:, 1], vt, rtol=1e-9, equal_nan=True)
    rng = pd.Series((m.high[:, 1] - m.low[:, 1]) / m.close[:, 1]).rolling(24).mean()
    np.testing.assert_allclose(f.get("range_pct")[:, 1], np.log(rng), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(f.get("funding_24h")[:, 1], pd.Series(m.funding[:, 1]).rolling(24).mean(),
                               rtol=1e-9, atol=1e-15, equal_nan=True)
    assert np.isnan(f.get("oi_change_24h")).all()  # no open interest in the data
    # bar 0 opens Monday 2024-01-01 00:00 and closes at 01:00
    assert f.get("hour_sin")[0, 0] == pytest.approx(np.sin(2 * np.pi / 24))
    assert f.get("dow_sin")[0, 0] == pytest.approx(0.0) and f.get("dow_cos")[0, 0] == pytest.approx(1.0)


def test_features_unknown_where_unlisted(planted):
    m, _ = planted
    listed = m.listed.copy()
    listed[500:510, 0] = False
    close = m.close.copy()
    close[500:510, 0] = np.nan
    gap = type(m)(**{**m.__dict__, "listed": listed, "close": close, "_fingerprint": []})
    f = regime_features(gap)
    assert np.isnan(f.values[500:510, 0]).all()
    assert np.isfinite(f.values[520, 0, :8]).all()  # windows count listed bars: no restart


@pytest.mark.parametrize("t", [180, 700, 1599])
def test_features_causal(planted, t):
    m, _ = planted
    full = regime_features(m).values[: t + 1]
    np.testing.assert_array_equal(regime_features(m.slice(0, t + 1)).values, full)
    np.testing.assert_array_equal(regime_features(perturbed_after(m, t)).values[: t + 1], full)


# ---------------------------------------------------------------- HMM


def test_filtered_proba_equals_hmmlearn_posterior_at_the_last_row(fitted, planted):
    """At the last row of a sequence, the smoothed posterior IS the filtered probability."""
    from hmmlearn.hmm import GaussianHMM

    m, _ = planted
    p = fitted.params
    ref = GaussianHMM(n_components=p.n_states, covariance_type="full", init_params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = p.startprob, p.transmat, p.means, p.covars
    raw = regime_features(m).subset(p.features)[:, 0]
    x = (raw - fitted.center[0]) / fitted.scale[0]
    x = x[np.isfinite(x).all(axis=1)]
    ours = filtered_proba(p, x)
    for t in (0, 1, 57, 600, x.shape[0] - 1):
        np.testing.assert_allclose(ours[t], ref.predict_proba(x[: t + 1])[-1], atol=1e-8)


def test_states_sorted_by_mean_return_best_restart_kept_and_planted_regimes_found(fitted, planted):
    m, state = planted
    p = fitted.params
    ret = p.features.index("ret_24h")
    assert np.all(np.diff(p.means[:, ret]) > 0)
    assert len(p.restart_log_likelihoods) == 3
    assert p.log_likelihood == pytest.approx(max(p.restart_log_likelihoods))
    proba = market_proba(fitted, m)
    vol = p.features.index("vol_24h")
    volatile = int(np.argmax(p.means[:, vol]))
    guess = np.argmax(proba[200:, 0], axis=1) == volatile
    assert (guess == (state[200:] == 1)).mean() > 0.85


@pytest.mark.parametrize("t", [1000, 1234, 1599])
def test_filtered_proba_causal(fitted, planted, t):
    m, _ = planted
    full = market_proba(fitted, m)[: t + 1]
    np.testing.assert_array_equal(market_proba(fitted, m.slice(0, t + 1)), full)
    np.testing.assert_array_equal(market_proba(fitted, perturbed_after(m, t))[: t + 1], full)


def test_state_map_from_train_labels_and_unknown_rows(fitted, planted):
    m, _ = planted
    train = m.slice(0, 1000)
    spec = LabelSpec()
    labels = forward_labels(train, fit_barriers(train, spec), spec)
    classes = fit_state_classes(market_proba(fitted, train), labels)
    assert classes.shape == (2,) and set(classes) <= {0, 1, 2}
    codes = proba_to_classes(market_proba(fitted, m), classes)
    assert codes.dtype == np.int8 and (codes[:24] == -1).all() and (codes[24:] != -1).all()
    assert set(np.unique(codes[200:])) <= set(classes)
    # lift, not majority: a state holding half of a rare class beats the frequent class
    proba = np.array([[1.0, 0.0]] * 10 + [[0.0, 1.0]] * 10)[:, None, :]
    y = np.array([1] * 9 + [2] + [1] * 8 + [2, 2])[:, None]
    assert list(fit_state_classes(proba, y)) == [1, 2]


def test_em_on_a_seeded_draw_of_whole_coins_past_max_rows(planted):
    m, _ = planted
    train = m.slice(0, 1000)
    cfg = HMMConfig(n_states=2, n_restarts=2, n_iter=20, features=("ret_24h", "vol_24h"), max_rows=500)
    fitted = fit_market_hmm(train, cfg)  # ~830 rows per coin: one coin is drawn
    drawn = [fit_market_hmm(train.select([coin]), cfg).params.means for coin in m.coins]
    assert sum(np.array_equal(fitted.params.means, d) for d in drawn) == 1
    assert np.isfinite(market_proba(fitted, m)[200:]).all()  # every coin still gets its states
