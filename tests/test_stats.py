"""Statistics against the published values of DESIGN section 7 and second implementations."""

from itertools import combinations

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import ConfigError
from harness.stats import (
    benjamini_hochberg,
    dsr,
    effective_n,
    expected_max_sr,
    holm,
    min_track_record_length,
    pbo_cscv,
    psr,
    t_stat,
)


def test_psr_published_example():
    # Bailey & Lopez de Prado (2012): SR 1.585 annual from monthly data, 24 months
    assert psr(1.585 / np.sqrt(12), 0.0, 24, -2.448, 10.164) == pytest.approx(0.9132343069, abs=1e-9)


def test_psr_is_one_half_at_the_benchmark():
    assert psr(0.2, 0.2, 100, -1.0, 6.0) == pytest.approx(0.5)


def test_dsr_published_example():
    # Bailey & Lopez de Prado (2014): annual SR 2.5, annual trial-SR variance 0.5, N 100,
    # T 1250 daily returns, 250 days a year -> per period SR 2.5/sqrt(250), variance 0.5/250
    periods = 250
    sr0 = expected_max_sr(100, 0.5 / periods)
    assert sr0 == pytest.approx(0.113172, abs=1e-6)
    value = dsr(2.5 / np.sqrt(periods), 100, 0.5 / periods, t=1250, skew=-3, kurt=10)
    assert value == pytest.approx(0.9003968344, abs=1e-9)


def test_dsr_from_returns_uses_their_moments():
    rng = np.random.default_rng(7)
    r = rng.standard_t(5, size=800) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    expected = psr(sr, expected_max_sr(20, 0.002), len(r), sps.skew(r), sps.kurtosis(r) + 3.0)
    assert dsr(r, 20, 0.002) == pytest.approx(expected, rel=1e-12)
    # one trial: nothing to deflate
    assert dsr(r, 1, 0.002) == pytest.approx(psr(sr, 0.0, len(r), sps.skew(r), sps.kurtosis(r) + 3))


def test_expected_max_sr_tracks_monte_carlo():
    # the Euler-Mascheroni approximation of E[max of N standard normals], N = 1000
    rng = np.random.default_rng(0)
    mc = rng.standard_normal((4000, 1000)).max(axis=1).mean()
    assert expected_max_sr(1000, 1.0) == pytest.approx(mc, rel=0.02)


def test_min_track_record_length_published_example():
    # annual SR 2 vs benchmark 1, normal returns, 95%, 252 periods a year -> about 2.731 years
    p = 252
    periods = min_track_record_length(2 / np.sqrt(p), 1 / np.sqrt(p), 0.0, 3.0, 0.95)
    assert periods / p == pytest.approx(2.731, abs=1e-3)
    assert min_track_record_length(0.1, 0.2) == float("inf")


def test_min_trl_is_where_psr_reaches_p():
    sr, bench, skew, kurt = 0.15, 0.05, -0.5, 5.0
    n = min_track_record_length(sr, bench, skew, kurt, 0.95)
    assert psr(sr, bench, n, skew, kurt) == pytest.approx(0.95, abs=1e-12)


def test_t_stat_matches_scipy():
    rng = np.random.default_rng(3)
    r = rng.normal(0.2, 1.3, size=57)
    assert t_stat(r) == pytest.approx(sps.ttest_1samp(r, 0.0).statistic, rel=1e-12)
    assert np.isnan(t_stat([1.0]))


def test_effective_n_clusters_correlated_trials():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(500, 3))
    cols = []
    for j in range(3):  # three families of four near-copies each (corr > 0.99)
        for _ in range(4):
            cols.append(base[:, j] * rng.uniform(0.5, 2) + rng.normal(scale=0.05, size=500))
    m = np.column_stack(cols)
    assert effective_n(m) == 3
    # a pair correlating about 0.9: two trials at 0.95, one at 0.85
    a = rng.normal(size=2000)
    b = 0.9 * a + np.sqrt(1 - 0.81) * rng.normal(size=2000)
    pair = np.column_stack([a, b])
    assert 0.88 < np.corrcoef(a, b)[0, 1] < 0.92
    assert effective_n(pair, 0.95) == 2
    assert effective_n(pair, 0.85) == 1


def _pbo_reference(m: np.ndarray, s: int) -> np.ndarray:
    """Plain loop over the splits, as written in Bailey et al. (2017), section 2."""
    t, n = m.shape
    bounds = np.linspace(0, t, s + 1).astype(int)
    blocks = [m[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    logits = []
    for is_idx in combinations(range(s), s // 2):
        is_rows = np.concatenate([blocks[i] for i in is_idx])
        oos_rows = np.concatenate([blocks[i] for i in range(s) if i not in is_idx])
        is_sr = is_rows.mean(0) / is_rows.std(0, ddof=1)
        oos_sr = oos_rows.mean(0) / oos_rows.std(0, ddof=1)
        best = int(np.argmax(is_sr))
        w = sps.rankdata(oos_sr)[best] / (n + 1)
        logits.append(np.log(w / (1 - w)))
    return np.array(logits)


def _p_loss_reference(m: np.ndarray, s: int) -> float:
    """Share of CSCV splits whose in-sample best trial has a negative OOS Sharpe, by loop."""
    bounds = np.linspace(0, len(m), s + 1).astype(int)
    blocks = [m[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    losses = []
    for is_idx in combinations(range(s), s // 2):
        is_rows = np.concatenate([blocks[i] for i in is_idx])
        oos_rows = np.concatenate([blocks[i] for i in range(s) if i not in is_idx])
        best = int(np.argmax(is_rows.mean(0) / is_rows.std(0, ddof=1)))
        losses.append(oos_rows[:, best].mean() < 0)
    return float(np.mean(losses))


def test_p_oos_loss_matches_a_plain_loop_in_both_directions():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.01, size=(240, 10))
    edge = noise.copy()
    edge[:, 3] += 0.004  # one real edge: its in-sample win carries out of sample
    for m in (noise, edge):
        assert pbo_cscv(m, s=8).p_oos_loss == pytest.approx(_p_loss_reference(m, 8))
    assert pbo_cscv(edge, s=8).p_oos_loss == 0.0
    # one noise matrix scatters (splits share blocks); over matrices the in-sample best loses
    # out of sample about half the time
    losses = [pbo_cscv(np.random.default_rng(k).normal(0, 0.01, size=(240, 10)), s=8).p_oos_loss
              for k in range(12)]
    assert 0.3 < np.mean(losses) < 0.7
    # a robust study: every trial is good, so PBO (rank vs the median trial) is high while the
    # in-sample best never loses out of sample: the gate must use the second number
    robust = rng.normal(0.003, 0.01, size=(480, 20)) + rng.normal(0, 0.01, size=(480, 1))
    res = pbo_cscv(robust, s=8)
    assert res.pbo > 0.3 and res.p_oos_loss == 0.0


# Benjamini & Hochberg (1995), J. R. Statist. Soc. B 57(1), p. 295: the 15 p-values of their
# example; at q = 0.05 the step-up procedure rejects the four smallest.
BH_1995 = np.array([0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
                    0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000])


def test_benjamini_hochberg_published_example():
    adj = benjamini_hochberg(BH_1995[::-1])[::-1]  # order of the input does not matter
    assert int((adj <= 0.05).sum()) == 4
    np.testing.assert_allclose(adj, sps.false_discovery_control(BH_1995, method="bh"), rtol=1e-12)


def test_holm_by_hand():
    # Holm at 0.05 on the same p-values: 15 x 0.0001, 14 x 0.0004, 13 x 0.0019 = 0.0247 pass,
    # 12 x 0.0095 = 0.114 stops the step-down: three rejections
    adj = holm(BH_1995)
    assert int((adj <= 0.05).sum()) == 3
    assert adj[:4] == pytest.approx([0.0015, 0.0056, 0.0247, 0.114])
    assert np.all(np.diff(adj) >= 0) and adj.max() == 1.0
    # NaN is not a hypothesis: it does not count in m
    assert holm(np.array([0.01, np.nan, 0.04])) == pytest.approx([0.02, np.nan, 0.04], nan_ok=True)


def test_pbo_matches_a_plain_loop():
    rng = np.random.default_rng(11)
    m = rng.normal(0.0005, 0.01, size=(240, 12))
    res = pbo_cscv(m, s=8)
    ref = _pbo_reference(m, 8)
    assert res.n_splits == 70
    np.testing.assert_allclose(res.logits, ref, rtol=1e-9)
    assert res.pbo == pytest.approx(np.mean(ref <= 0))
    # a user metric goes through the same splits
    sharpe = lambda x: x.mean(0) / x.std(0, ddof=1)  # noqa: E731
    np.testing.assert_allclose(pbo_cscv(m, s=8, metric=sharpe).logits, ref, rtol=1e-9)


def test_pbo_noise_is_about_one_half():
    values = []
    for seed in range(12):
        m = np.random.default_rng(seed).normal(0, 0.01, size=(1000, 50))
        res = pbo_cscv(m)
        assert res.n_splits == 12_870
        values.append(res.pbo)
    # one noise matrix scatters (splits share blocks); the average over matrices is about 0.5
    assert 0.35 < np.mean(values) < 0.65


def test_pbo_dominant_trial_is_zero():
    rng = np.random.default_rng(5)
    m = rng.normal(0, 0.01, size=(1000, 50))
    m[:, 17] += 0.01
    assert pbo_cscv(m).pbo == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="even"):
        pbo_cscv(np.zeros((100, 4)), s=5)
    with pytest.raises(ConfigError, match="rows"):
        pbo_cscv(np.zeros((10, 4)), s=16)
    with pytest.raises(ConfigError, match="raw"):
        psr(2.0, 0.0, 10, 0.0, -3.0)  # excess kurtosis passed by mistake
    with pytest.raises(ConfigError, match="needs t"):
        dsr(0.1, 10, 0.01)
