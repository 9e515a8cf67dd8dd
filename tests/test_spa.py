"""Hansen's SPA test and the stationary bootstrap, against answers known without this code:
the geometric block lengths, the normal limit for one trial, the size under the null and the
power under an alternative, by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from harness.spa import spa, stationary_bootstrap_indices


def test_stationary_bootstrap_blocks_are_geometric_with_the_mean_asked():
    idx = stationary_bootstrap_indices(5000, 20, 8.0, np.random.default_rng(0))
    assert idx.shape == (20, 5000) and idx.min() >= 0 and idx.max() < 5000
    # a block continues when the next index is the previous + 1 (mod n); P(break) = 1/8 per step
    cont = (np.diff(idx, axis=1) % 5000) == 1
    assert 1 - cont.mean() == pytest.approx(1 / 8, abs=0.01)
    # each row is a uniform resample: every position is drawn about once
    assert np.bincount(idx.ravel(), minlength=5000).mean() == pytest.approx(20.0)


def test_one_trial_p_is_the_normal_one_sided_p():
    # with one trial the studentized SPA statistic is the t-stat of the mean, whose null law is
    # N(0, 1) for iid data: p -> 1 - Phi(t)
    x = np.random.default_rng(3).normal(0.12, 1.0, size=(400, 1))
    res = spa(x, reps=10_000, mean_block=1.0, seed=1)
    t = x.mean() / (x.std(ddof=0) / np.sqrt(len(x)))
    assert res.statistic == pytest.approx(t, rel=0.02)
    assert res.p_consistent == pytest.approx(1 - sps.norm.cdf(t), abs=0.008)
    assert res.p_upper == res.p_consistent  # nothing to recentre for a positive mean


def test_size_under_the_null_and_power_under_an_edge():
    rng = np.random.default_rng(7)
    reject_null = reject_edge = 0
    runs = 150
    for i in range(runs):
        noise = rng.normal(0.0, 1.0, size=(250, 20))
        reject_null += spa(noise, reps=300, seed=i).p_consistent < 0.05
        edge = noise.copy()
        edge[:, 5] += 0.35  # one trial with a daily Sharpe of 0.35 among 19 null ones
        res = spa(edge, reps=300, seed=i)
        reject_edge += res.p_consistent < 0.05
    # every null mean is exactly 0 (the least favourable case): the size is about 5%
    assert reject_null / runs <= 0.09
    assert reject_edge / runs >= 0.95


def test_bad_trials_do_not_hide_a_good_one_in_the_consistent_p():
    rng = np.random.default_rng(4)
    m = rng.normal(0.0, 1.0, size=(300, 40))
    m[:, :39] -= 0.5  # 39 clearly losing trials
    m[:, 39] += 0.12
    res = spa(m, reps=2000, seed=0)
    assert res.best == 39
    assert res.p_consistent <= res.p_upper  # White's recentring lets the losers widen the max
    assert res.p_lower <= res.p_consistent


def test_trials_that_never_trade_cannot_beat_zero():
    m = np.zeros((100, 3))
    res = spa(m)
    assert (res.n_trials, res.p_consistent, res.best) == (0, 1.0, -1)
    m[:, 1] = np.random.default_rng(0).normal(-0.1, 1, 100)
    assert spa(m).n_trials == 1 and spa(m, seed=3).p_consistent == spa(m, seed=3).p_consistent
