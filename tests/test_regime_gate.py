"""The per-coin regime as a strategy input: gate masks, one fit per train window (the HMM
fallback said once), the four strategies' `regime_gate` (default off: unchanged), and the
regime model recorded on the trials rows. Causality of the gated strategies: test_causality.py."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from _regime_synth import switching_market

from strategies.base import get_strategy, param_specs
from strategies.regime.gate import (
    GATES,
    RegimeSettings,
    allowed,
    apply_gate,
    fit_regime,
    models_used,
    regime_codes,
)
from strategies.regime.labels import CHOP, REVERSAL, TREND, UNKNOWN

GATED = ("momentum", "mean_reversion", "ema_pullback", "trend_alpha")


@pytest.fixture(scope="module")
def market():
    return switching_market(n=1600, coins=("AAA", "BBB", "CCC"), seed=4)[0]


@pytest.fixture()
def settings(tmp_path):
    return RegimeSettings(results_dir=str(tmp_path))  # an empty folder: no CDE checkpoint


def test_gate_masks_by_hand():
    codes = np.array([[CHOP, TREND, REVERSAL, UNKNOWN]], dtype=np.int8)
    want = {"off": [1, 1, 1, 1], "trend": [0, 1, 0, 0], "not_chop": [0, 1, 1, 0],
            "chop": [1, 0, 0, 0], "reversal": [0, 0, 1, 0], "not_trend": [1, 0, 1, 0]}
    assert set(want) == set(GATES)
    for gate, mask in want.items():
        np.testing.assert_array_equal(allowed(codes, gate)[0], np.array(mask, dtype=bool))
    with pytest.raises(Exception, match="regime_gate 'sideways' is not one of"):
        allowed(codes, "sideways")


def test_without_a_fit_the_regime_is_unknown_and_only_off_trades(market):
    d = np.ones((market.n_bars, market.n_coins), dtype=np.int8)
    assert (regime_codes(None, market) == UNKNOWN).all()
    assert apply_gate(d, None, market, "off") is d
    assert not apply_gate(d, None, market, "trend").any()


def test_one_fit_per_train_window_and_one_fallback_line(market, settings, caplog):
    train = market.slice(0, 1000)
    with caplog.at_level(logging.WARNING, logger="strategies.regime.model"):
        a = fit_regime(train, "trend", settings)
        b = fit_regime(market.slice(0, 1000), "not_chop", settings)  # same bars, another object
    assert a is b and a.model.backend == "hmm"
    lines = [r for r in caplog.records if "using the HMM fallback" in r.getMessage()]
    assert len(lines) == 1
    assert fit_regime(train, "off", settings) is None
    codes = a.codes(market)
    assert a.codes(market.slice(0, market.n_bars)) is codes and not codes.flags.writeable
    np.testing.assert_array_equal(codes, a.model.predict(market))
    assert models_used("trend", [train, market.slice(0, 1000)], settings) == a.label
    assert a.label.startswith("HMM K=3") and "no CDE checkpoint" in a.label
    assert models_used("off", [train], settings) == ""


@pytest.mark.parametrize("name", GATED)
def test_gate_is_a_searchable_choice_default_off(name, market):
    strategy = get_strategy(name)
    spec = {s.name: s for s in param_specs(strategy.params_cls)}["regime_gate"]
    assert spec.default == "off" and spec.kind == "choice" and "off" in spec.choices
    assert set(spec.choices) <= set(GATES) and len(spec.choices) >= 3
    assert strategy.fit(market.slice(0, 800), strategy.default_params()) is None  # unchanged


@pytest.mark.parametrize("name", GATED)
def test_the_gate_only_removes_entries_whose_regime_it_refuses(name):
    from _strategy_markets import default_market

    m = default_market()
    strategy = get_strategy(name)
    off = strategy.default_params()
    gate = "not_trend" if name == "mean_reversion" else "not_chop"
    on = dataclasses.replace(off, regime_gate=gate)
    fitted = strategy.fit(m.slice(0, 3000), on)
    base = strategy.generate(m, off, "shadow").direction
    gated = strategy.generate(m, on, "shadow", fitted).direction
    kept = gated != 0
    assert (gated[kept] == base[kept]).all()  # nothing new, nothing flipped
    assert 0 < kept.sum() < (base != 0).sum()
    if name != "trend_alpha":  # trend_alpha gates at its 4h closes and holds the entry
        np.testing.assert_array_equal(gated, np.where(allowed(fitted.codes(m), gate), base, 0))


def test_the_trials_rows_record_the_regime_model(tmp_path, market):
    from sweep import results
    from sweep.study import StudyConfig, run_study

    for gate in ("off", "not_chop"):
        cfg = StudyConfig(strategy="momentum", trials=2, sampler="random", folds=2, batch=2,
                          seed=0, results=tmp_path, fixed={"regime_gate": gate}, mode="shadow")
        run_study(cfg, market=market)
    rows = results.query(tmp_path, "SELECT p_regime_gate AS gate, regime_model, status FROM trials")
    assert len(rows) == 4 and (rows["status"] != "failed").all()
    by = rows.groupby("gate")["regime_model"].agg(set).to_dict()
    assert by["off"] == {""}
    (label,) = by["not_chop"]
    assert label.startswith("HMM K=3") and "no CDE checkpoint" in label
