"""Per-fold isolation through the real walk-forward: the regime model used on fold k was fitted
on fold k's train window only and never saw a bar of fold k's test window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from _regime_synth import planted_market

from harness.evaluate import evaluate
from harness.folds import Folds
from harness.market import Market
from harness.signals import Signals
from strategies.base import RegisteredStrategy
from strategies.regime.labels import TREND
from strategies.regime.model import RegimeModel

FOLDS = Folds(k=3, lockbox_frac=0.0, purge_bars=24, embargo_bars=24)


@dataclass(frozen=True)
class NoParams:
    pass


def _regime_strategy(results_dir, fits: list, uses: list, **model_kw) -> RegisteredStrategy:
    """Trade the TREND class in the direction of the last day; record every fit and use."""

    def fit(train: Market, params) -> RegimeModel:
        model = RegimeModel(results_dir, **model_kw).fit(train)
        fits.append(model)
        return model

    def generate(market: Market, params, mode, fitted: RegimeModel) -> Signals:
        uses.append((fitted, market.n_bars))
        codes = fitted.predict(market)
        sig = Signals.empty(market, "regime_probe")
        up = np.r_[np.zeros((24, market.n_coins)), np.sign(market.close[24:] - market.close[:-24])]
        d = np.where(codes == TREND, up, 0).astype(np.int8)
        sig.direction[:] = d
        sig.stop[:] = np.where(d != 0, 0.02 * market.close, 0.0)
        sig.score[:] = 1.0
        return sig

    return RegisteredStrategy("regime_probe", NoParams, generate, fit)


def _shake(m: Market, rows: tuple[int, int], seed: int = 9) -> Market:
    """The same market with the bars in `rows` scaled by random factors (OHLC stay consistent)."""
    a, b = rows
    f = np.ones((m.n_bars, m.n_coins))
    f[a:b] = np.exp(np.random.default_rng(seed).normal(0, 0.05, (b - a, m.n_coins)))
    return Market(**{**m.__dict__, **{k: getattr(m, k) * f for k in ("open", "high", "low", "close")},
                     "_fingerprint": []})


def _fingerprint_of_fit(model: RegimeModel) -> np.ndarray:
    if model.backend == "hmm":
        p = model.hmm.params
        return np.concatenate([p.means.ravel(), p.covars.ravel(), p.transmat.ravel()])
    return np.concatenate([v.detach().numpy().ravel() for v in model.cde.module.state_dict().values()])


def _run(m: Market, tmp, **model_kw):
    fits, uses = [], []
    evaluate(_regime_strategy(tmp, fits, uses, **model_kw), NoParams(), m, folds=FOLDS,
             record_trades=False)
    return fits, uses


BACKENDS = [pytest.param({}, id="hmm")]
try:
    import torch  # noqa: F401

    from strategies.regime.cde import CDEConfig

    BACKENDS.append(pytest.param(
        {"train_cde": True, "cde_config": CDEConfig(
            lookback=48, knot_every=8, hidden=8, field_width=16, head_width=16, epochs=2,
            samples_per_epoch=96, batch_size=32, val_frac=0.2, max_val_samples=64, threads=1)},
        id="cde"))
except ImportError:  # pragma: no cover - torch is a pinned dependency
    pass


@pytest.mark.parametrize("model_kw", BACKENDS)
def test_fold_k_model_never_saw_fold_k_test_window(tmp_path, model_kw):
    m, _ = planted_market(n=1600, seed=2)
    plan = FOLDS.split(m.n_bars)
    fits, uses = _run(m, tmp_path / "a", **model_kw)
    assert len(fits) == len(plan.folds) == len(uses)
    for fold, model, (used, hist_bars) in zip(plan.folds, fits, uses, strict=True):
        (a, b), (t0, t1) = fold.train, fold.test
        assert model.backend == ("cde" if model_kw else "hmm")
        assert used is model  # fold k's test window is predicted by fold k's own fit
        assert hist_bars == t1
        assert model.span.first == m.index[a].isoformat() and model.span.n_bars == b - a
        assert pd.Timestamp(model.span.last) < m.index[t0]  # the fit ended before the test
        assert model.span.fingerprint == m.slice(a, b).fingerprint

    # proof by perturbation: another test window for fold 1 leaves folds 0 and 1's fits
    # unchanged; fold 2, whose rolling train window covers part of it, changes
    shaken, _ = _run(_shake(m, plan.folds[1].test), tmp_path / "b", **model_kw)
    for k in (0, 1):
        np.testing.assert_array_equal(_fingerprint_of_fit(shaken[k]), _fingerprint_of_fit(fits[k]))
    assert plan.folds[2].train[0] < plan.folds[1].test[1]
    assert not np.array_equal(_fingerprint_of_fit(shaken[2]), _fingerprint_of_fit(fits[2]))
